"""The scratchpad trigger: where transient trunk steps fire, as one validated value.

    Trigger(tau=1.5)             a scratchpad where the aux entropy exceeds tau nats
    Trigger(every=4)             ... and/or at every 4th byte of a patch (0 = none)
    Trigger.from_rate(model, inputs, 0.1)   tau such that 10% of all the bytes fire

Every door (the CLIs, the server, the Python API, the parallel forward) builds a Trigger and
the checks run once, in its constructor; a bad value raises TriggerError, which names the field
so that each door can say it in its own words (a flag, a JSON field). The checks that depend on
a model (a stride within its longest patch; no scratchpads for a model trained without them)
are `for_model`. `fires` is the one rule of where it fires, in the parallel forward and in the
decode step (which keeps a trigger per slot: the tau, every rows of its decode state).
"""
from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass

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


def fires(entropy, open_len, tau, every):
    """Where a trigger fires (the caller leaves out patch ends, where the commit serves): the aux
    entropy above tau, or the open patch's length (this byte included) a multiple of every > 0.
    The one rule of the parallel forward (entropy, open_len [B, T]; tau, every [B, 1]) and of the
    decode step (all [B], per slot)."""
    return (entropy > tau) | ((every > 0) & (open_len % every.clamp(min=1) == 0))


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
    def from_rate(cls, model, inputs: Iterable, rate, every: int = 0) -> Trigger:
        """The entropy trigger at which about a fraction `rate` of ALL the bytes of `inputs` (x [B, L]
        long byte tensors) fire (scratchpad.rate defines the rate), plus the stride `every`."""
        rate = check_rate(rate)
        return cls(math.inf if rate == 0 else rate_thresholds(model, inputs, [rate])[0], every)
