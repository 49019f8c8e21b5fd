"""The one tree walker of every corpus builder: which files under a folder may become documents.

`walk(root, selection, tally)` yields (relative POSIX path, path) in sorted order: a folder's files,
then its sub-folders one by one, top-down. It never follows a symbolic link (to a file or a
folder), so a link loop cannot trap it. What it leaves out, with the reason it records in the tally
(train/corpus/reading.py):

  version-control folders (.git, .hg, .svn, .bzr) and a worktree's .git file   (not recorded)
  names without one of `selection.suffixes` (when given)                        (not recorded)
  symlink, not_a_regular_file, unreadable_folder
  hidden_folder            a folder named .* (`skip_hidden`: installed trees)
  generated_build_folder   __pycache__ always; with `skip_build` also node_modules, build, dist,
                           .tox, .nox, .venv, venv, .mypy_cache, .pytest_cache, .ruff_cache, .eggs,
                           .ipynb_checkpoints, .cache and *.egg-info
  the reason given in `selection.avoid`   a folder never entered (the output folder, a tree
                                           walked on its own)
  gitignored               `.gitignore` files at every level and .git/info/exclude (`gitignore`)
  excluded, not_included   the `exclude` / `include` globs (.gitignore syntax, relative to root)
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from train.corpus.gitignore import GitIgnore, Pattern, decide
from train.corpus.reading import Tally

VCS_FOLDERS = frozenset({".git", ".hg", ".svn", ".bzr"})
CACHE_FOLDER = "__pycache__"
BUILD_FOLDERS = frozenset({CACHE_FOLDER, "node_modules", "build", "dist", ".tox", ".nox", ".venv", "venv",
                           ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs", ".ipynb_checkpoints", ".cache"})


@dataclass
class Selection:
    """Which files a walk yields (see the module docstring)."""

    suffixes: tuple[str, ...] = ()
    include: list[Pattern] = field(default_factory=list)
    exclude: list[Pattern] = field(default_factory=list)
    skip_hidden: bool = False
    skip_build: bool = False
    gitignore: GitIgnore | None = None
    avoid: dict[Path, str] = field(default_factory=dict)  # folder -> the reason recorded for it


def _folder_reason(name: str, rel: str, path: str, sel: Selection, avoid: dict[str, str]) -> str | None:
    """Why the walk does not enter a folder ("" when it says nothing), or None to enter it."""
    if os.path.islink(path):
        return "symlink"
    if name in VCS_FOLDERS:
        return ""
    if sel.skip_hidden and name.startswith("."):
        return "hidden_folder"
    if name == CACHE_FOLDER or sel.skip_build and (name in BUILD_FOLDERS or name.endswith(".egg-info")):
        return "generated_build_folder"
    if avoid and (reason := avoid.get(os.path.realpath(path))):
        return reason
    if sel.gitignore is not None and sel.gitignore.ignored(rel, True):
        return "gitignored"
    if decide(sel.exclude, rel, True):
        return "excluded"
    return None


def _file_reason(name: str, rel: str, path: Path, sel: Selection) -> str | None:
    """Why the walk leaves out a file ("" when it says nothing), or None to yield it."""
    if name in VCS_FOLDERS or sel.suffixes and not name.endswith(sel.suffixes):
        return ""
    if path.is_symlink():
        return "symlink"
    if not path.is_file():
        return "not_a_regular_file"
    if sel.gitignore is not None and sel.gitignore.ignored(rel, False):
        return "gitignored"
    if decide(sel.exclude, rel, False):
        return "excluded"
    if sel.include and not decide(sel.include, rel, False):
        return "not_included"
    return None


def walk(root: Path, selection: Selection | None = None, tally: Tally | None = None) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every selected file under `root`, in sorted order."""
    sel = selection if selection is not None else Selection()
    tally = tally if tally is not None else Tally()
    avoid = {os.path.realpath(p): reason for p, reason in sel.avoid.items()}

    def unreadable(err: OSError) -> None:
        tally.skip("unreadable_folder", os.path.relpath(err.filename or "?", root))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else Path(rel_dir).as_posix()
        if sel.gitignore is not None:
            sel.gitignore.load(rel_dir)
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            reason = _folder_reason(d, rel, os.path.join(dirpath, d), sel, avoid)
            if reason is None:
                keep.append(d)
            elif reason:
                tally.skip(reason, rel + ("" if reason == "symlink" else "/"))
        dirnames[:] = keep
        for name in sorted(filenames):
            rel, path = f"{rel_dir}/{name}" if rel_dir else name, Path(dirpath) / name
            reason = _file_reason(name, rel, path, sel)
            if reason is None:
                yield rel, path
            elif reason:
                tally.skip(reason, rel)


def fingerprint_paths(paths: Iterable[Path]) -> str:
    """sha256 over (path, size, mtime) of files: a rebuild is skipped only while they are unchanged."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
