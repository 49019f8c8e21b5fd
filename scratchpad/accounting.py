"""Compute and memory accounting from the config alone (docs/ARCHITECTURE.md section 6).

Costs are multiply-adds (MACs); FLOPs = 2 * MACs. Attention cost grows with the number of keys
read, so trunk steps are priced as a fixed part plus a part per attended key. The engine counts
the events it ran (bytes, commits, scratchpads, keys read) and `flops_for_events` prices them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from scratchpad.config import ModelConfig


def block_macs(kind: str, d: int, cfg: ModelConfig) -> int:
    """Per position, excluding attention's per-key part: mixer projections + MLP."""
    mlp = 2 * d * max(1, int(d * cfg.mlp_mult))
    if kind == "ssm":
        e = d * cfg.ssm_expand
        return 3 * d * e + e * d + 4 * e + mlp
    return 4 * d * d + mlp


def local_macs(layers: int, cfg: ModelConfig) -> int:
    d = cfg.d_local
    per = block_macs(cfg.local_mixer, d, cfg) + (2 * d * cfg.local_attn_span if cfg.local_mixer == "attn" else 0)
    return layers * per


def pooling_macs(cfg: ModelConfig) -> int:
    d, W = cfg.d_local, cfg.longest_patch
    inner = {"mean": W * d, "soft": 3 * W * d, "attn": W * (2 * d * d + 2 * d),
             "xattn": W * (2 * d * d + 2 * d) + d * d, "gru": W * 6 * d * d}[cfg.pooling]
    return inner + d * cfg.d_model


@dataclass
class Costs:
    encoder_byte: int        # embedding lookup is free; encoder layers
    aux_step: int            # aux layers + 256-way head
    trunk_step: int          # pooling + trunk layers, without attention over keys
    trunk_per_key: int       # extra MACs per attended patch (all attention layers)
    decoder_byte: int        # context projection + decoder layers + 256-way head
    kv_bytes_per_patch: int  # K and V of every trunk attention layer
    attention_layers: int

    def trunk(self, keys: int) -> int:
        """One trunk step (commit or scratchpad) that attends over `keys` patches (self included)."""
        return self.trunk_step + self.trunk_per_key * keys


def costs(cfg: ModelConfig, kv_dtype_bytes: int = 4) -> Costs:
    attn = sum(m == "attn" for m in cfg.trunk_mixers)
    d, dm = cfg.d_local, cfg.d_model
    return Costs(
        encoder_byte=local_macs(cfg.n_enc_layers, cfg),
        aux_step=local_macs(cfg.n_aux_layers, cfg) + d * 256,
        trunk_step=pooling_macs(cfg) + sum(block_macs(k, dm, cfg) for k in cfg.trunk_mixers),
        trunk_per_key=attn * 2 * dm,
        decoder_byte=dm * d + local_macs(cfg.n_dec_layers, cfg) + d * 256,
        kv_bytes_per_patch=attn * 2 * dm * kv_dtype_bytes,
        attention_layers=attn,
    )


@dataclass
class Events:
    """Events a decode or a parallel forward ran, summed over rows. keys = trunk entries read over
    all trunk steps, self included (a commit of patch j reads j + 1, a scratchpad in patch p reads
    the p committed ones plus itself); aux = aux-head steps (skipped when nothing needs entropy)."""

    bytes: int = 0
    commits: int = 0
    scratchpads: int = 0
    keys: int = 0
    aux: int = 0

    COUNTS = ("bytes", "commits", "scratchpads", "keys", "aux")

    def add(self, other: "Events") -> "Events":
        for k in self.COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in self.COUNTS}


def row_events(ends: torch.Tensor, scratch: torch.Tensor):
    """Per row [B] of a parallel forward's ends, scratch [B, T] bool: (commits, scratchpads, keys)."""
    commits = ends.sum(1)
    patch_of = ends.long().cumsum(1) - ends.long()
    keys = commits * (commits + 1) // 2 + ((patch_of + 1) * scratch.long()).sum(1)
    return commits, scratch.sum(1), keys


def byte_baseline(cfg: ModelConfig) -> ModelConfig:
    """The byte-level model of equal trunk: cfg with every byte a patch (fixed P = 1, mean pooling,
    residual decoder) and no scratchpads. The encoder, aux and decoder layers are kept, so the aux
    stack still runs at every byte when cfg.decoder_reads_aux (see ModelConfig.aux_runs)."""
    return dataclasses.replace(cfg, name=f"{cfg.name}-byte-baseline", patcher="fixed", patch_size=1,
                               pooling="mean", decoder="residual", scratchpad=False).validate()


