"""The scratchpad trigger: where transient trunk steps fire, as one validated value.

    Trigger(tau=1.5)             a scratchpad where the aux entropy exceeds tau nats
    Trigger(every=4)             ... and/or at every 4th byte of a patch (0 = none)
    Trigger.from_rate(model, inputs, 0.1)   tau such that 10% of all the bytes fire

Every door (the CLIs, the server, the Python API, the parallel forward) builds a Trigger and
the checks run once, in its constructor; a bad value raises TriggerError, which names the field
so that each door can say it in its own words (a flag, a JSON field). The checks that depend on
a model (a stride within its longest patch; no scratchpads for a model trained without them)
are `for_model`. TriggerRows holds a trigger per row as tensors: the decode state's slots
(`set`, `reset`, `tensors` for the static step's buffers) and the parallel forward's rows
(`of`, `one`); its `fires` is the one rule of where a trigger fires, in both.

A new trigger kind touches this file (a Trigger field and its check, a TriggerRows row, its term
in `fires`) and the doors that set it (a CLI flag, a JSON field); nothing in between.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch

from scratchpad.errors import UserError
from scratchpad.rate import rate_thresholds

# The largest finite tau (nats). A byte distribution's entropy is at most ln 256 = 5.55 nats, so
# any finite tau above that already means "no entropy trigger"; the cap keeps values such as 1e39
# from reaching float32 slot settings (where they overflow).
TAU_MAX = 100.0
DEFAULT_TAU = 1.5  # the default of every door that generates (generate, serve, Engine.generate)
OFF_WORDS = ("inf", "+inf", "infinity", "none", "off")  # text that means "no entropy trigger"
FIELD_NAMES = {"tau": "entropy threshold", "every": "scratch_every", "rate": "scratchpad rate"}


class TriggerError(UserError, ValueError):
    """A bad trigger value. `field` is "tau", "every" or "rate"; `reason` completes a sentence
    whose subject is the field, so a door can put its own name in front ("--threshold ...")."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{FIELD_NAMES[field]} {reason}")
        self.field, self.reason = field, reason


def parse_tau(value) -> float:
    """A tau given as a number, None or text ("1.5", or one of OFF_WORDS = inf) -> float; the
    range is Trigger's to check."""
    if value is None or (isinstance(value, str) and value.strip().lower() in OFF_WORDS):
        return math.inf
    if isinstance(value, bool):
        raise TriggerError("tau", f"must be a number in [0, {TAU_MAX:g}] or inf, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise TriggerError("tau", f"must be a number in [0, {TAU_MAX:g}] or inf, got {value!r}") from None


def check_rate(rate) -> float:
    """A target scratchpad rate: a fraction of all bytes in [0, 1]."""
    try:
        r = float(rate)
    except (TypeError, ValueError, OverflowError):
        r = math.nan
    if isinstance(rate, bool) or not 0 <= r <= 1:
        raise TriggerError("rate", f"must be a fraction in [0, 1], got {rate!r}")
    return r


def tau_json(tau: float):
    """tau as JSON carries it: the number, or "inf" (JSON has no infinity)."""
    return tau if math.isfinite(tau) else "inf"


@dataclass(frozen=True)
class Trigger:
    tau: float = math.inf  # entropy threshold (nats); inf = no entropy trigger
    every: int = 0         # also a scratchpad at every k-th byte of a patch; 0 (or None) = none

    def __post_init__(self):
        tau = parse_tau(self.tau)
        if not (0 <= tau <= TAU_MAX or tau == math.inf):
            raise TriggerError("tau", f"must be a number in [0, {TAU_MAX:g}] or inf, got {self.tau!r}")
        try:
            every = 0 if self.every is None else -1 if isinstance(self.every, bool) else operator.index(self.every)
        except TypeError:
            every = -1
        if every < 0:
            raise TriggerError("every", f"must be an integer >= 0 (0 = none), got {self.every!r}")
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "every", every)

    @property
    def entropy(self) -> bool:
        """Does the entropy trigger run (a finite tau)?"""
        return math.isfinite(self.tau)

    def for_model(self, cfg) -> Trigger:
        """The trigger a model runs: off for a model trained without scratchpads; for one with them,
        a stride longer than its longest patch (which could never fire) is an error."""
        if not cfg.scratchpad:
            return Trigger()
        if self.every > cfg.longest_patch:
            raise TriggerError("every", f"must be at most this model's longest patch ({cfg.longest_patch} bytes), "
                                        f"got {self.every}")
        return self

    def json(self) -> dict:
        """The trigger as the server's fields carry it."""
        return {"entropy_threshold": tau_json(self.tau), "scratch_every": self.every}

    @classmethod
    def from_rate(cls, model, inputs: Iterable, rate, base: Trigger | None = None) -> Trigger:
        """`base` (default: off) with the entropy threshold at which about a fraction `rate` of ALL
        the bytes of `inputs` (x [B, L] long byte tensors) fire (scratchpad.rate defines the rate)."""
        rate = check_rate(rate)
        tau = math.inf if rate == 0 else rate_thresholds(model, inputs, [rate])[0]
        return replace(base or cls(), tau=tau)


