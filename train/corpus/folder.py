"""`scratchpad data build files --from DIR --out D`: a byte corpus from any folder of files (a
repository checkout, say), for fine-tuning on one's own code.

    scratchpad data build files --from ~/src/myproject --include '*.py' --out corpora/myproject

Which files become documents (one document per file, cleaned like every other source: strict
UTF-8, \\n line endings, no trailing spaces; see train/corpus/reading.py):
  * walked in sorted order; symbolic links (to files or folders) are never followed, so a link
    loop cannot trap the walk; version-control folders (.git, .hg, .svn, .bzr) are skipped;
  * `.gitignore` files (every level) and `.git/info/exclude` are honoured, without needing git
    (train/corpus/gitignore.py); `--exclude GLOB` drops matching files and folders and `--include GLOB`
    keeps only matching files, both in .gitignore syntax relative to DIR ("*.py" at any depth,
    "src/**/*.c" anchored);
  * binary files (a NUL byte, or not valid UTF-8) and files over 1 MB are dropped;
  * generated files are dropped: build and cache folders (__pycache__, node_modules, build, dist,
    .venv, *.egg-info, ...; train/corpus/walk.py), and lock files, minified files, #define-dense
    register maps and files marked "@generated", "DO NOT EDIT", "auto-generated" ... in their
    first 1 KB (the generated-file rule, train/corpus/reading.py `generated_reason`);
  * exact duplicates (after cleaning) are kept once (the first in path order);
  * the train/val split is by file and deterministic (from the seed and each file's content hash,
    train/corpus/build.py), default 10% of files in val.
The manifest records the request, the train and val file lists, and every skipped file's reason
(counts, with the first paths as examples). An --out folder inside DIR is never read.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from pathlib import Path

from scratchpad.errors import UserError
from scratchpad.flags import Parser
from train.corpus.build import build_corpus
from train.corpus.gitignore import GitIgnore, compile_pattern
from train.corpus.reading import Tally, read_file
from train.corpus.store import (FORMAT_VERSION, MANIFEST, MB, check_val_fraction, claim_out_dir, log_summary,
                                up_to_date, write_json_atomic)
from train.corpus.walk import Selection, fingerprint_paths, walk

SOURCE = "files"
DEFAULT_VAL_FRACTION = 0.1
MAX_FILE_BYTES = 1_000_000


def make_parser() -> argparse.ArgumentParser:
    p = Parser(prog="scratchpad data build files",
                description="Build a byte corpus (train.bin, val.bin, manifest.json) from a folder of your own files, "
                            "e.g. to fine-tune with: scratchpad train --init-from MODEL --data OUT ...",
                epilog="Skips binary files, files over 1 MB, generated files (build/cache folders, lock files, "
                       "minified files, files marked @generated / DO NOT EDIT), symbolic links, .gitignore'd paths "
                       "and exact duplicates; splits train/val by file. Details: train/corpus/folder.py.")
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="the folder to read")
    p.add_argument("--out", required=True, metavar="D", help="output folder (new, empty, or a previous build)")
    p.add_argument("--include", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="keep only files matching one of these (.gitignore syntax: '*.py' at any depth, "
                        "'src/**/*.c' from DIR; default: every text file)")
    p.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="drop files and folders matching one of these (.gitignore syntax)")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, metavar="F",
                   help=f"fraction of files held out for val.bin (default {DEFAULT_VAL_FRACTION})")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="split seed (default 0)")
    p.add_argument("--max-mb", type=float, default=None, metavar="MB", help="cap on train+val size in MB (default: no cap)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if up to date, and write into a folder holding files no builder wrote "
                        "(only train.bin, val.bin and manifest.json are replaced)")
    return p


def _globs(flag: str, texts: list[str]) -> list:
    pats = []
    for t in texts:
        pat = compile_pattern(t)
        if pat is None or pat.negate:
            raise UserError(f"{flag} {t!r}: not a glob (examples: '*.py', 'src/**', 'tests/')")
        pats.append(pat)
    return pats


def source_folder(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.exists():
        raise UserError(f"--from {p}: no such folder")
    if not p.is_dir():
        raise UserError(f"--from {p}: is a file, not a folder (give the folder that holds the files)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    root = source_folder(args.source)
    check_val_fraction(args.val_fraction)
    if args.max_mb is not None and not args.max_mb > 0:
        raise UserError(f"--max-mb must be positive, got {args.max_mb:g}")
    include, exclude = _globs("--include", args.include), _globs("--exclude", args.exclude)
    out = claim_out_dir(args.out, args.force)

    def log(msg: str) -> None:
        print(msg, flush=True)

    skipped = Tally()
    ign = GitIgnore(root)
    selection = Selection(include=include, exclude=exclude, skip_build=True, gitignore=ign, avoid={out: "output_folder"})
    candidates = list(walk(root, selection, skipped))
    if not candidates:
        raise UserError(no_candidates_message(root, args, skipped))
    max_bytes = int(args.max_mb * MB) if args.max_mb is not None else None
    request = {
        "kind": "files", "format_version": FORMAT_VERSION, "from": str(root.resolve()),
        "include": args.include, "exclude": args.exclude, "seed": args.seed, "val_fraction": args.val_fraction,
        "max_bytes": max_bytes, "fingerprint": fingerprint_paths(p for _, p in candidates),
    }
    if up_to_date(out, request, args.force, log):
        return 0

    log(f"reading {len(candidates)} files under {root}"
        + (f" (.gitignore files: {', '.join(ign.files)})" if ign.files else ""))
    paths_of: dict[str, list[str]] = {}  # document sha256 -> the files that gave it

    def documents():
        for rel, path in candidates:
            doc = read_file(path, rel, skipped, max_bytes=MAX_FILE_BYTES)
            if doc is not None:
                paths_of.setdefault(hashlib.sha256(doc).hexdigest(), []).append(rel)
                yield doc

    split_of: dict[str, str] = {}
    t0 = time.time()
    try:
        manifest = build_corpus({SOURCE: documents()}, out, val_fraction=args.val_fraction, seed=args.seed,
                                max_bytes=max_bytes, log=log, force=args.force, split_of=split_of,
                                extra={"kind": "files", "command": shlex.join(["scratchpad", "data", "build", "files", *argv]),
                                       "argv": argv, "request": request})
    except UserError as e:
        if str(e).startswith("nothing to build"):
            raise UserError(f"--from {root}: {len(paths_of)} usable text file(s) among {len(candidates)} "
                            f"candidates ({skipped.summary()}); need at least 2 for a train/val split") from None
        raise
    by_split: dict[str, list[str]] = {"train": [], "val": []}
    for digest, rels in sorted(paths_of.items(), key=lambda kv: kv[1][0]):
        if digest in split_of:
            by_split[split_of[digest]].append(rels[0])
        else:
            skipped.skip("over_max_mb", rels[0])
        for dup in rels[1:]:
            skipped.skip("duplicate", dup)
    manifest.update(documents_by_split={k: sorted(v) for k, v in by_split.items()}, skipped=skipped.skipped_dict(),
                    gitignore_files=ign.files, build_seconds=round(time.time() - t0, 1))
    write_json_atomic(out / MANIFEST, manifest)
    log_summary(manifest, out, log)
    log(f"  files: {len(by_split['train'])} train, {len(by_split['val'])} val; skipped {skipped.summary() or 'none'}")
    return 0


def no_candidates_message(root: Path, args, skipped: Tally) -> str:
    if not skipped.skipped:
        return f"--from {root}: no files in this folder"
    globs = " ".join([*(f"--include {g!r}" for g in args.include), *(f"--exclude {g!r}" for g in args.exclude)])
    return f"--from {root}: no file left to read{' with ' + globs if globs else ''} ({skipped.summary()})"


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