def flops_for_events(cfg: ModelConfig, *, bytes: int, commits: int, scratchpads: int, keys: int,
                     aux_steps: int | None = None) -> dict:
    """FLOPs split by part for counted events. `keys` = patches attended summed over trunk steps."""
    c = costs(cfg)
    aux = bytes if aux_steps is None else aux_steps
    macs = {
        "encoder": bytes * c.encoder_byte,
        "aux": aux * c.aux_step,
        "trunk": (commits + scratchpads) * c.trunk_step + keys * c.trunk_per_key,
        "decoder": bytes * c.decoder_byte,
    }
    flops = {k: 2 * v for k, v in macs.items()}
    flops["total"] = sum(flops.values())
    return flops


PARTS = ("encoder", "aux", "trunk", "decoder")


def per_byte(cfg: ModelConfig, ev: Events, baseline_keys: int) -> dict:
    """FLOPs per byte by part, KV bytes per byte and both against the byte-level baseline of equal
    trunk (`byte_baseline`: aux steps only if its decoder reads the aux stack) reading `baseline_keys`
    on the same bytes."""
    n = max(ev.bytes, 1)
    fl = flops_for_events(cfg, bytes=ev.bytes, commits=ev.commits, scratchpads=ev.scratchpads, keys=ev.keys,
                          aux_steps=ev.aux)
    base_cfg = byte_baseline(cfg)
    base = flops_for_events(base_cfg, bytes=ev.bytes, commits=ev.bytes, scratchpads=0, keys=baseline_keys,
                            aux_steps=ev.bytes if base_cfg.aux_runs(False) else 0)
    kv = costs(cfg).kv_bytes_per_patch
    base_kv = costs(base_cfg).kv_bytes_per_patch
    return dict(
        scratchpad_rate=ev.scratchpads / n,
        commits_per_byte=ev.commits / n,
        trunk_calls_per_byte=(ev.commits + ev.scratchpads) / n,
        flops_per_byte=fl["total"] / n,
        flops_per_byte_split={k: fl[k] / n for k in PARTS},
        byte_baseline_flops_per_byte=base["total"] / n,
        byte_baseline_flops_per_byte_split={k: base[k] / n for k in PARTS},
        flops_ratio_vs_byte=fl["total"] / max(base["total"], 1),
        flops_ratio_vs_byte_split={k: fl[k] / max(base[k], 1) if base[k] else None for k in PARTS},
        kv_bytes_per_byte=kv * ev.commits / n,
        byte_baseline_kv_bytes_per_byte=float(base_kv),
        # trunk cache entries per byte relative to one per byte (= KV bytes ratio when the trunk
        # has attention layers; an SSM-only trunk has no KV cache at all, then this is the entry ratio)
        kv_ratio_vs_byte=ev.commits / n,
    )


def training_flops(cfg: ModelConfig, rows: int, seq_len: int, commits: float, scratchpads: float) -> float:
    """Training FLOPs of one micro-batch of `rows` sequences (forward x 3 for forward + backward) from
    its counted commits and scratchpads; trunk attention keys as in the parallel forward (causal over
    commits; a scratchpad reads its row's commits so far, on average half). The one training-FLOP
    formula: the trainer's budget and log, and every report built on them."""
    n = commits / max(rows, 1)
    keys = rows * n * (n + 1) / 2 + scratchpads * (n / 2 + 1)
    fwd = flops_for_events(cfg, bytes=rows * seq_len, commits=round(commits), scratchpads=round(scratchpads),
                           keys=round(keys))["total"]
    return 3.0 * fwd


def expected_events(cfg: ModelConfig, length: int, scratch_rate: float = 0.0, commits: int | None = None) -> dict:
    """Events of a length-byte sequence when patches are closed `commits` times (default length / P)
    and a fraction scratch_rate of bytes trigger a scratchpad; keys assume evenly spread commits."""
    n = length // cfg.patch_size if commits is None else commits
    s = int(round(scratch_rate * length))
    keys = n * (n + 1) // 2 + s * (n / 2 + 1)
    return dict(bytes=length, commits=n, scratchpads=s, keys=int(keys))


def parameter_counts(model) -> dict:
    """Parameters per part of a built model."""
    parts = {"encoder": ("embed", "encoder"), "aux": ("aux", "aux_norm", "aux_head"),
             "patching": ("patcher", "pooling"), "trunk": ("trunk", "trunk_norm", "start"),
             "decoder": ("up", "dec_embed", "decoder", "dec_norm", "head")}
    out = {part: 0 for part in parts}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        out[next(k for k, v in parts.items() if top in v)] += p.numel()
    out["total"] = sum(out.values())
    return out
