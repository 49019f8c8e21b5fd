"""The patch-based byte LM with scratchpads: parallel forward (training, prefill, evaluation).

    bytes -> encoder -> h ----------------------------------------------+ (byte residual)
               |-> aux head -> next-byte logits, entropy H              |
               |-> patcher -> ends -> pool spans -> trunk (commits)     |
               |   H > tau (not at an end) -> pool partial spans ->     |
               |        trunk step from the previous commit (scratch)   |
               +-> per byte: latest usable trunk output ----------------+-> decoder -> logits

Decode runs the same modules one byte at a time: `allocate_state` (scratchpad/decode.py),
`load_state` (prefill from this forward's trace) and `step` (scratchpad/step.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchpad.blocks import Stack
from scratchpad.config import ModelConfig
from scratchpad.decode import DecodeState, allocate_state, load_state
from scratchpad.layers import RMSNorm, entropy_nats
from scratchpad.patchers import Boundaries, Patcher
from scratchpad.pooling import Pooling, gather_spans
from scratchpad.step import ByteStep
from scratchpad.trigger import Trigger, TriggerRows
from scratchpad.vocab import VOCAB_SIZE


@dataclass
class ModelOutput:
    logits: torch.Tensor                 # [B, T, 256]
    aux_logits: torch.Tensor             # [B, T, 256]
    entropy: torch.Tensor                # [B, T] aux-head entropy (nats)
    ends: torch.Tensor                   # [B, T] bool, byte closes a patch
    scratch: torch.Tensor                # [B, T] bool, scratchpad at byte
    loss: torch.Tensor | None = None     # byte CE + aux_loss_weight * aux CE (+ router loss)
    byte_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    trace: dict = field(default_factory=dict)  # per-layer traces for the prefill (decode.load_state)

    @property
    def commits(self) -> torch.Tensor:
        """Committed patches per row [B]."""
        return self.ends.sum(1)

    @property
    def scratchpads(self) -> torch.Tensor:
        """Scratchpads per row [B]."""
        return self.scratch.sum(1)


def compact(mask: torch.Tensor):
    """mask [B, T] bool -> (positions [B, Q] of the True entries in order, valid [B, Q])."""
    B, T = mask.shape
    counts = mask.sum(1)
    if torch.compiler.is_compiling():
        # traced with capture_scalar_outputs: Q is an unbacked size, at least 2 (padding queries
        # are masked) so the compiler never has to guard on Q == 0 or Q == 1: no graph break
        Q = counts.max().clamp(min=2).item()
        torch._check(Q >= 2)
    else:
        Q = int(counts.max().item()) if B else 0
    slot = torch.where(mask, mask.long().cumsum(1) - 1, torch.full_like(counts, Q).unsqueeze(1))
    buf = torch.zeros(B, Q + 1, dtype=torch.long, device=mask.device)
    buf.scatter_(1, slot, torch.arange(T, device=mask.device).expand(B, T))
    return buf[:, :Q], torch.arange(Q, device=mask.device) < counts.unsqueeze(1)


def open_lengths(ends: torch.Tensor) -> torch.Tensor:
    """ends [B, T] bool -> [B, T] long: bytes of the open patch up to and including each byte."""
    t = torch.arange(ends.shape[1], device=ends.device)
    after_end = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], 1)
    start = torch.where(after_end, t, torch.zeros_like(t)).cummax(1).values
    return t - start + 1


def take(x, idx):
    """x [B, T, ...], idx [B, Q] -> [B, Q, ...]."""
    return torch.gather(x, 1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


class ScratchpadLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        dl, dm = cfg.d_local, cfg.d_model
        local = dict(n_heads=cfg.n_heads, ssm_expand=cfg.ssm_expand, mlp_mult=cfg.mlp_mult,
                     span=cfg.local_attn_span if cfg.local_mixer == "attn" else None)
        self.embed = nn.Embedding(VOCAB_SIZE, dl)
        self.encoder = Stack([cfg.local_mixer] * cfg.n_enc_layers, dl, **local)
        self.aux = Stack([cfg.local_mixer] * cfg.n_aux_layers, dl, **local)
        self.aux_norm = RMSNorm(dl)
        self.aux_head = nn.Linear(dl, VOCAB_SIZE, bias=False)
        self.patcher = Patcher(cfg)
        self.pooling = Pooling(cfg)
        self.trunk = Stack(cfg.trunk_mixers, dm, cfg.n_heads, cfg.ssm_expand, cfg.mlp_mult)
        self.trunk_norm = RMSNorm(dm)
        self.start = nn.Parameter(torch.zeros(dm))
        self.up = nn.Linear(dm, dl, bias=False)
        if cfg.decoder == "patch-ar":
            self.dec_embed = nn.Embedding(VOCAB_SIZE, dl)
        self.decoder = Stack([cfg.local_mixer] * cfg.n_dec_layers, dl, **local)
        self.dec_norm = RMSNorm(dl)
        self.head = nn.Linear(dl, VOCAB_SIZE, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0)

    # pieces shared with the decode step ----------------------------------------------------
    def aux_logits(self, aux_h):
        return self.aux_head(self.aux_norm(aux_h))

    def trunk_out(self, y):
        return self.trunk_norm(y)

    def decoder_input(self, x, h, aux_h, ctx):
        """Byte residual (the encoder's h, or the aux stack's aux_h when cfg.decoder_reads_aux; for
        the patch-AR decoder a fresh byte embedding) plus trunk context."""
        if self.cfg.decoder == "patch-ar":
            base = self.dec_embed(x)
        else:
            base = aux_h if self.cfg.decoder_reads_aux else h
        return base + self.up(ctx)

    def head_logits(self, d):
        return self.head(self.dec_norm(d))

    def scratch_mask(self, entropy, ends, rows: TriggerRows, scratchpad_mask=None):
        """Where transient trunk steps run, never at an end (entropy, ends [B, T] -> bool [B, T]):
        an explicit mask, or where the rows' trigger fires (rows: scalars or [B, 1])."""
        if scratchpad_mask is not None:
            if scratchpad_mask.shape != ends.shape:
                raise ValueError(f"scratchpad_mask shape {tuple(scratchpad_mask.shape)} != bytes {tuple(ends.shape)}")
            return scratchpad_mask.bool() & ~ends
        if not self.cfg.scratchpad:  # a model trained without scratchpads never fires one
            return torch.zeros_like(ends)
        return rows.fires(entropy, open_lengths(ends)) & ~ends

    def sample_thresholds(self, batch: int, generator=None, device=None) -> torch.Tensor:
        """Training thresholds per row: uniform in the configured range, sometimes inf (plain patching)."""
        cfg = self.cfg
        if not cfg.scratchpad:
            return torch.full((batch,), math.inf, device=device)
        u = torch.rand(batch, generator=generator)
        tau = cfg.train_threshold_min + u * (cfg.train_threshold_max - cfg.train_threshold_min)
        off = torch.rand(batch, generator=generator) < cfg.train_no_scratchpad_prob
        return tau.masked_fill(off, math.inf).to(device)

    # parallel forward ------------------------------------------------------------------------
    def forward(self, x, targets=None, threshold=None, scratchpad_mask=None, keep_trace=False,
                scratch_every=None, trigger: Trigger | None = None) -> ModelOutput:
        """x [B, T] long byte values; targets [B, T] long (-1 = ignore); threshold: float, inf,
        None (no entropy trigger) or [B] per row; scratch_every: k or [B], a scratchpad at every
        k-th byte of a patch as well (0 or None: none); or instead of both, one Trigger for every
        row; scratchpad_mask [B, T] bool overrides them."""
        if trigger is not None:
            if threshold is not None or scratch_every is not None:
                raise ValueError("give a trigger or threshold / scratch_every, not both")
        B, T = x.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} bytes exceeds max_seq_len {self.cfg.max_seq_len}")
        h, enc_tr = self.encoder(self.embed(x))[0::2]
        aux_h, _, aux_tr = self.aux(h)
        aux_logits = self.aux_logits(aux_h)
        entropy = entropy_nats(aux_logits.detach())
        bnd: Boundaries = self.patcher(x, h, entropy)
        ends = bnd.ends
        rows = (TriggerRows.of(threshold, scratch_every, entropy) if trigger is None
                else TriggerRows.one(trigger, entropy))
        scratch = self.scratch_mask(entropy, ends, rows, scratchpad_mask)
        if self.training and scratchpad_mask is None and self.cfg.train_scratch_keep < 1:
            # Train on a random subset of the triggered bytes: the same per-byte function at a
            # fraction of the trunk cost (the choice is data-independent, so it cannot leak).
            scratch = scratch & (torch.rand(scratch.shape, device=x.device) < self.cfg.train_scratch_keep)

        # spans: commits (s_j .. e_j) and scratchpads (s of the open patch .. n)
        static = self.patcher.static_end_positions(B, T, x.device)  # fixed patches: no host sync
        end_pos, end_ok = static if static is not None else compact(ends)
        scr_pos, scr_ok = compact(scratch)
        patch_of = ends.long().cumsum(1) - ends.long()          # patch index of each byte
        start_of_patch = torch.cat([end_pos.new_zeros(B, 1), end_pos + 1], 1)  # [B, N+1]
        N = end_pos.shape[1]
        scr_patch = take(patch_of, scr_pos)
        span_end = torch.cat([end_pos, scr_pos], 1)
        span_patch = torch.cat([torch.arange(N, device=x.device).expand(B, N), scr_patch], 1)
        span_start = take(start_of_patch, span_patch)
        pooled = self.pool_spans(self.pooling.features(h), span_start, span_end, span_patch, bnd.coord)

        y, ys, trunk_tr = self.trunk(pooled[:, :N], scratch_x=pooled[:, N:], scratch_parent=scr_patch - 1)
        y, ys = self.trunk_out(y), self.trunk_out(ys)
        if bnd.prob is not None:  # router: straight-through confidence, value 1, gradient to prob
            p = take(bnd.prob, end_pos).unsqueeze(-1)
            y = y * (p + (1 - p).detach())

        # per byte: the latest usable trunk output (commit at e_j or scratchpad at n)
        D = y.shape[-1]
        events = x.new_zeros(B, T + 1, D, dtype=y.dtype)
        for pos, ok, val in ((end_pos, end_ok, y), (scr_pos, scr_ok, ys)):  # padding goes to slot T
            events = events.scatter(1, pos.masked_fill(~ok, T).unsqueeze(-1).expand(-1, -1, D), val)
        t = torch.arange(T, device=x.device)
        latest = torch.where(ends | scratch, t, torch.full_like(t, -1)).cummax(1).values
        ctx = torch.where((latest >= 0).unsqueeze(-1), take(events, latest.clamp(min=0)), self.start.to(y.dtype))

        reset = None
        if self.cfg.decoder == "patch-ar":
            reset = torch.cat([torch.ones_like(ends[:, :1]), ends[:, :-1]], 1)
        d, _, dec_tr = self.decoder(self.decoder_input(x, h, aux_h, ctx), reset=reset)
        logits = self.head_logits(d)

        out = ModelOutput(logits=logits, aux_logits=aux_logits, entropy=entropy, ends=ends, scratch=scratch)
        if targets is not None:
            out.byte_loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE).float(), targets.reshape(-1), ignore_index=-1)
            out.aux_loss = F.cross_entropy(aux_logits.reshape(-1, VOCAB_SIZE).float(), targets.reshape(-1), ignore_index=-1)
            out.loss = out.byte_loss + self.cfg.aux_loss_weight * out.aux_loss
            if bnd.aux_loss is not None:
                out.loss = out.loss + self.cfg.router_ratio_weight * bnd.aux_loss
        if keep_trace:
            out.trace = dict(h=h, encoder=enc_tr, aux=aux_tr, trunk=trunk_tr, decoder=dec_tr, ctx=ctx,
                             boundaries=bnd)
        return out

    # incremental decode ----------------------------------------------------------------------
    def allocate_state(self, slots: int, device=None, dtype=None, page: int = 16, pages: int | None = None) -> DecodeState:
        """Decode caches for `slots` sequences (scratchpad/decode.py: allocate_state)."""
        return allocate_state(self, slots, device, dtype, page, pages)

    def load_state(self, state: DecodeState, slot: int, prompt: torch.Tensor, trigger: Trigger):
        """Prefill one slot from the parallel forward over prompt [n] (scratchpad/decode.py: load_state)."""
        load_state(self, state, slot, prompt, trigger)

    def step(self, x: torch.Tensor, state: DecodeState, run_aux: bool | None = None) -> torch.Tensor:
        """One byte x [B] for every slot -> logits [B, 256] (scratchpad/step.py). run_aux: whether
        the aux stack runs (None: where this model needs it for the active slots' triggers)."""
        if run_aux is None:
            run_aux = self.cfg.aux_runs(bool((state.trigger.entropy & state.active).any()))
        return ByteStep(self)(x, state, run_aux)

    def pool_spans(self, h, start, end, patch_index, coord):
        """Pool spans of byte features h[start..end] (h [B, T, F], the rest [B, Q]) through the last
        cfg.longest_patch bytes up to each end -> [B, Q, d_model]."""
        B, Q = end.shape
        W = self.cfg.longest_patch
        win, pos = gather_spans(h, end, W)
        last = pos == end.unsqueeze(-1)  # padding spans keep one valid byte so nothing is NaN
        if self.cfg.pooling == "soft":
            valid = (pos >= 0) | last
            cwin = torch.gather(coord, 1, pos.clamp(min=0).view(B, Q * W)).view(B, Q, W)
            out = self.pooling(win.view(B * Q, W, h.shape[-1]), valid.view(B * Q, W), cwin.view(B * Q, W),
                               (patch_index.to(h.dtype) + 0.5).view(-1))
        else:
            valid = (pos >= start.unsqueeze(-1)) | last
            out = self.pooling(win.view(B * Q, W, h.shape[-1]), valid.view(B * Q, W))
        return out.view(B, Q, out.shape[-1])


def build_model(cfg: ModelConfig) -> ScratchpadLM:
    """Build a randomly initialised model from a config (validated), in eval mode: its forward is
    deterministic (two identical calls give identical logits). Training mode (`model.train()`, as
    the trainer sets it) keeps a random `train_scratch_keep` fraction of the triggered scratchpads."""
    return ScratchpadLM(cfg).eval()
