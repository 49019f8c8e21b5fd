"""Shared pieces of the eval commands: argument parsing, model and data loading, windowed scoring
with event counts, FLOP/KV accounting per byte against the byte-level baseline, and the check that
the engine's counted events agree with the parallel forward's.

How held-out bytes are scored (every command that reports BPB): the data is cut into
non-overlapping windows of W bytes (W = the model's max_seq_len capped at 1024, or --window).
Window i feeds bytes [iW, iW + W) and scores the next byte at every position, i.e. targets
[iW + 1, iW + W + 1), so every byte after the first is predicted exactly once and each window
starts from an empty context (no carry-over, no overlap). A final shorter window scores the rest.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from infer.options import parse_threshold  # noqa: F401  (re-exported for the eval commands)
from scratchpad import load_model
from scratchpad.accounting import Events as CountedEvents
from scratchpad.accounting import flops_for_events, per_byte, row_events
from scratchpad.checkpoint import resolve_model_folder
from scratchpad.errors import UserError
from scratchpad.flags import Parser, add_threads_flag, describe, parse_duration, set_threads  # noqa: F401  (re-exported)
from scratchpad.flags import int_flag as positive_int, parse_int_flag
from scratchpad.rate import rate_thresholds

LN2 = math.log(2)
DEFAULT_WINDOW_CAP = 1024
WINDOWING = ("non-overlapping windows of {W} bytes, each scored fully from an empty context "
             "(every byte after the first predicted exactly once; no overlap or state carried between windows)")


# ----------------------------------------------------------------------------------------------
# argument values


def parse_list(text: str, flag: str, one) -> list:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise UserError(f"{flag}: {text!r} is not a comma-separated list (example: 0,0.5,1,inf)")
    vals = [one(t, flag) for t in items]
    if len(set(vals)) != len(vals):
        raise UserError(f"{flag}: {text!r} repeats a value")
    return vals


def parse_counts(text: str, flag: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]: batch sizes, client counts (integers >= 1)."""
    return parse_list(text, flag, lambda t, f: parse_int_flag(f, t, 1))


def parse_thresholds(text: str, flag: str = "--thresholds") -> list[float]:
    return parse_list(text, flag, parse_threshold)


def parse_rate(text, flag: str = "--rates") -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a number (rates are fractions of bytes in [0, 1])") from None
    if not 0 <= v <= 1:
        raise UserError(f"{flag}: {text!r} must be a fraction in [0, 1]")
    return v


def parse_rates(text: str, flag: str = "--rates") -> list[float]:
    return parse_list(text, flag, parse_rate)


# ----------------------------------------------------------------------------------------------
# model and data


def load_eval_model(path, threads: int | None = None):
    """(model in eval mode, label). path None = the packaged default model."""
    set_threads(threads)
    if path is None:
        model = load_model(None)
        label = "default model (scratchpad/default_model)"
    else:
        folder = resolve_model_folder(path)
        model = load_model(folder)
        label = str(folder)
    return model.float().eval(), label


def default_window(cfg, window: int | None) -> int:
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
    """The first max_bytes bytes of a flat uint8 file (memory-mapped, copied)."""
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
    """Held-out bytes for scoring and a description of where they came from."""
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


# ----------------------------------------------------------------------------------------------
# scoring with event counts


