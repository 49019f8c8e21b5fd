"""A built corpus on disk: the output folder, manifest.json, verification and reading a split.

Layout (docs/ARCHITECTURE.md §8): DIR/train.bin and DIR/val.bin, flat uint8, each document's bytes
followed by one DOCUMENT_SEPARATOR (0x00), and DIR/manifest.json, written last, so a folder with a
manifest is complete.

The output folder (`claim_out_dir`): a builder writes only train.bin, val.bin and manifest.json
(through temporary names) and deletes nothing else. It writes into a folder that is new, empty, or
holds a corpus a builder wrote before (a manifest.json in this format); a folder holding anything
else (a user's own train.bin, other files) is refused unless `force`, and even then only those
three names are replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from scratchpad.checkpoint import ensure_writable_dir
from scratchpad.errors import UserError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
OUTPUT_FILES = tuple(f"{s}.bin" for s in SPLITS) + (MANIFEST,)
MB = 1_000_000
# Temporary names of a builder's writes (left behind only by a killed build).
_OWN_TEMPORARY = re.compile(r"\.(?:train|val)\..*\.bin\.tmp|\.manifest\.json\..*\.tmp|\.write-test\..*")


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
    """Sizes per split and per source, as the CLIs print them after a build."""
    log(f"wrote {out}: train {manifest['files']['train']['bytes'] / MB:.2f} MB "
        f"({manifest['files']['train']['documents']} docs), val {manifest['files']['val']['bytes'] / MB:.2f} MB "
        f"({manifest['files']['val']['documents']} docs) in {manifest['build_seconds']:.0f}s")
    for name, st in manifest["sources"].items():
        log(f"  {name:<12} {st['bytes'] / MB:8.2f} MB of {st['available_bytes'] / MB:8.2f} MB "
            f"({st['documents']} docs; train {st['train_bytes'] / MB:.2f}, val {st['val_bytes'] / MB:.2f})")


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as indented JSON through a temporary file and a rename."""
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
    """The folder's manifest.json, or None when there is none or it is not JSON."""
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


def check_val_fraction(val_fraction: float) -> None:
    if not (0.0 < val_fraction < 1.0):
        raise UserError(f"--val-fraction must be strictly between 0 and 1, got {val_fraction}")
