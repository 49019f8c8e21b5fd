"""A request and its life in the engine: settings, output so far, events, why it stopped."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from infer.options import check_every, check_threshold
from infer.sampling import DEFAULT_TEMPERATURE, check_sampling
from scratchpad.accounting import Events
from scratchpad.errors import UserError
from scratchpad.vocab import DOCUMENT_SEPARATOR

STOP_REASONS = ("max_bytes", "stop_string", "eos", "limit", "cancelled", "error")
_ids = itertools.count()


@dataclass
class Request:
    prompt: bytes
    max_bytes: int = 256
    threshold: float = 1.5          # tau (nats); inf = no scratchpads
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: list = field(default_factory=list)   # stop strings (bytes)
    eos_byte: int | None = DOCUMENT_SEPARATOR
    scratch_every: int = 0          # also a scratchpad at every k-th byte of a patch (0: none)

    def validate(self) -> "Request":
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise UserError(f"max_bytes must be an integer >= 1, got {self.max_bytes!r}")
        self.threshold = check_threshold(self.threshold)
        self.scratch_every = check_every(self.scratch_every)
        check_sampling(self.temperature, self.top_k, self.top_p)
        self.stop = [bytes(s) for s in self.stop if s]
        return self


@dataclass
class Generation:
    prompt: bytes
    output: bytes
    stop_reason: str            # one of STOP_REASONS
    bytes: int                  # bytes the encoder read (prompt and generated, over all slides)
    commits: int
    scratchpads: int
    keys: int                   # trunk entries read over all trunk steps
    aux_steps: int
    kv_bytes: int = 0           # trunk KV bytes the sequence held at its end (whole pages)
    slides: int = 0             # times the context slid (re-prefilled from its tail)
    error: str | None = None    # stop_reason "error": what the engine raised on this sequence

    @property
    def events(self) -> Events:
        return Events(self.bytes, self.commits, self.scratchpads, self.keys, self.aux_steps)


class Sequence:
    """One request in flight. `on_bytes(seq, data)` streams new bytes; `on_done(seq)` ends it."""

    def __init__(self, request: Request, on_bytes=None, index: int = 0, on_done=None):
        self.id = next(_ids)
        self.on_done = on_done       # called (from the engine's thread) once the sequence ends
        self.index = index
        self.request = request
        self.prompt = request.prompt
        self.output = bytearray()
        self.on_bytes = on_bytes
        self.slot: int | None = None
        self.fed = 0                 # bytes in the slot's context (prompt tail + generated)
        self.events = Events()       # events of earlier slot contexts (before slides)
        self.slides = 0
        self.kv_bytes = 0
        self.stop_reason: str | None = None
        self.error: str | None = None  # set with stop_reason "error" (see Scheduler: isolation)
        self.cancelled = False

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def history(self) -> bytes:
        """Every byte the sequence's slot has read: the prompt (the beginning-of-text byte when it
        is empty), then the output."""
        return (self.prompt or bytes([DOCUMENT_SEPARATOR])) + bytes(self.output)

    def context(self, keep: int) -> bytes:
        """The last `keep` bytes of the history."""
        return self.history()[-keep:]

    def result(self) -> Generation:
        e = self.events
        return Generation(self.prompt, bytes(self.output), self.stop_reason, e.bytes, e.commits, e.scratchpads,
                          e.keys, e.aux, self.kv_bytes, self.slides, self.error)
