"""Decode statistics of finished generations: the config's accounting per byte (the same as the
eval reports, scratchpad.accounting.per_byte) plus what a decode adds (speed, KV held)."""
from __future__ import annotations

from scratchpad.accounting import Events, per_byte


def decode_stats(cfg, generations, seconds: float) -> dict:
    """Sums over rows. Bytes = every byte the encoder read (prompt and generated)."""
    ev = Events()
    for g in generations:
        ev.add(g.events)
    generated = sum(len(g.output) for g in generations)
    baseline_keys = sum(g.events.bytes * (g.events.bytes + 1) // 2 for g in generations)
    return {
        **ev.counts(),
        "generated_bytes": generated,
        **per_byte(cfg, ev, baseline_keys),
        "kv_bytes_held": sum(g.kv_bytes for g in generations),
        "slides": sum(g.slides for g in generations),
        "seconds": seconds,
        "bytes_per_second": generated / seconds if seconds > 0 else float("inf"),
    }


def step_stats(runner) -> dict:
    """How the runner's decode steps ran: decode_step (cuda-graphs, static, compiled or eager) and
    graph_fallback (why graph capture failed when the runner fell back to eager decode, else None)."""
    return {"decode_step": runner.step_kind, "graph_fallback": runner.fallback}
