"""Request options shared by the engine, the CLI commands and the server: thresholds, prompts,
the scratchpad budget. Validation lives here, outside the decode step's hot path."""
from __future__ import annotations

import math

import torch

from scratchpad.errors import UserError
from scratchpad.rate import rate_thresholds


# The largest finite tau a request may give (nats). A byte distribution's entropy is at most
# ln 256 = 5.55 nats, so any finite tau above that already means "no entropy trigger"; the cap only
# keeps values such as 1e39 from reaching the float32 slot settings (where they overflow).
TAU_MAX = 100.0


def check_threshold(threshold) -> float:
    """tau in [0, TAU_MAX] or inf; None means inf (no scratchpads)."""
    if threshold is None:
        return math.inf
    try:
        tau = float(threshold)
    except (TypeError, ValueError, OverflowError):
        tau = math.nan
    if not (0 <= tau <= TAU_MAX or tau == math.inf):
        raise UserError(f"entropy threshold must be a number in [0, {TAU_MAX:g}] or inf, got {threshold!r}")
    return tau


def tau_json(tau: float):
    """tau as JSON carries it: the number, or "inf" (JSON has no infinity)."""
    return tau if math.isfinite(tau) else "inf"


def effective_threshold(cfg, tau: float) -> float:
    """The tau a model runs with: a model trained without scratchpads never fires them (inf)."""
    return tau if cfg.scratchpad else math.inf


def check_every(every, name: str = "scratch_every", longest: int | None = None) -> int:
    """A scratchpad at every k-th byte of a patch: k an integer >= 0 (0 or None: none), and at
    most `longest` (the model's longest patch: a larger k never fires) when given."""
    if every is None:
        return 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UserError(f"{name} must be an integer >= 0 (0 = none), got {every!r}")
    if longest is not None and every > longest:
        raise UserError(f"{name} must be at most this model's longest patch ({longest} bytes), got {every}")
    return every


def effective_every(cfg, every: int) -> int:
    """The stride a model runs with: a model trained without scratchpads never fires them (0)."""
    return every if cfg.scratchpad else 0


def parse_threshold(text, flag: str = "--entropy-threshold") -> float:
    """A tau from the command line: a number >= 0, or inf / none / off (no scratchpads)."""
    s = str(text).strip().lower()
    if s in ("inf", "+inf", "infinity", "none", "off"):
        return math.inf
    try:
        v = float(s)
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a number (give a value >= 0 or 'inf')") from None
    if math.isnan(v) or v < 0:
        raise UserError(f"{flag}: {text!r} must be >= 0 or 'inf'")
    return v


def as_prompt(p) -> bytes:
    """bytes, bytearray or str (UTF-8) -> bytes."""
    if isinstance(p, str):
        return p.encode("utf-8")
    if isinstance(p, (bytes, bytearray, memoryview)):
        return bytes(p)
    raise TypeError(f"a prompt is bytes or str, got {type(p).__name__}")


def as_prompts(prompts) -> list[bytes]:
    """One prompt (bytes or str) or a list/tuple of them -> list of bytes."""
    if isinstance(prompts, (str, bytes, bytearray, memoryview)):
        return [as_prompt(prompts)]
    if isinstance(prompts, (list, tuple)):
        return [as_prompt(p) for p in prompts]
    raise TypeError(f"prompts: give bytes, str or a list of them, got {type(prompts).__name__}")


def budget_threshold(model, prompt: bytes, rate: float, flag: str = "--scratchpad-budget") -> float:
    """tau such that about a fraction `rate` of the prompt's bytes (all of them, the model's last
    max_seq_len) would trigger a scratchpad; scratchpad.rate.rate_thresholds defines the rate."""
    if not 0 <= rate <= 1:
        raise UserError(f"{flag} must be a fraction in [0, 1], got {rate}")
    if rate == 0:
        return math.inf
    if len(prompt) < 2:
        raise UserError(f"{flag} calibrates on the prompt; give a prompt of at least 2 bytes")
    x = torch.tensor(list(prompt[-model.cfg.max_seq_len:]), dtype=torch.long)
    return rate_thresholds(model, [x.unsqueeze(0)], [rate])[0]