@dataclass
class TriggerRows:
    """A trigger per row: per slot in the decode state (tau, every [B]), or per row of the
    parallel forward against [B, T] (scalars, or [B, 1])."""
    tau: torch.Tensor    # entropy threshold (nats; inf: no entropy trigger)
    every: torch.Tensor  # long: a scratchpad at every k-th byte of a patch (0: none)

    @classmethod
    def allocate(cls, slots: int, device, dtype) -> TriggerRows:
        """`slots` rows, every one off."""
        return cls(torch.full((slots,), math.inf, device=device, dtype=dtype),
                   torch.zeros(slots, dtype=torch.long, device=device))

    @classmethod
    def of(cls, threshold, every, entropy: torch.Tensor) -> TriggerRows:
        """The forward's per-call values, each checked through Trigger (threshold: a number, inf,
        None or [B]; every: k, None or [B]) -> rows against entropy [B, T]."""
        _check("tau", threshold)
        _check("every", every)
        tau = torch.as_tensor(math.inf if threshold is None else threshold, dtype=entropy.dtype, device=entropy.device)
        k = torch.as_tensor(0 if every is None else every, dtype=torch.long, device=entropy.device)
        return cls(tau.view(-1, 1) if tau.dim() else tau, k.view(-1, 1) if k.dim() else k)

    @classmethod
    def one(cls, trigger: Trigger, like: torch.Tensor) -> TriggerRows:
        """One trigger for every row (scalars of like's dtype and device)."""
        return cls(torch.tensor(trigger.tau, dtype=like.dtype, device=like.device),
                   torch.tensor(trigger.every, device=like.device))

    def set(self, slot: int, trigger: Trigger):
        self.tau[slot], self.every[slot] = trigger.tau, trigger.every

    def reset(self, slot: int):
        self.set(slot, Trigger())

    def tensors(self) -> list[torch.Tensor]:
        """The rows' tensors (a captured step reads them in place)."""
        return [self.tau, self.every]

    @property
    def entropy(self) -> torch.Tensor:
        """[B] bool: the rows whose entropy trigger runs (a finite tau)."""
        return self.tau.isfinite()

    def fires(self, entropy: torch.Tensor, open_len: torch.Tensor) -> torch.Tensor:
        """Where the trigger fires (the caller leaves out patch ends, where the commit serves): the
        aux entropy above tau, or the open patch's length (this byte included) a multiple of
        every > 0. entropy, open_len: [B] in decode, [B, T] in the forward -> bool, same shape."""
        return (entropy > self.tau) | ((self.every > 0) & (open_len % self.every.clamp(min=1) == 0))


def _check(field: str, value):
    """Check a per-call setting (a number, a list of them or a per-row tensor) through Trigger, in
    eager mode (a compiled forward is not broken up for it)."""
    if torch.compiler.is_compiling():
        return
    if torch.is_tensor(value):
        value = value.reshape(-1).tolist()
    for v in value if isinstance(value, (list, tuple)) else [value]:
        Trigger(**{field: v})
