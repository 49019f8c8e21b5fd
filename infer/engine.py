"""The generation engine: prefill by the parallel forward, then one byte per step.

Per byte and row: encoder step -> aux entropy -> patcher; if the byte closes a patch the trunk
commits it (SSM state advances, one KV entry per attention layer); elif entropy > tau a transient
trunk step reads the caches and writes nothing; -> decoder step -> logits -> sample.
Rows keep their own boundaries, scratchpads and cache lengths; the trunk runs only on the rows
that need it this byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from infer.sampling import DEFAULT_TEMPERATURE, Sampler
from infer.state import DecodeState, allocate_state
from scratchpad.layers import entropy_nats
from scratchpad.errors import UserError
from scratchpad.vocab import DOCUMENT_SEPARATOR


@dataclass
class Generation:
    prompt: bytes
    output: bytes
    stop_reason: str            # "max_bytes", "stop_string", "eos", "limit"
    bytes: int
    commits: int
    scratchpads: int
    keys: int                   # trunk entries read over all trunk steps
    aux_steps: int


def check_threshold(threshold) -> float:
    """tau >= 0 or inf; None means inf (no scratchpads)."""
    if threshold is None:
        return math.inf
    tau = float(threshold)
    if math.isnan(tau) or tau < 0:
        raise UserError(f"entropy threshold must be a number >= 0 or inf, got {threshold!r}")
    return tau


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


class Engine:
    def __init__(self, model, device=None):
        self.model = model.eval()
        self.cfg = model.cfg
        p = next(model.parameters())
        self.device = torch.device(device) if device else p.device
        self.dtype = p.dtype

    # state ------------------------------------------------------------------------------------
    def new_state(self, batch: int, max_bytes: int) -> DecodeState:
        return allocate_state(self.model, batch, max_bytes, self.device, self.dtype)

    @torch.no_grad()
    def prefill(self, state: DecodeState, row: int, prompt: torch.Tensor, threshold: float):
        """Run the parallel forward over prompt [n] and hand its caches to `row`.
        Returns the logits [256] at the last prompt byte (None for an empty prompt)."""
        n = prompt.numel()
        if n == 0:
            return None
        m = self.model
        out = m(prompt.view(1, n).to(self.device), threshold=threshold, keep_trace=True)
        tr, bnd = out.trace, out.trace["boundaries"]
        m.encoder.load(state.encoder, tr["encoder"], n, row)
        m.aux.load(state.aux, tr["aux"], n, row)
        m.decoder.load(state.decoder, tr["decoder"], n, row)
        commits = int(out.ends.sum())
        m.trunk.load(state.trunk, tr["trunk"], commits, row)
        ends = out.ends[0].nonzero()
        last_end = int(ends[-1]) if len(ends) else -1
        ps = state.patcher
        ps.length[row] = n - 1 - last_end
        ps.last_entropy[row] = out.entropy[0, -1]
        ps.last_byte[row] = prompt[-1]
        ps.last_hidden[row] = tr["h"][0, -1]
        if bnd.z is not None:
            ps.coord[row] = bnd.z[0, -1]
            ps.forced[row] = bnd.forced[0].sum()
        W = self.cfg.longest_patch
        k = min(W, n)
        state.pool_ring[row].zero_()
        state.pool_ring[row, W - k :] = m.pooling.features(tr["h"][0, n - k :])
        state.coord_ring[row].zero_()
        if bnd.coord is not None:
            state.coord_ring[row, W - k :] = bnd.coord[0, n - k :]
        state.ctx[row] = tr["ctx"][0, -1]
        c = state.counts
        c.bytes[row], c.commits[row], c.scratchpads[row], c.aux[row] = n, commits, int(out.scratch.sum()), n
        patch_of = out.ends[0].long().cumsum(0) - out.ends[0].long()
        c.keys[row] = commits * (commits + 1) // 2 + int((patch_of[out.scratch[0]] + 1).sum())
        return out.logits[0, -1]

    @torch.no_grad()
    def step(self, state: DecodeState, x: torch.Tensor, rows: torch.Tensor, threshold: float) -> torch.Tensor:
        """Feed byte x [R] to `rows` [R] (sorted, distinct) -> logits [R, 256] predicting the next byte."""
        m, cfg = self.model, self.cfg
        h = m.encoder.step(m.embed(x), state.encoder, rows)
        aux_h = None
        if cfg.aux_runs(math.isfinite(threshold)):
            aux_h = m.aux.step(h, state.aux, rows)
            entropy = entropy_nats(m.aux_logits(aux_h))
            state.counts.aux[rows] += 1
        else:
            entropy = torch.zeros(len(rows), device=x.device, dtype=h.dtype)
        ps = state.patcher
        open_len = ps.length[rows] + 1                 # bytes of the open patch, this one included
        seen = state.counts.bytes[rows] + 1
        patch_index = state.counts.commits[rows]
        ends, coord, prob = m.patcher.step(x, h, entropy, ps, rows)
        state.pool_ring[rows] = torch.cat([state.pool_ring[rows, 1:], m.pooling.features(h).unsqueeze(1)], 1)
        if coord is not None:
            state.coord_ring[rows] = torch.cat([state.coord_ring[rows, 1:], coord.unsqueeze(1)], 1)
        scratch = ~ends & (entropy > threshold) if math.isfinite(threshold) and cfg.scratchpad else torch.zeros_like(ends)

        commit_idx = ends.nonzero().flatten()
        if len(commit_idx):
            pooled = self._pool(state, rows, commit_idx, open_len, seen, patch_index, h.dtype)
            y = m.trunk_out(m.trunk.step(pooled, state.trunk, rows[commit_idx]))
            if prob is not None:  # router straight-through factor, as in the parallel forward
                p = prob[commit_idx].unsqueeze(-1)
                y = y * (p + (1 - p))
            state.ctx[rows[commit_idx]] = y
        scratch_idx = scratch.nonzero().flatten()
        if len(scratch_idx):  # pooled apart from commits so commits never depend on scratchpads
            pooled = self._pool(state, rows, scratch_idx, open_len, seen, patch_index, h.dtype)
            state.ctx[rows[scratch_idx]] = m.trunk_out(m.trunk.transient(pooled, state.trunk, rows[scratch_idx]))
        reset = (open_len == 1) if cfg.decoder == "patch-ar" else None
        d = m.decoder.step(m.decoder_input(x, h, aux_h, state.ctx[rows]), state.decoder, rows, reset=reset)
        c = state.counts
        c.bytes[rows] += 1
        c.commits[rows] += ends.long()
        c.scratchpads[rows] += scratch.long()
        c.keys[rows] += (ends | scratch).long() * (patch_index + 1)
        return m.head_logits(d)

    def _pool(self, state, rows, idx, open_len, seen, patch_index, dtype):
        """Pool the open patch (up to this byte) of rows[idx] from the pooling ring (the last longest_patch bytes)."""
        W = self.cfg.longest_patch
        slot = torch.arange(W, device=state.pool_ring.device)
        win = state.pool_ring[rows[idx]]
        if self.cfg.pooling == "soft":
            valid = (slot >= W - seen[idx].unsqueeze(1)) | (slot == W - 1)
            return self.model.pooling(win, valid, state.coord_ring[rows[idx]], patch_index[idx].to(dtype) + 0.5)
        return self.model.pooling(win, slot >= W - open_len[idx].unsqueeze(1))

    # whole sequences ---------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_force(self, x: torch.Tensor, threshold=None, prefill=0) -> torch.Tensor:
        """Logits [B, T, 256] that incremental decode produces for bytes x [B, T]. The first
        `prefill` bytes (an int, or one per row) go through the parallel prefill; then each row
        steps on its own from there. Compare with model(x, threshold=...).logits."""
        tau = check_threshold(threshold)
        B, T = x.shape
        starts = [prefill] * B if isinstance(prefill, int) else list(prefill)
        state = self.new_state(B, T)
        logits = torch.zeros(B, T, 256, device=self.device, dtype=self.dtype)
        for b, n in enumerate(starts):
            if n:
                self.prefill(state, b, x[b, :n], tau)
                logits[b, :n] = self.model(x[b : b + 1, :n].to(self.device), threshold=tau).logits[0]
        begin = torch.tensor(starts, device=self.device)
        for t in range(min(starts), T):
            rows = (begin <= t).nonzero().flatten()
            logits[rows, t] = self.step(state, x[rows, t].to(self.device), rows, tau)
        self.last_state = state
        return logits

    def generate(self, prompts: list[bytes], max_bytes: int = 256, threshold=1.5, temperature: float = DEFAULT_TEMPERATURE,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop: list[bytes] | None = None,
                 eos_byte: int | None = DOCUMENT_SEPARATOR, on_bytes=None) -> list[Generation]:
        """Generate up to max_bytes per prompt. `on_bytes(row, bytes)` streams each new byte.
        A prompt longer than the model's limit keeps only its last bytes (the returned prompt
        says which); an empty prompt starts from the beginning-of-text state."""
        tau = check_threshold(threshold)
        if max_bytes < 1:
            raise UserError(f"max_bytes must be >= 1, got {max_bytes}")
        sampler = Sampler(len(prompts), temperature, top_k, top_p, seed)
        limit = self.cfg.max_seq_len
        prompts = [bytes(p)[-(limit - 1):] if len(p) >= limit else bytes(p) for p in prompts]
        B = len(prompts)
        total = min(limit, max(len(p) for p in prompts) + 1 + max_bytes)
        state = self.new_state(B, total)
        logits = torch.zeros(B, 256, device=self.device, dtype=self.dtype)
        for b, p in enumerate(prompts):
            context = p or bytes([DOCUMENT_SEPARATOR])  # empty prompt: beginning of text
            logits[b] = self.prefill(state, b, torch.tensor(list(context), dtype=torch.long), tau)
        outputs = [bytearray() for _ in prompts]
        reasons = [None] * B
        active = torch.arange(B, device=self.device)
        stop = [s for s in (stop or []) if s]
        while len(active):
            active_rows = active.tolist()
            nxt = sampler(logits[active], active_rows)
            keep = []
            for i, b in enumerate(active_rows):
                byte = int(nxt[i])
                if eos_byte is not None and byte == eos_byte:
                    reasons[b] = "eos"
                    continue
                outputs[b].append(byte)
                if on_bytes:
                    on_bytes(b, bytes([byte]))
                if any(outputs[b].endswith(s) for s in stop):
                    reasons[b] = "stop_string"
                elif len(outputs[b]) >= max_bytes:
                    reasons[b] = "max_bytes"
                elif len(prompts[b]) + len(outputs[b]) >= total:
                    reasons[b] = "limit"
                else:
                    keep.append(i)
            if not keep:
                break
            active_next = active[keep]
            logits[active_next] = self.step(state, nxt[keep].to(self.device), active_next, tau)
            active = active_next
        c = state.counts
        return [Generation(prompts[b], bytes(outputs[b]), reasons[b], int(c.bytes[b]), int(c.commits[b]),
                           int(c.scratchpads[b]), int(c.keys[b]), int(c.aux[b])) for b in range(B)]
