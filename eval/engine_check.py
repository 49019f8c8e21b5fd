"""The check that the engine's incremental decode runs the events the parallel forward runs:
counted events, their FLOPs and the logits, on a sample of held-out bytes."""
from __future__ import annotations

import math

import numpy as np
import torch

from eval.scoring import score
from infer.engine import Engine
from scratchpad.accounting import Events, flops_for_events


def engine_sample(arr: np.ndarray, window: int, n_bytes: int, rows: int = 2) -> torch.Tensor:
    """rows slices of n_bytes from evenly spaced offsets of arr (uint8 [n]) -> LongTensor [rows, n_bytes]."""
    n = max(2, min(n_bytes, window, len(arr)))
    offs = np.linspace(0, len(arr) - n, rows).round().astype(np.int64) if rows > 1 else np.zeros(1, np.int64)
    return torch.from_numpy(np.stack([arr[o : o + n] for o in offs]).astype(np.int64))


def _flops(cfg, ev: Events) -> float:
    return flops_for_events(cfg, bytes=ev.bytes, commits=ev.commits, scratchpads=ev.scratchpads, keys=ev.keys,
                            aux_steps=ev.aux)["total"]


@torch.no_grad()
def engine_check(model, x: torch.Tensor, threshold: float) -> dict:
    """Run the engine's incremental decode (teacher forcing, no prefill: every byte is a decode
    step) on x [B, L] and compare its counted events, their FLOPs and its logits with the parallel
    forward's."""
    tau = None if math.isinf(threshold) else threshold
    engine = Engine(model)
    logits = engine.teacher_force(x, threshold)
    eng = Events()
    for e in engine.last_events:
        eng.add(e)
    par_score, out = score(model, x, None, tau)
    par = par_score.events
    ref = out.logits
    rel = float((logits - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
    fe, fp = _flops(model.cfg, eng), _flops(model.cfg, par)
    shown = ("commits", "scratchpads", "keys", "aux")
    return dict(
        bytes=eng.bytes,
        engine_events={k: getattr(eng, k) for k in shown},
        parallel_events={k: getattr(par, k) for k in shown},
        engine_flops_per_byte=fe / max(eng.bytes, 1),
        parallel_flops_per_byte=fp / max(par.bytes, 1),
        flops_rel_diff=abs(fe - fp) / max(fp, 1),
        logits_max_rel_diff=rel,
        agree=bool(eng.counts() == par.counts() and fe == fp),
        logits_agree=rel <= 1e-4,
    )


@torch.no_grad()
def engine_kv(model, x: torch.Tensor, threshold: float = 0.0) -> dict:
    """Decode x [B, L] with the engine (teacher forcing; τ = 0 by default: every scratchpad that may
    fire does, and none may add a trunk KV entry) and read the trunk KV it holds at the end: valid
    entries of its paged caches × bytes per entry, and the whole pages it allocated."""
    engine = Engine(model)
    engine.teacher_force(x, threshold)
    runner = engine.last_runner
    pages = runner.state.pages
    per_entry = runner.kv_bytes_per_position
    entries = int(runner.state.trunk_length.sum())
    n = x.numel()
    held = sum(pages.pages_held(b) for b in range(x.shape[0])) * pages.page * per_entry
    return dict(bytes=n, entries=entries, bytes_per_entry=per_entry, kv_bytes=entries * per_entry,
                kv_bytes_per_byte=entries * per_entry / n, page_bytes_held=held)
