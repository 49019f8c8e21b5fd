"""Byte corpora: `scratchpad data build {text,code} --out DIR` and the library behind it.

Output (docs/ARCHITECTURE.md §8): DIR/train.bin and DIR/val.bin, flat uint8, plus DIR/manifest.json.
Each document is written as its bytes followed by one DOCUMENT_SEPARATOR (0x00). Documents never
contain 0x00 (it is stripped), so a reader can split on it; every byte value is still legal model
input.

How a corpus is built (`build_corpus`):
  1. Clean-up is the sources' job (train/sources.py); here NUL bytes are stripped and empty
     documents dropped.
  2. Exact de-duplication: sha256 of the document. A document already seen (in this source or in
     an earlier one, sources taken in name order) is dropped.
  3. Every document gets two pseudo-random numbers derived from (seed, its sha256) only:
     a sampling key and a split draw. Neither depends on the other documents, so adding or
     removing a source never moves another source's documents between train and val.
  4. Size cap (max_bytes, counted as document bytes + separators): the budget is shared by
     water-filling. Each source gets the same cap L, except that a source smaller than L keeps
     everything and its unused share is spread over the others (L solves
     sum_i min(size_i, L) = max_bytes). Within a source the documents with the smallest sampling
     keys are kept, as long as their running total stays within the source's cap (a uniform,
     deterministic sample; a larger cap keeps a superset).
  5. Split by document: val iff split draw < val_fraction. If that leaves val empty (tiny corpora)
     the document with the smallest draw moves to val; if it leaves train empty, the largest moves
     to train. Val documents are never in train.bin.
  6. Both files hold their documents in sampling-key order (sources interleaved), are written to
     temporary names and renamed; manifest.json is written last, so a directory with a manifest is
     complete. The same inputs and arguments give byte-identical files.

The output folder (`claim_out_dir`): a builder writes only train.bin, val.bin and manifest.json
(through temporary names) and deletes nothing else. It writes into a folder that is new, empty, or
holds a corpus a builder wrote before (a manifest.json in this format); a folder holding anything
else (a user's own train.bin, other files) is refused unless `force`, and even then only those
three names are replaced.

`scratchpad data build files --from DIR` (train/files.py) builds the same layout from any folder.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

from scratchpad.checkpoint import ensure_writable_dir
from scratchpad.errors import UserError
from scratchpad.flags import Parser
from scratchpad.vocab import DOCUMENT_SEPARATOR

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
OUTPUT_FILES = tuple(f"{s}.bin" for s in SPLITS) + (MANIFEST,)
MB = 1_000_000
# Temporary names of this module's writes (left behind only by a killed build).
_OWN_TEMPORARY = re.compile(r"\.(?:train|val)\..*\.bin\.tmp|\.manifest\.json\..*\.tmp|\.write-test\..*")


# ----------------------------------------------------------------------------------------------
# Library


def _unit(seed: int, purpose: bytes, digest: bytes) -> int:
    """A 64-bit pseudo-random integer from (seed, purpose, document sha256)."""
    h = hashlib.sha256(b"%d:" % seed + purpose + b":" + digest).digest()
    return int.from_bytes(h[:8], "big")


def water_fill(sizes: Mapping[str, int], budget: int | None) -> dict[str, int]:
    """Per-source caps sharing `budget`: everyone gets min(size, L) with the largest L that fits."""
    if budget is None or sum(sizes.values()) <= budget:
        return dict(sizes)
    remaining, caps = budget, {}
    pending = sorted(sizes, key=lambda k: (sizes[k], k))
    while pending:
        share = remaining // len(pending)
        small = [k for k in pending if sizes[k] <= share]
        if not small:
            # Everyone left is bigger than an equal share; hand out the remainder byte-exactly.
            extra = remaining - share * len(pending)
            for i, k in enumerate(sorted(pending)):
                caps[k] = share + (1 if i < extra else 0)
            break
        for k in small:
            caps[k] = sizes[k]
            remaining -= sizes[k]
        pending = [k for k in pending if k not in small]
    return caps


class _Reservoir:
    """The documents of one source with the smallest sampling keys whose running total (bytes +
    separators) is at most `limit`. Streaming, O(limit) memory, independent of arrival order."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.heap: list[tuple[int, bytes, bytes]] = []  # (-key, digest, doc)
        self.total = 0
        self.threshold: int | None = None  # keys >= threshold can never be kept
        self.documents = 0  # unique documents offered
        self.bytes = 0  # their size, with separators

    def offer(self, key: int, digest: bytes, doc: bytes) -> None:
        n = len(doc) + 1
        self.documents += 1
        self.bytes += n
        if self.threshold is not None and key >= self.threshold:
            return
        heapq.heappush(self.heap, (-key, digest, doc))
        self.total += n
        while self.limit is not None and self.total > self.limit:
            negkey, _, d = heapq.heappop(self.heap)
            self.total -= len(d) + 1
            self.threshold = -negkey if self.threshold is None else min(self.threshold, -negkey)

    def take(self, cap: int) -> list[tuple[int, bytes, bytes]]:
        """(key, digest, doc) in key order, longest prefix within `cap`."""
        out, total = [], 0
        for negkey, digest, doc in sorted(self.heap, key=lambda t: -t[0]):
            total += len(doc) + 1
            if total > cap:
                break
            out.append((-negkey, digest, doc))
        return out


