"""Byte corpora: `scratchpad data build text|code|mix` and `scratchpad data build files`.

The pipeline, one module per stage (imports flow down this list, never up):
  folder.py     the `data build files` command: a corpus from any folder of files
  installed.py  the `data build text|code|mix` command: a corpus from the installed sources
  install.py    apt-get / pip install of missing sources
  sources.py    the installed sources: where each lives and how it is read
  formats.py    per-format document readers (file trees, dictd, the kernel tarball, ...)
  build.py      dedup, sampling under a size cap, train/val split, writing train.bin / val.bin
  store.py      the output folder, manifest.json and verification
  walk.py       the one tree walker (symlinks, hidden/build folders, .gitignore, globs)
  gitignore.py  .gitignore matching without git
  reading.py    the one file reader: cleaning, the generated-file rule, skip reasons (`Tally`)
"""
