"""The tokenizer baseline: a sentencepiece BPE tokenizer trained on a sample of the training corpus
and the same trunk (the scratchpad package's `Stack` of a preset's trunk mixers and width) trained
over its tokens; BPB is counted per byte (total token NLL / bytes), so it sits on the same axis as
the byte-level models. `TokenBaseline` saves, loads and scores one (eval sweep, variants and scale
use it); `run` trains and scores one; tokenizer_baseline_cli.py is `scratchpad eval tokenizer`.

Lossless on any bytes: bytes map 1:1 to the code points U+0000..U+00FF (Latin-1) before
sentencepiece sees them, normalisation is off (identity, no dummy prefix, whitespace kept), the
newline is a user-defined piece (sentencepiece trains on lines), and byte fallback covers anything
unseen; decode(encode(b)) == b is checked on the evaluated bytes and reported. The merges therefore
act on bytes, as in byte-level BPE.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from eval.experiments.bpe_tokenizer import Tokenizer, spread_chunks
from eval.scoring import LN2
from eval.windows import batches, data_file, read_bytes
from scratchpad import ModelConfig
from scratchpad.accounting import block_macs
from scratchpad.blocks import Stack
from scratchpad.checkpoint import atomic_folder
from scratchpad.errors import UserError
from scratchpad.layers import RMSNorm

TOKENIZER_FILE, WEIGHTS_FILE, META_FILE = "tokenizer.model", "token_lm.safetensors", "token_lm.json"
CLI_SUBFOLDER = "baseline"  # `scratchpad eval tokenizer --out OUT` writes the baseline into OUT/baseline/


# ----------------------------------------------------------------------------------------------
# token LM: embedding -> the scratchpad trunk Stack -> norm -> head


def trunk_fields(cfg: ModelConfig) -> dict:
    return dict(trunk_mixers=list(cfg.trunk_mixers), d_model=cfg.d_model, n_heads=cfg.n_heads,
                ssm_expand=cfg.ssm_expand, mlp_mult=cfg.mlp_mult, preset=cfg.name)


class TokenLM(nn.Module):
    def __init__(self, vocab_size: int, trunk: dict):
        super().__init__()
        d = trunk["d_model"]
        self.trunk_cfg = dict(trunk)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, d)
        self.trunk = Stack(trunk["trunk_mixers"], d, trunk["n_heads"], trunk["ssm_expand"], trunk["mlp_mult"])
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1.0)

    def forward(self, x):
        y, _, _ = self.trunk(self.embed(x))
        return self.head(self.norm(y))


def token_macs(trunk: dict, vocab: int) -> tuple[int, int]:
    """(MACs per token without attention keys, MACs per attended key) of the token LM."""
    cfg = ModelConfig(d_model=trunk["d_model"], trunk_mixers=trunk["trunk_mixers"], n_heads=trunk["n_heads"],
                      ssm_expand=trunk["ssm_expand"], mlp_mult=trunk["mlp_mult"])
    d = trunk["d_model"]
    per_token = sum(block_macs(k, d, cfg) for k in trunk["trunk_mixers"]) + d * vocab
    attn = sum(k == "attn" for k in trunk["trunk_mixers"])
    return per_token, attn * 2 * d


# ----------------------------------------------------------------------------------------------
# the baseline: train, evaluate, save, load


class TokenBaseline:
    def __init__(self, tokenizer: Tokenizer, model: TokenLM, seq_len: int, meta: dict | None = None):
        self.tok, self.model, self.seq_len = tokenizer, model, seq_len
        self.meta = dict(meta or {})

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def save(self, folder: Path) -> Path:
        """Write the baseline's folder atomically (the checkpoint writer: a temporary sibling
        renamed into place), replacing any previous version of it."""
        from safetensors.torch import save_file

        with atomic_folder(folder) as tmp:
            (tmp / TOKENIZER_FILE).write_bytes(self.tok.proto)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
            meta = dict(self.meta, vocab_size=self.tok.vocab_size, trunk=self.model.trunk_cfg, seq_len=self.seq_len,
                        params=self.params)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return Path(folder)

    @classmethod
    def load(cls, folder) -> "TokenBaseline":
        """A baseline folder, or the --out folder of `scratchpad eval tokenizer` (its baseline/)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / META_FILE).is_file() and (folder / CLI_SUBFOLDER / META_FILE).is_file():
            folder = folder / CLI_SUBFOLDER
        missing = [f for f in (TOKENIZER_FILE, WEIGHTS_FILE, META_FILE) if not (folder / f).is_file()]
        if not folder.is_dir() or missing:
            raise UserError(f"--tokenizer-baseline {folder}: not a tokenizer-baseline folder "
                            f"(missing {', '.join(missing) if folder.is_dir() else 'folder'}; build one with scratchpad eval tokenizer)")
        try:
            meta = json.loads((folder / META_FILE).read_text())
            tok = Tokenizer((folder / TOKENIZER_FILE).read_bytes())
            model = TokenLM(int(meta["vocab_size"]), meta["trunk"])
            model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
            seq_len = int(meta["seq_len"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise UserError(f"--tokenizer-baseline {folder}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        return cls(tok, model.eval(), seq_len, meta)

    @torch.no_grad()
    def evaluate(self, arr: np.ndarray, batch_size: int = 8) -> dict:
        """BPB over the bytes arr: token NLL summed over every token after the first, divided by
        the bytes those tokens cover; FLOPs and KV bytes per byte from the accounting."""
        self.model.eval()
        raw = bytes(arr)
        ids = self.tok.encode(raw)
        lossless = self.tok.decode(ids) == raw
        if len(ids) < 2:
            raise UserError("tokenizer baseline: the evaluated bytes encode to fewer than 2 tokens")
        nats, tokens, keys, n_windows = 0.0, 0, 0, 0
        for x, y in batches(ids, self.seq_len, batch_size):  # the same windows as the byte models' scoring
            logits = self.model(x)
            nats += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum").double())
            B, L = x.shape
            tokens, keys, n_windows = tokens + B * L, keys + B * L * (L + 1) // 2, n_windows + B
        covered = len(raw) - len(self.tok.decode(ids[:1]))  # bytes of the predicted tokens
        per_token, per_key = token_macs(self.model.trunk_cfg, self.tok.vocab_size)
        attn = sum(k == "attn" for k in self.model.trunk_cfg["trunk_mixers"])
        flops = 2 * (tokens * per_token + keys * per_key)
        base = self.byte_baseline_flops(covered)
        kv_entry = attn * 2 * self.model.trunk_cfg["d_model"] * 4
        return dict(bpb=nats / max(covered, 1) / LN2, bytes=covered, tokens=tokens, windows=n_windows,
                    bytes_per_token=covered / max(tokens, 1), lossless=lossless, flops_per_byte=flops / max(covered, 1),
                    byte_baseline_flops_per_byte=base / max(covered, 1), flops_ratio_vs_byte=flops / max(base, 1),
                    trunk_calls_per_byte=tokens / max(covered, 1), kv_bytes_per_byte=kv_entry * tokens / max(covered, 1),
                    kv_ratio_vs_byte=tokens / max(covered, 1))

    def byte_baseline_flops(self, n: int) -> int:
        """FLOPs of the byte-level model with this trunk over n bytes in windows of the same byte context."""
        from scratchpad.accounting import byte_baseline, flops_for_events

        t = self.model.trunk_cfg
        cfg = ModelConfig(d_model=t["d_model"], trunk_mixers=list(t["trunk_mixers"]), n_heads=t["n_heads"],
                          ssm_expand=t["ssm_expand"], mlp_mult=t["mlp_mult"])
        try:
            cfg = ModelConfig.preset(t.get("preset") or "")
        except UserError:
            pass
        W = int(self.meta.get("seq_len_bytes") or min(1024, cfg.max_seq_len))
        full, rest = divmod(n, W)
        keys = full * W * (W + 1) // 2 + rest * (rest + 1) // 2
        return flops_for_events(byte_baseline(cfg), bytes=n, commits=n, scratchpads=0, keys=keys, aux_steps=0)["total"]


class TokenLoss(nn.Module):
    """The token LM in the trainer's loss-module form: (x, y, tau) -> (loss, [loss])."""

    def __init__(self, model: TokenLM):
        super().__init__()
        self.model = model

    def forward(self, x, y, tau):
        logits = self.model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, loss.detach().view(1)


def token_training_flops(trunk: dict, vocab: int, batch_size: int, seq_len: int) -> float:
    """Training FLOPs of one step of the token LM (forward x 3, causal attention keys), counted like
    scratchpad.accounting.training_flops counts the byte models'."""
    per_token, per_key = token_macs(trunk, vocab)
    keys = batch_size * seq_len * (seq_len + 1) // 2
    return 3.0 * 2 * (batch_size * seq_len * per_token + keys * per_key)


def _train_token_lm(model: TokenLM, ids: np.ndarray, seq_len: int, batch_size: int, lr: float, warmup: int,
                    steps: int | None, time_budget: float | None, seed: int,
                    flops_budget: float | None = None) -> tuple[list[float], list[float]]:
    """Train through the trainer's step loop (train/loop.py: schedule, clipping, AdamW, non-finite
    check, FLOP budget) on windows drawn by the trainer's counter-based sampler -> (ms per step, losses)."""
    from train.args import TrainArgs
    from train.data import sample_offsets
    from train.dist import Dist
    from train.loop import NonFinite, StepLoop
    from train.optim import make_optimizer

    device = torch.device("cpu")
    args = TrainArgs(lr=lr, warmup=warmup, steps=steps, time_budget=time_budget, flops_budget=flops_budget,
                     batch_size=batch_size, seed=seed)
    opt = make_optimizer(model, lr, args.weight_decay, device)
    per_step = token_training_flops(model.trunk_cfg, model.vocab_size, batch_size, seq_len)
    loop = StepLoop(TokenLoss(model), [p for p in model.parameters() if p.requires_grad], opt, args,
                    Dist.single("cpu"), device, step_flops=lambda stats: per_step)

    def batch(step, micro):
        offs = sample_offsets(seed, step, micro, 0, batch_size, len(ids) - seq_len)
        w = torch.from_numpy(np.stack([ids[o : o + seq_len + 1] for o in offs]).astype(np.int64))
        return w[:, :-1], w[:, 1:], None

    step_ms, losses = [], []

    def on_step(st):
        step_ms.append(1000 * st.step_s)
        losses.append(st.loss)

    model.train()
    try:
        loop.run(0, 0.0, batch, on_step)
    except NonFinite as e:
        raise UserError(f"tokenizer baseline: {e.what} is {e.value} at step {e.step}; try a lower learning rate") from None
    return step_ms, losses


def train_baseline(data, preset: str | ModelConfig, vocab_size: int = 4096, sample_bytes: int = 8 << 20,
                   train_bytes: int = 32 << 20, time_budget: float | None = None, steps: int | None = None,
                   seq_len_bytes: int | None = None, batch_size: int = 8, lr: float = 2e-3, warmup: int = 100,
                   seed: int = 0, log=lambda line: None, flops_budget: float | None = None) -> TokenBaseline:
    """Train the tokenizer on a sample of DATA/train.bin and the token LM for the budget (steps, time
    or training FLOPs); `preset` names the config whose trunk it uses, or is that config."""
    if not time_budget and not steps and not flops_budget:
        raise UserError("tokenizer baseline: give a time budget, a FLOP budget or a step count")
    cfg = preset if isinstance(preset, ModelConfig) else ModelConfig.preset(preset)
    train_arr = read_bytes(data_file(data, "train"))
    t0 = time.perf_counter()
    tok = Tokenizer.train(spread_chunks(train_arr, sample_bytes), vocab_size)
    tok_s = time.perf_counter() - t0
    ids = tok.encode(spread_chunks(train_arr, train_bytes))
    bytes_per_token = min(len(train_arr), train_bytes) / max(len(ids), 1)
    seq_bytes = seq_len_bytes or min(1024, cfg.max_seq_len)
    seq_len = max(8, int(round(seq_bytes / bytes_per_token)))
    if len(ids) < seq_len + 2:
        raise UserError(f"tokenizer baseline: the training data encodes to {len(ids)} tokens, fewer than one window of "
                        f"{seq_len + 1}; use more data or a smaller --seq-len")
    log(f"tokenizer: {tok.vocab_size} BPE pieces trained on {min(len(train_arr), sample_bytes):,} bytes in {tok_s:.1f}s; "
        f"{bytes_per_token:.2f} bytes/token; token LM windows of {seq_len} tokens (~{seq_bytes} bytes)")
    torch.manual_seed(seed)
    model = TokenLM(tok.vocab_size, trunk_fields(cfg))
    step_ms, losses = _train_token_lm(model, ids, seq_len, batch_size, lr, warmup, steps, time_budget, seed, flops_budget)
    step, elapsed = len(step_ms), sum(step_ms) / 1000
    model.eval()
    meta = dict(data=str(data), preset=cfg.name, steps=step, train_seconds=elapsed, ms_per_step=float(np.median(step_ms)),
                train_flops=step * token_training_flops(model.trunk_cfg, model.vocab_size, batch_size, seq_len),
                train_bytes=int(step * batch_size * seq_len * bytes_per_token),
                tokenizer_seconds=tok_s, tokenizer_sample_bytes=min(len(train_arr), sample_bytes),
                train_tokens=len(ids), train_bytes_per_token=bytes_per_token, seq_len_bytes=seq_bytes,
                batch_size=batch_size, lr=lr, final_loss_nats_per_token=float(np.mean(losses[-10:])),
                loss_curve=loss_curve(losses))
    return TokenBaseline(tok, model, seq_len, meta)


def loss_curve(losses: list[float], points: int = 200) -> list[list]:
    """[[step, mean training loss (nats/token) of the steps since the previous point]], at most `points` of them."""
    every = max(1, math.ceil(len(losses) / points))
    return [[min(i + every, len(losses)), float(np.mean(losses[i : i + every]))] for i in range(0, len(losses), every)]


def run(data, preset: str, val: np.ndarray, vocab_size: int = 4096, sample_bytes: int = 8 << 20,
        train_bytes: int = 32 << 20, time_budget: float | None = None, steps: int | None = None,
        seq_len_bytes: int | None = None, batch_size: int = 8, log=lambda line: None) -> TokenBaseline:
    """Train the baseline (train_baseline) and score it on val (uint8 [n]): the scores go into
    meta["eval"]."""
    tb = train_baseline(data, preset, vocab_size, sample_bytes, train_bytes, time_budget, steps, seq_len_bytes, batch_size,
                        log=log)
    tb.meta["eval"] = tb.evaluate(val, batch_size)
    return tb