def build_corpus(
    documents_by_source: Mapping[str, Iterable[bytes]],
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.01,
    seed: int = 0,
    max_bytes: int | None = None,
    extra: Mapping | None = None,
    log: Callable[[str], None] | None = None,
    force: bool = False,
    split_of: dict | None = None,
) -> dict:
    """Build train.bin / val.bin / manifest.json in `out_dir` from documents grouped by source.

    `documents_by_source` maps a source name to an iterable of documents (bytes; consumed once,
    sources in name order). `max_bytes` caps train + val (None: no cap). `extra` is merged into
    the manifest (the CLI records its request there). `force`: write even into a folder holding
    files no builder wrote (see `claim_out_dir`). `split_of`, when given, receives the sha256 hex
    digest of every document written -> "train" or "val". Returns the manifest (also written)."""
    check_val_fraction(val_fraction)
    if max_bytes is not None and max_bytes <= 0:
        raise UserError(f"max_bytes must be positive, got {max_bytes}")
    out = claim_out_dir(out_dir, force)
    log = log or (lambda msg: None)

    seen: set[bytes] = set()
    reservoirs: dict[str, _Reservoir] = {}
    duplicates: Counter = Counter()
    stripped_nul: Counter = Counter()
    for name in sorted(documents_by_source):
        t0 = time.time()
        res = reservoirs[name] = _Reservoir(max_bytes)
        for doc in documents_by_source[name]:
            if not isinstance(doc, (bytes, bytearray, memoryview)):
                raise TypeError(f"source {name!r} yielded {type(doc).__name__}, expected bytes")
            doc = bytes(doc)
            if DOCUMENT_SEPARATOR in doc:
                doc = doc.replace(bytes([DOCUMENT_SEPARATOR]), b"")
                stripped_nul[name] += 1
            if not doc:
                continue
            digest = hashlib.sha256(doc).digest()
            if digest in seen:
                duplicates[name] += 1
                continue
            seen.add(digest)
            res.offer(_unit(seed, b"sample", digest), digest, doc)
        log(f"  {name}: {res.documents} documents, {res.bytes / MB:.1f} MB unique"
            f" ({duplicates[name]} duplicates) in {time.time() - t0:.1f}s")

    caps = water_fill({k: r.bytes for k, r in reservoirs.items()}, max_bytes)
    chosen: list[tuple[int, str, bytes, bytes]] = []  # (key, source, digest, doc)
    for name, res in reservoirs.items():
        chosen.extend((key, name, digest, doc) for key, digest, doc in res.take(caps[name]))
        res.heap = []  # free memory as we go
    if len(chosen) < 2:
        what = "no documents" if not chosen else "only one document"
        raise UserError(f"nothing to build: the sources gave {what} (need at least 2 for a train/val split)")
    chosen.sort(key=lambda t: (t[0], t[2]))

    draws = [_unit(seed, b"split", t[2]) / 2.0**64 for t in chosen]
    is_val = [d < val_fraction for d in draws]
    if not any(is_val):
        is_val[min(range(len(draws)), key=draws.__getitem__)] = True
    elif all(is_val):
        is_val[max(range(len(draws)), key=draws.__getitem__)] = False

    # Write the data files under temporary names, then rename; the manifest goes last.
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest_path.unlink()
    per_source = {
        name: {
            "documents": 0, "bytes": 0, "train_documents": 0, "train_bytes": 0,
            "val_documents": 0, "val_bytes": 0,
            "available_documents": res.documents, "available_bytes": res.bytes,
            "cap_bytes": caps[name], "duplicates_dropped": duplicates[name],
            **({"nul_stripped_documents": stripped_nul[name]} if stripped_nul[name] else {}),
        }
        for name, res in reservoirs.items()
    }
    files = {}
    sep = bytes([DOCUMENT_SEPARATOR])
    tmp_paths = {}
    try:
        handles = {}
        for split in SPLITS:
            fd, tmp = tempfile.mkstemp(prefix=f".{split}.", suffix=".bin.tmp", dir=out)
            tmp_paths[split] = Path(tmp)
            handles[split] = os.fdopen(fd, "wb", buffering=1 << 20)
        hashes = {s: hashlib.sha256() for s in SPLITS}
        sizes = Counter()
        ndocs = Counter()
        for (key, name, digest, doc), v in zip(chosen, is_val):
            split = "val" if v else "train"
            if split_of is not None:
                split_of[digest.hex()] = split
            handles[split].write(doc)
            handles[split].write(sep)
            hashes[split].update(doc)
            hashes[split].update(sep)
            sizes[split] += len(doc) + 1
            ndocs[split] += 1
            st = per_source[name]
            st["documents"] += 1
            st["bytes"] += len(doc) + 1
            st[f"{split}_documents"] += 1
            st[f"{split}_bytes"] += len(doc) + 1
        for split in SPLITS:
            handles[split].flush()
            os.fsync(handles[split].fileno())
            handles[split].close()
            os.chmod(tmp_paths[split], 0o644)
        for split in SPLITS:
            os.replace(tmp_paths[split], out / f"{split}.bin")
            files[split] = {"path": f"{split}.bin", "bytes": sizes[split], "documents": ndocs[split],
                            "sha256": hashes[split].hexdigest()}
    finally:
        for p in tmp_paths.values():
            if p.exists():
                p.unlink()

    manifest = {
        "format": {"version": FORMAT_VERSION, "dtype": "uint8", "document_separator": DOCUMENT_SEPARATOR,
                   "layout": "each document's bytes followed by one separator byte"},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "val_fraction": val_fraction,
        "max_bytes": max_bytes,
        "total_bytes": sizes["train"] + sizes["val"],
        "total_documents": ndocs["train"] + ndocs["val"],
        "files": files,
        "sources": per_source,
    }
    if extra:
        manifest.update(extra)
    write_json_atomic(manifest_path, manifest)
    return manifest