@dataclass
class Events(CountedEvents):
    """Events summed over scored rows, with the scored nats and the byte baseline's keys."""

    nats: float = 0.0
    baseline_keys: int = 0       # keys of the byte-level baseline on the same windows
    windows: int = 0
    window_nats: list = field(default_factory=list)   # per scored window, in window order
    window_bytes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def add(self, other: "Events"):
        super().add(other)
        for k in ("nats", "baseline_keys", "windows", "window_nats", "window_bytes"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def bpb(self) -> float:
        return self.nats / max(self.bytes, 1) / LN2

    @property
    def window_bpb(self) -> list[float]:
        return [n / max(b, 1) / LN2 for n, b in zip(self.window_nats, self.window_bytes)]

    @property
    def bpb_se(self) -> float | None:
        """Standard error of the BPB over windows (spread of the per-window BPB / sqrt(windows))."""
        return standard_error(self.window_bpb)


def standard_error(values) -> float | None:
    """Sample standard deviation / sqrt(n); None for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """Mean per-window difference a - b over the same windows and its standard error: the noise
    that matters when two settings are scored on identical bytes (much smaller than either SE)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(d.mean()), standard_error(d)


@torch.no_grad()
def score(model, x, y=None, threshold=None, scratchpad_mask=None, entropy_trigger: bool = True,
          scratch_every: int | None = None) -> tuple[Events, object]:
    """One parallel forward over x [B, L] scoring targets y [B, L] (None: events only);
    returns (Events, ModelOutput). With a scratchpad_mask, entropy_trigger says whether the mask
    came from the aux entropy (then inference runs the aux head) or from a data-blind rule;
    scratch_every = k adds the stride trigger (every k-th byte of a patch)."""
    B, L = x.shape
    device = next(model.parameters()).device  # the scorer follows the model (CPU batches moved there)
    x = x.to(device)
    y = y.to(device) if y is not None else None
    scratchpad_mask = scratchpad_mask.to(device) if scratchpad_mask is not None else None
    out = model(x, threshold=threshold, scratchpad_mask=scratchpad_mask, scratch_every=scratch_every)
    nats, per_window = 0.0, []
    if y is not None:
        per_window = F.cross_entropy(out.logits.reshape(-1, 256).float(), y.reshape(-1), reduction="none").view(B, L).double().sum(1)
        nats, per_window = per_window.sum(), per_window.tolist()
    commits, scratch, keys = row_events(out.ends, out.scratch)
    if scratchpad_mask is not None:
        entropy_scratchpads = entropy_trigger
    else:
        entropy_scratchpads = threshold is not None and math.isfinite(float(threshold))
    aux = B * L if model.cfg.aux_runs(entropy_scratchpads) else 0
    ev = Events(nats=float(nats), bytes=B * L, commits=int(commits.sum()), scratchpads=int(scratch.sum()),
                keys=int(keys.sum()), aux=aux, baseline_keys=B * L * (L + 1) // 2, windows=B,
                window_nats=per_window, window_bytes=[L] * len(per_window))
    return ev, out


def evaluate(model, arr: np.ndarray, window: int, threshold=None, batch_size: int = 8, on_output=None) -> Events:
    """Events summed over the windows of arr at one tau; on_output(ModelOutput, targets) sees each batch."""
    total = Events()
    tau = None if threshold is None or math.isinf(threshold) else threshold
    for x, y in batches(arr, window, batch_size):
        ev, out = score(model, x, y, threshold=tau)
        total.add(ev)
        if on_output is not None:
            on_output(out, y)
    return total


def entropy_quantile_thresholds(model, arr: np.ndarray, window: int, rates: list[float], batch_size: int = 8) -> list[float]:
    """tau per target scratchpad rate on the scored windows of arr (a rate is a fraction of all
    scored bytes: scratchpad.rate.rate_thresholds, the same function generate and serve use)."""
    return rate_thresholds(model, (x for x, _ in batches(arr, window, batch_size)), rates)


# ----------------------------------------------------------------------------------------------
# FLOPs and KV per byte


def accounting(cfg, ev: Events) -> dict:
    """FLOPs and KV per byte against the byte-level baseline on the same windows."""
    return per_byte(cfg, ev, ev.baseline_keys)


# ----------------------------------------------------------------------------------------------
# engine vs parallel forward


def engine_sample(arr: np.ndarray, window: int, n_bytes: int, rows: int = 2) -> torch.Tensor:
    """rows slices of n_bytes from evenly spaced offsets -> LongTensor [rows, n]."""
    n = max(2, min(n_bytes, window, len(arr)))
    offs = np.linspace(0, len(arr) - n, rows).round().astype(np.int64) if rows > 1 else np.zeros(1, np.int64)
    return torch.from_numpy(np.stack([arr[o : o + n] for o in offs]).astype(np.int64))


@torch.no_grad()
def engine_check(model, x: torch.Tensor, threshold: float) -> dict:
    """Run the engine's incremental decode (teacher forcing, no prefill: every byte is a decode
    step) on x and compare its counted events, their FLOPs and its logits with the parallel forward."""
    from infer.engine import Engine

    tau = None if math.isinf(threshold) else threshold
    B, L = x.shape
    engine = Engine(model)
    logits = engine.teacher_force(x, threshold)
    eng = Events(baseline_keys=B * L * (L + 1) // 2, windows=B)
    for e in engine.last_events:
        CountedEvents.add(eng, e)  # the counts only
    par, out = score(model, x, None, tau)
    ref = out.logits
    rel = float((logits - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
    fe = flops_for_events(model.cfg, bytes=eng.bytes, commits=eng.commits, scratchpads=eng.scratchpads, keys=eng.keys,
                          aux_steps=eng.aux)
    fp = flops_for_events(model.cfg, bytes=par.bytes, commits=par.commits, scratchpads=par.scratchpads, keys=par.keys,
                          aux_steps=par.aux)
    counts_equal = all(getattr(eng, k) == getattr(par, k) for k in ("bytes", "commits", "scratchpads", "keys", "aux"))
    return dict(
        bytes=eng.bytes,
        engine_events=dict(commits=eng.commits, scratchpads=eng.scratchpads, keys=eng.keys, aux=eng.aux),
        parallel_events=dict(commits=par.commits, scratchpads=par.scratchpads, keys=par.keys, aux=par.aux),
        engine_flops_per_byte=fe["total"] / max(eng.bytes, 1),
        parallel_flops_per_byte=fp["total"] / max(par.bytes, 1),
        flops_rel_diff=abs(fe["total"] - fp["total"]) / max(fp["total"], 1),
        logits_max_rel_diff=rel,
        agree=bool(counts_equal and fe["total"] == fp["total"]),
        logits_agree=rel <= 1e-4,
    )


def model_info(model, label: str) -> dict:
    from scratchpad.accounting import parameter_counts

    cfg = model.cfg
    return dict(path=label, name=cfg.name, patcher=cfg.patcher, patch_size=cfg.patch_size, pooling=cfg.pooling,
                scratchpad=cfg.scratchpad, d_model=cfg.d_model, trunk_mixers=list(cfg.trunk_mixers),
                max_seq_len=cfg.max_seq_len, params=parameter_counts(model), config=cfg.to_dict())


def common_args(ap: argparse.ArgumentParser, model: bool = True, window: bool = True, max_bytes: int | None = None):
    """--model, --data, --split, --max-bytes, --window, --batch-size, --threads, --out."""
    if model:
        ap.add_argument("--model", help="model folder or training --out folder (default: the packaged default model)")
    ap.add_argument("--data", required=True, help="corpus folder (reads <split>.bin) or a flat byte file")
    ap.add_argument("--split", default="val", help="which .bin of a corpus folder (default val)")
    ap.add_argument("--max-bytes", type=positive_int("--max-bytes", 2), default=max_bytes,
                    help="score only the first N bytes" + (f" (default {max_bytes})" if max_bytes else " (default: all)"))
    if window:
        ap.add_argument("--window", type=positive_int("--window", 2), help=f"bytes per window (default min(max_seq_len, {DEFAULT_WINDOW_CAP}))")
    ap.add_argument("--batch-size", type=positive_int("--batch-size"), default=8, help="windows per forward (default 8)")
    add_threads_flag(ap)
    ap.add_argument("--out", required=True, help="report folder (Markdown, JSON, PNG)")
