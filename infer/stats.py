"""Decode statistics from counted events, priced by the config's accounting, against the
byte-level baseline of equal trunk (every byte a patch, no scratchpads)."""
from __future__ import annotations

from scratchpad.accounting import byte_baseline, costs, flops_for_events


def decode_stats(cfg, generations, seconds: float) -> dict:
    """Sums over rows. Bytes = every byte the encoder read (prompt and generated)."""
    n = sum(g.bytes for g in generations)
    commits = sum(g.commits for g in generations)
    scratch = sum(g.scratchpads for g in generations)
    flops = flops_for_events(cfg, bytes=n, commits=commits, scratchpads=scratch,
                             keys=sum(g.keys for g in generations), aux_steps=sum(g.aux_steps for g in generations))
    base_cfg = byte_baseline(cfg)
    base = flops_for_events(base_cfg, bytes=n, commits=n, scratchpads=0, aux_steps=0,
                            keys=sum(g.bytes * (g.bytes + 1) // 2 for g in generations))
    kv = costs(cfg).kv_bytes_per_patch
    generated = sum(len(g.output) for g in generations)
    return {
        "bytes": n,
        "generated_bytes": generated,
        "commits": commits,
        "scratchpads": scratch,
        "scratchpad_rate": scratch / max(n, 1),
        "trunk_calls_per_byte": (commits + scratch) / max(n, 1),
        "flops_per_byte": flops["total"] / max(n, 1),
        "byte_baseline_flops_per_byte": base["total"] / max(n, 1),
        "flops_ratio_vs_byte": flops["total"] / max(base["total"], 1),
        "kv_bytes_per_byte": kv * commits / max(n, 1),
        "byte_baseline_kv_bytes_per_byte": float(kv),
        "kv_ratio_vs_byte": commits / max(n, 1),
        "seconds": seconds,
        "bytes_per_second": generated / seconds if seconds > 0 else float("inf"),
    }
