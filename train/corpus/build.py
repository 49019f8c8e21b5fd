"""Building a byte corpus from documents grouped by source: dedup, sampling under a size cap, the
train/val split, and the files (layout and output folder: train/corpus/store.py).

How a corpus is built (`build_corpus`):
  1. Cleaning is the readers' job (train/corpus/reading.py); here NUL bytes are stripped and empty
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
     temporary names and renamed; manifest.json is written last. The same inputs and arguments
     give byte-identical files.
"""
from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

from scratchpad.errors import UserError
from scratchpad.vocab import DOCUMENT_SEPARATOR
from train.corpus.store import FORMAT_VERSION, MANIFEST, MB, SPLITS, check_val_fraction, claim_out_dir, write_json_atomic


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
