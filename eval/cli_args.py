"""Argument helpers shared by the eval commands: comma-separated lists of taus, rates and counts,
and the flags every scoring command takes (--model, --data, --window, --batch-size, --out ...)."""
from __future__ import annotations

import argparse
import math

from eval.windows import DEFAULT_WINDOW_CAP
from infer.options import parse_threshold
from scratchpad.errors import UserError
from scratchpad.flags import add_threads_flag, int_flag, parse_int_flag
from scratchpad.trigger import TriggerError, check_rate


def parse_list(text: str, flag: str, one) -> list:
    """'a,b,c' -> [one(a, flag), ...]: a comma-separated list of distinct values."""
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
    """'0,1.5,inf' -> taus in nats (inf = no entropy trigger)."""
    return parse_list(text, flag, parse_threshold)


def parse_rate(text, flag: str = "--rates") -> float:
    """A target scratchpad rate (a fraction of all bytes), checked by scratchpad.trigger.check_rate."""
    try:
        return check_rate(text)
    except TriggerError as e:
        raise UserError(f"{flag} {e.reason}") from None


def parse_rates(text: str, flag: str = "--rates") -> list[float]:
    return parse_list(text, flag, parse_rate)


def common_args(ap: argparse.ArgumentParser, model: bool = True, window: bool = True, max_bytes: int | None = None):
    """--model, --data, --split, --max-bytes, --window, --batch-size, --threads, --out."""
    if model:
        ap.add_argument("--model", help="model folder or training --out folder (default: the packaged default model)")
    ap.add_argument("--data", required=True, help="corpus folder (reads <split>.bin) or a flat byte file")
    ap.add_argument("--split", default="val", help="which .bin of a corpus folder (default val)")
    ap.add_argument("--max-bytes", type=int_flag("--max-bytes", 2), default=max_bytes,
                    help="score only the first N bytes" + (f" (default {max_bytes})" if max_bytes else " (default: all)"))
    if window:
        ap.add_argument("--window", type=int_flag("--window", 2), help=f"bytes per window (default min(max_seq_len, {DEFAULT_WINDOW_CAP}))")
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8, help="windows per forward (default 8)")
    add_threads_flag(ap)
    ap.add_argument("--out", required=True, help="report folder (Markdown, JSON, PNG)")


def parse_size(text: str, flag: str) -> int:
    """'4M', '512k', '1G' or a plain integer -> bytes."""
    s = str(text).strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        v = float(s[:-1] if mult > 1 else s) * mult
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a size (examples: 4M, 512k, 1000000)") from None
    if not math.isfinite(v) or v < 1:
        raise UserError(f"{flag}: {text!r} must be a positive size")
    return int(v)


def add_training_and_scoring_flags(ap, warmup: int):
    """The flags every model of a comparison shares (eval reproduce, eval scale): batches, schedule,
    seed, held-out scoring, the causality audit, threads and device."""
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8)
    ap.add_argument("--seq-len", type=int_flag("--seq-len", 2), default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int_flag("--warmup", 0), default=warmup)
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0)
    ap.add_argument("--window", type=int_flag("--window", 2), default=1024, help="evaluation window (default 1024)")
    ap.add_argument("--eval-bytes", type=int_flag("--eval-bytes", 2), default=(1 << 16) + 1,
                    help="held-out bytes per set (default 65537: 64 full windows of 1024)")
    ap.add_argument("--eval-batch", type=int_flag("--eval-batch"), default=8)
    ap.add_argument("--audit-positions", type=int_flag("--audit-positions"), default=6)
    add_threads_flag(ap)
    ap.add_argument("--device", choices=["cpu", "cuda"])
