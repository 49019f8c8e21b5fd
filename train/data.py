"""Byte datasets for training: memory-mapped flat uint8 files and reproducible window sampling.

A corpus folder holds `train.bin` and `val.bin` (flat uint8, any byte value is legal; corpus
builders separate documents with 0x00) and optionally `manifest.json`.

Sampling is counter-based: the windows of (seed, step, micro-batch, rank) come from a generator
seeded with exactly those numbers, and so do the training thresholds and the global torch RNG that
the model's training forward draws from. The "data position" of a run is therefore just its step
counter: a resumed run draws the same windows as an uninterrupted one, and no sampler state has to
be carried between processes or ranks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from scratchpad.errors import UserError

SPLITS = ("train", "val")


class ByteFile:
    """One memory-mapped uint8 file, checked to hold at least one window of `window` bytes."""

    def __init__(self, path: Path, window: int):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a directory, expected a flat uint8 byte file")
        if not self.path.is_file():
            raise UserError(f"{self.path}: missing (a corpus folder holds train.bin and val.bin; build one with 'scratchpad data build')")
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise UserError(f"{self.path}: unreadable ({e.strerror})") from None
        if size == 0:
            raise UserError(f"{self.path}: empty file")
        if size < window:
            raise UserError(f"{self.path}: {size} bytes, smaller than one training window of {window} bytes "
                            f"(seq_len + 1); use a smaller --seq-len or more data")
        try:
            self.data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise UserError(f"{self.path}: cannot memory-map ({e})") from None
        self.size = size
        self.window = window

    def __len__(self):
        return self.size

    def windows(self, offsets) -> torch.Tensor:
        """Rows data[o : o + window] for each offset -> LongTensor [len(offsets), window]."""
        w = self.window
        rows = np.stack([np.asarray(self.data[o : o + w]) for o in offsets]) if len(offsets) else np.zeros((0, w), np.uint8)
        return torch.from_numpy(rows.astype(np.int64))


def sample_offsets(seed: int, step: int, micro: int, rank: int, batch: int, n_positions: int) -> np.ndarray:
    """Window start offsets in [0, n_positions) for one micro-batch; a pure function of its arguments."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step, micro, rank, 0x5C2A])))
    return rng.integers(0, n_positions, size=batch)


def batch_seed(seed: int, step: int, micro: int, rank: int, purpose: int) -> int:
    """A 63-bit seed for one micro-batch's draws of one kind; a pure function of its arguments."""
    ss = np.random.SeedSequence([seed, step, micro, rank, purpose])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def batch_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """A torch generator for the same micro-batch's other draws (training thresholds)."""
    return torch.Generator().manual_seed(batch_seed(seed, step, micro, rank, 0x7A0))


def seed_model_rng(seed: int, step: int, micro: int, rank: int):
    """Seed torch's global generators (CPU and CUDA) for the randomness inside the model's training
    forward (e.g. the random subset of scratchpads it keeps): counter-based like the data, so resume
    is exact without carrying generator state, and DDP ranks draw independently."""
    torch.manual_seed(batch_seed(seed, step, micro, rank, 0x30D))


class ByteCorpus:
    """train.bin + val.bin of a corpus folder, read through windows of seq_len + 1 bytes."""

    def __init__(self, folder, seq_len: int):
        folder = Path(folder)
        if not folder.exists():
            raise UserError(f"{folder}: no such data folder")
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder (--data takes a folder holding train.bin and val.bin)")
        if not (folder / "train.bin").exists() and not (folder / "val.bin").exists():
            what = "is empty" if not any(folder.iterdir()) else "holds no train.bin or val.bin"
            raise UserError(f"{folder}: {what} (build a corpus with 'scratchpad data build')")
        self.folder = folder
        self.seq_len = seq_len
        self.train = ByteFile(folder / "train.bin", seq_len + 1)
        self.val = ByteFile(folder / "val.bin", seq_len + 1)
        self.manifest = None
        mpath = folder / "manifest.json"
        if mpath.is_file():
            try:
                self.manifest = json.loads(mpath.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self.manifest = None  # informational only; the .bin files are the data

    def batch(self, seed: int, step: int, micro: int, rank: int, batch: int):
        """(x, y) LongTensors [batch, seq_len]: y is x shifted by one byte."""
        offs = sample_offsets(seed, step, micro, rank, batch, len(self.train) - self.train.window + 1)
        w = self.train.windows(offs)
        return w[:, :-1], w[:, 1:]

    def val_offsets(self, n_windows: int) -> np.ndarray:
        """A fixed set of validation windows: evenly spaced, non-overlapping while they fit."""
        span = len(self.val) - self.val.window
        n = max(1, min(n_windows, len(self.val) // self.val.window)) if n_windows > 0 else 0
        if n == 0:
            return np.zeros(0, np.int64)
        if n == 1:
            return np.zeros(1, np.int64)
        return np.linspace(0, span, n).round().astype(np.int64)

    def val_batches(self, offsets, batch: int):
        for i in range(0, len(offsets), batch):
            w = self.val.windows(offsets[i : i + batch])
            yield w[:, :-1], w[:, 1:]
