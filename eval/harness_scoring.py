"""Byte-exact scoring and greedy generation behind the lm-evaluation-harness adapter
(eval/harness.py), free of lm_eval itself so that the math is testable on its own.

Conventions (the same as the engine's): text is UTF-8 bytes; an empty context is the
beginning-of-text byte (DOCUMENT_SEPARATOR), which the corpora put before every document; a
context is never given that byte otherwise. Inputs longer than the window keep their last bytes.

Scoring runs the parallel forward at the scorer's tau over right-padded batches: causality makes a
row's real positions independent of the padding after them, and events (commits, scratchpads, keys)
are counted over the real positions only, so FLOPs per byte are those of the bytes scored.
"""
from __future__ import annotations

import torch

from eval.windows import DEFAULT_WINDOW_CAP
from infer.engine import Engine
from scratchpad.accounting import Events, per_byte, row_events
from scratchpad.errors import UserError
from scratchpad.trigger import Trigger, tau_json
from scratchpad.vocab import DOCUMENT_SEPARATOR

BEGIN = bytes([DOCUMENT_SEPARATOR])


class RunEvents:
    """Events a run's model work counted, per request kind, with the byte baseline's keys."""

    def __init__(self):
        self.events: dict[str, Events] = {}
        self.baseline_keys: dict[str, int] = {}

    def add(self, kind: str, ev: Events, baseline_keys: int):
        self.events.setdefault(kind, Events()).add(ev)
        self.baseline_keys[kind] = self.baseline_keys.get(kind, 0) + baseline_keys

    def summary(self, cfg) -> dict:
        """Counts and per-byte accounting (scratchpad.accounting.per_byte) overall and per kind."""
        everything = Events()
        for ev in self.events.values():
            everything.add(ev)
        by_kind = {k: {**ev.counts(), **per_byte(cfg, ev, self.baseline_keys[k])} for k, ev in self.events.items()}
        return {**everything.counts(), **per_byte(cfg, everything, sum(self.baseline_keys.values())),
                "by_request_kind": by_kind}


class HarnessScorer:
    """loglikelihood / generate over bytes for one model at one tau and stride.

    window: bytes a forward may hold (default min(max_seq_len, 1024), as `scratchpad eval bpb`)."""

    def __init__(self, model, threshold=1.5, scratch_every=0, batch_size: int = 8, window: int | None = None):
        if model.training:
            raise ValueError("HarnessScorer needs a model in eval mode")
        cfg = model.cfg
        self.model, self.cfg = model, cfg
        self.trigger = Trigger(threshold, scratch_every).for_model(cfg)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.window = window or min(cfg.max_seq_len, DEFAULT_WINDOW_CAP)
        if not 2 <= self.window <= cfg.max_seq_len:
            raise UserError(f"max_length must be in [2, {cfg.max_seq_len}] (the model's context), got {self.window}")
        self.engine = Engine(model)
        self.events = RunEvents()

    def settings(self) -> dict:
        return dict(threshold=tau_json(self.trigger.tau), scratch_every=self.trigger.every, window=self.window,
                    batch_size=self.batch_size)

    def stats(self) -> dict:
        """The run so far: settings, event counts, scratchpad rate, FLOPs and KV per byte vs the byte baseline."""
        return {**self.settings(), **self.events.summary(self.cfg)}

    # scoring -------------------------------------------------------------------------------------
    def loglikelihood(self, pairs: list[tuple[bytes, bytes]]) -> list[tuple[float, bool]]:
        """(sum of ln p over the continuation's bytes given the context's, whether greedy decoding
        reproduces the continuation) per (context, continuation); an empty continuation is (0, True)."""
        rows = []
        for ctx, cont in pairs:
            if len(cont) > self.window:
                raise UserError(f"a continuation of {len(cont)} bytes exceeds the window of {self.window} bytes")
            full = (ctx or BEGIN) + cont
            inp = full[-(self.window + 1):]
            rows.append((inp[:-1], inp[1:], len(cont)))
        results: list[tuple[float, bool]] = [(0.0, True)] * len(rows)
        order = sorted((i for i in range(len(rows)) if rows[i][2] > 0), key=lambda i: -len(rows[i][0]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            for i, r in zip(idx, self._score_batch([rows[i] for i in idx])):
                results[i] = r
        return results

    @torch.no_grad()
    def _score_batch(self, rows: list[tuple[bytes, bytes, int]]) -> list[tuple[float, bool]]:
        """One right-padded parallel forward over rows (input bytes, target bytes, scored tail length)."""
        device = next(self.model.parameters()).device
        lengths = torch.tensor([len(r[0]) for r in rows])
        T = int(lengths.max())
        x = torch.zeros(len(rows), T, dtype=torch.long)
        y = torch.zeros(len(rows), T, dtype=torch.long)
        for b, (inp, tgt, _) in enumerate(rows):
            x[b, : len(inp)] = torch.tensor(list(inp))
            y[b, : len(tgt)] = torch.tensor(list(tgt))
        out = self.model(x.to(device), trigger=self.trigger)
        logp = torch.log_softmax(out.logits.float(), -1).cpu()
        self._count(out, lengths)
        results = []
        for b, (_, _, n) in enumerate(rows):
            L = int(lengths[b])
            lp, tgt = logp[b, L - n : L], y[b, L - n : L]
            results.append((float(lp.gather(1, tgt[:, None]).double().sum()), bool((lp.argmax(-1) == tgt).all())))
        return results

    def _count(self, out, lengths: torch.Tensor):
        """Events of the real positions of each row (padding masked out) and the byte baseline's keys."""
        valid = torch.arange(out.ends.shape[1]) < lengths[:, None]
        commits, scratch, keys = row_events(out.ends.cpu() & valid, out.scratch.cpu() & valid)
        n = int(lengths.sum())
        aux = n if self.cfg.aux_runs(self.trigger.entropy) else 0
        ev = Events(bytes=n, commits=int(commits.sum()), scratchpads=int(scratch.sum()), keys=int(keys.sum()), aux=aux)
        self.events.add("loglikelihood", ev, int((lengths * (lengths + 1) // 2).sum()))

    # generation ----------------------------------------------------------------------------------
    def generate(self, prompts: list[bytes], stop: list[bytes], max_bytes: int) -> list[bytes]:
        """Greedy continuations through the engine, each cut before the first stop string and
        ended at the end-of-text byte or after max_bytes. Prompts keep their last
        window - max_bytes bytes (at least one) so that prompt and output fit the window."""
        keep = max(self.window - max_bytes, 1)
        prompts = [p[-keep:] for p in prompts]
        gens = self.engine.generate(prompts, max_bytes=max_bytes, temperature=0.0, stop=stop,
                                    eos_byte=DOCUMENT_SEPARATOR, max_batch=self.batch_size, trigger=self.trigger)
        for g in gens:
            self.events.add("generate_until", g.events, g.events.bytes * (g.events.bytes + 1) // 2)
        return [cut_at_stop(g.output, stop) for g in gens]


def cut_at_stop(output: bytes, stop: list[bytes]) -> bytes:
    """output up to (not including) the earliest occurrence of any stop string."""
    ends = [i for i in (output.find(s) for s in stop if s) if i >= 0]
    return output[: min(ends)] if ends else output
