"""Held-out bytes and the windows they are scored in.

Every command that reports BPB cuts the data into non-overlapping windows of W bytes (W = the
model's max_seq_len capped at 1024, or --window). Window i feeds bytes [iW, iW + W) and scores the
next byte at every position, i.e. targets [iW + 1, iW + W + 1), so every byte after the first is
predicted exactly once and each window starts from an empty context (no carry-over, no overlap).
A final shorter window scores the rest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scratchpad.errors import UserError

DEFAULT_WINDOW_CAP = 1024
WINDOWING = ("non-overlapping windows of {W} bytes, each scored fully from an empty context "
             "(every byte after the first predicted exactly once; no overlap or state carried between windows)")


def default_window(cfg, window: int | None) -> int:
    """--window, or min(max_seq_len, 1024); checked against the model's max_seq_len."""
    W = window or min(cfg.max_seq_len, DEFAULT_WINDOW_CAP)
    if W > cfg.max_seq_len:
        raise UserError(f"--window {W} exceeds the model's max_seq_len {cfg.max_seq_len}")
    if W < 2:
        raise UserError(f"--window {W}: must be >= 2")
    return W


def data_file(data, split: str = "val") -> Path:
    """--data FILE (a flat byte file) or DIR (a corpus folder: DIR/<split>.bin)."""
    if data is None:
        raise UserError("--data is required (a corpus folder with val.bin, or a byte file)")
    p = Path(data)
    if not p.exists():
        raise UserError(f"--data {p}: no such file or folder")
    if p.is_dir():
        f = p / f"{split}.bin"
        if not f.is_file():
            have = sorted(x.name for x in p.glob("*.bin"))
            what = f"holds only {', '.join(have)}" if have else "holds no .bin files"
            raise UserError(f"--data {p}: not a corpus folder with {split}.bin ({what}; build one with 'scratchpad data build')")
        return f
    return p


def read_bytes(path: Path, max_bytes: int | None = None) -> np.ndarray:
    """The first max_bytes bytes of a flat uint8 file (memory-mapped, copied) -> uint8 [n]."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"--data {path}: empty file")
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise UserError(f"--data {path}: unreadable ({e.strerror or e})") from None
    n = size if max_bytes is None else min(size, max_bytes)
    return np.array(mm[:n])


def eval_bytes(data, split: str, max_bytes: int | None, window: int) -> tuple[np.ndarray, dict]:
    """Held-out bytes for scoring (uint8 [n]) and a description of where they came from."""
    path = data_file(data, split)
    arr = read_bytes(path, max_bytes)
    if len(arr) < window + 1:
        raise UserError(f"--data {path}: {len(arr)} bytes{' (after --max-bytes)' if max_bytes else ''}, smaller than one "
                        f"window of {window + 1} bytes ({window} inputs + the byte they predict); use a smaller --window or more data")
    return arr, dict(path=str(path), split=split if Path(data).is_dir() else None, file_bytes=path.stat().st_size,
                     bytes_used=len(arr), max_bytes=max_bytes)


def window_spans(n: int, window: int) -> list[tuple[int, int]]:
    """(start, length) of the windows over n bytes: length inputs predict bytes start+1 .. start+length."""
    spans, s = [], 0
    while s + 1 < n:
        L = min(window, n - 1 - s)
        spans.append((s, L))
        s += L
    return spans


def batches(arr: np.ndarray, window: int, batch_size: int):
    """Yield (x, y) LongTensors [b, L]: full windows batched, the final short window alone."""
    spans = window_spans(len(arr), window)
    groups: dict[int, list[int]] = {}
    for s, L in spans:
        groups.setdefault(L, []).append(s)
    for L, starts in sorted(groups.items(), key=lambda kv: -kv[0]):
        for i in range(0, len(starts), batch_size):
            rows = np.stack([arr[s : s + L + 1] for s in starts[i : i + batch_size]]).astype(np.int64)
            w = torch.from_numpy(rows)
            yield w[:, :-1], w[:, 1:]