def is_corpus_manifest(manifest) -> bool:
    """True for a manifest a corpus builder wrote (any source kind)."""
    try:
        return (manifest["format"]["dtype"] == "uint8" and "document_separator" in manifest["format"]
                and all("sha256" in manifest["files"][s] for s in SPLITS))
    except (KeyError, TypeError):
        return False


def claim_out_dir(out_dir: str | os.PathLike, force: bool = False, flag: str = "--out") -> Path:
    """Create `out_dir` if needed and make sure a build may write train.bin, val.bin and
    manifest.json there: the folder is empty, or holds only a previous build (a corpus manifest and
    its files), or `force`. Otherwise one UserError naming what is in the way. Deletes nothing."""
    out = ensure_writable_dir(out_dir, flag)
    if force:
        return out
    entries = sorted(p.name for p in out.iterdir() if not _OWN_TEMPORARY.fullmatch(p.name))
    ours = is_corpus_manifest(read_manifest(out))
    foreign = [n for n in entries if not (ours and n in OUTPUT_FILES)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        why = "no corpus manifest.json" if not ours else "files besides a previous build"
        raise UserError(f"{flag} {out}: holds files this builder did not write ({shown}; {why}); choose a new or "
                        f"empty folder, or pass --force to replace {', '.join(OUTPUT_FILES)} there (nothing else is touched)")
    return out


def up_to_date(out: Path, request: dict, force: bool, log: Callable[[str], None]) -> bool:
    """True (and says so) when `out` holds a verified build of exactly `request` and not `force`."""
    old = read_manifest(out)
    if force or not old or old.get("request") != request or not verify_corpus(out, old):
        return False
    log(f"up to date: {out} ({old['total_bytes'] / MB:.1f} MB, train {old['files']['train']['bytes'] / MB:.1f} MB, "
        f"val {old['files']['val']['bytes'] / MB:.2f} MB); --force rebuilds")
    return True


def log_summary(manifest: dict, out: Path, log: Callable[[str], None]) -> None:
    log(f"wrote {out}: train {manifest['files']['train']['bytes'] / MB:.2f} MB "
        f"({manifest['files']['train']['documents']} docs), val {manifest['files']['val']['bytes'] / MB:.2f} MB "
        f"({manifest['files']['val']['documents']} docs) in {manifest['build_seconds']:.0f}s")
    for name, st in manifest["sources"].items():
        log(f"  {name:<12} {st['bytes'] / MB:8.2f} MB of {st['available_bytes'] / MB:8.2f} MB "
            f"({st['documents']} docs; train {st['train_bytes'] / MB:.2f}, val {st['val_bytes'] / MB:.2f})")


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    try:
        with open(Path(out_dir) / MANIFEST) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def verify_corpus(out_dir: str | os.PathLike, manifest: dict | None = None) -> bool:
    """True when the manifest exists and both .bin files have the sizes and sha256 it records."""
    out = Path(out_dir)
    manifest = manifest or read_manifest(out)
    if not manifest:
        return False
    try:
        for split in SPLITS:
            info = manifest["files"][split]
            p = out / info["path"]
            if p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
                return False
    except (KeyError, TypeError, OSError):
        return False
    return True


def open_split(out_dir: str | os.PathLike, split: str = "train"):
    """The split as a read-only numpy uint8 memmap."""
    import numpy as np

    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    path = Path(out_dir) / f"{split}.bin"
    if not path.is_file():
        raise UserError(f"no corpus file {path} (build one with: scratchpad data build text --out {out_dir})")
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")


def check_val_fraction(val_fraction: float) -> None:
    if not (0.0 < val_fraction < 1.0):
        raise UserError(f"--val-fraction must be strictly between 0 and 1, got {val_fraction}")


# ----------------------------------------------------------------------------------------------
# Command line


def make_parser() -> argparse.ArgumentParser:
    from train import sources as S

    names = {k: ", ".join(s.name for s in S.sources_for(k)) for k in S.KINDS}
    p = Parser(
        prog="scratchpad data build",
        description="Build a byte corpus (train.bin, val.bin, manifest.json) from installed sources "
                    "(from a folder of your own files: scratchpad data build files --help).",
        epilog=f"text sources: {names['text']}. code sources: {names['code']}. mix: all of them. "
               "Documents are separated by a 0x00 byte. --max-mb is shared between sources by "
               "water-filling (equal caps, small sources keep everything).",
    )
    p.add_argument("kind", choices=S.KINDS, help="which corpus")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-mb", type=float, default=100.0,
                   help="cap on train+val size in MB (10^6 bytes), shared between sources (default 100)")
    p.add_argument("--val-fraction", type=float, default=0.01,
                   help="fraction of documents held out for val.bin (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    p.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                   help="apt-get/pip install missing sources (default: on)")
    p.add_argument("--source", nargs="+", action="extend", metavar="NAME",
                   help="only these sources (default: every source of the kind)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if the manifest says up to date, and write into a folder holding files no "
                        "builder wrote (only train.bin, val.bin and manifest.json are replaced)")
    p.add_argument("--cache-dir", default=None,
                   help="where PyPI sources are pip-installed (default $SCRATCHPAD_CACHE or ~/.cache/scratchpad)")
    p.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: a fake filesystem root
    return p


def main(argv: list[str] | None = None) -> int:
    from train import sources as S

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["files"]:  # a corpus from a folder of the user's own files
        from train.files import main as files_main

        return files_main(argv[1:])
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if not args.max_mb > 0:
        raise UserError(f"--max-mb must be positive, got {args.max_mb:g}")
    check_val_fraction(args.val_fraction)
    out = claim_out_dir(args.out, args.force)
    max_bytes = int(args.max_mb * MB)

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr, flush=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    root = Path(args.root)
    install = args.install and root.resolve() == Path("/")
    ctx = S.Context(root=root, log=log, **({"cache_dir": Path(args.cache_dir)} if args.cache_dir else {}))
    candidates = S.sources_for(args.kind)
    if args.source:
        known = {s.name for s in candidates}
        unknown = [n for n in args.source if n not in known]
        if unknown:
            raise UserError(f"unknown {args.kind} source {', '.join(unknown)} (choose from {', '.join(sorted(known))})")
        candidates = [s for s in candidates if s.name in set(args.source)]

    found, missing = S.locate_all(candidates, ctx, install, warn)
    if not found:
        raise UserError(
            f"no {args.kind} source found (looked for {', '.join(s.name for s in candidates)})"
            + ("; rerun with --install" if not args.install else "; see the warnings above")
        )
    for msg in missing.values():
        warn(msg)
    skipped = [s.name for s in candidates if s.name not in found]
    request = {
        "kind": args.kind,
        "format_version": FORMAT_VERSION,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "max_bytes": max_bytes,
        "sources": {name: {"path": ", ".join(map(str, loc.paths)), "fingerprint": loc.fingerprint}
                    for name, loc in found.items()},
        "skipped_sources": skipped,
    }
    if up_to_date(out, request, args.force, log):
        return 0

    for name, loc in found.items():
        log(f"source {name}: {loc.detail}")
    stats = {name: Counter() for name in found}
    by_name = {s.name: s for s in candidates}
    docs = {name: by_name[name].documents(loc, stats[name]) for name, loc in found.items()}
    t0 = time.time()
    log(f"building {args.kind} corpus in {out} (max {args.max_mb:g} MB, val fraction {args.val_fraction}, seed {args.seed})")
    manifest = build_corpus(
        docs, out, val_fraction=args.val_fraction, seed=args.seed, max_bytes=max_bytes, log=log, force=args.force,
        extra={
            "kind": args.kind,
            "command": shlex.join(["scratchpad", "data", "build", *argv]),
            "argv": argv,
            "request": request,
            "build_seconds": None,
        },
    )
    # Per-source reading statistics (files seen, dropped as binary/undecodable/too large, ...).
    for name, st in stats.items():
        manifest["sources"][name]["reading"] = dict(sorted(st.items()))
        manifest["sources"][name]["path"] = request["sources"][name]["path"]
    manifest["build_seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / MANIFEST, manifest)

    log_summary(manifest, out, log)
    if skipped:
        warn(f"skipped sources: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
