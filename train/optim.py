"""AdamW with decay on matrices only, and the learning-rate schedule (warmup, then cosine)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups: decay on matrices only; none on norms, biases, embeddings or other vectors."""
    embed_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embed_params else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel (one pass over each tensor)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device):
    """AdamW, fused on CPU and CUDA: on one CPU core the fused step of a 3M-parameter model takes
    ~2.6 ms against ~12.6 ms for the foreach one (about 5% of a training step)."""
    extra = dict(fused=True) if device.type in FUSED_DEVICES else dict(foreach=True)
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95), eps=1e-8, **extra)


def lr_at(args, step: int, elapsed: float, flops: float = 0.0) -> float:
    """Linear warmup over args.warmup steps, then cosine to lr * min_lr_ratio over the run
    (by step count with args.steps, by training time with args.time_budget, by training FLOPs spent
    with args.flops_budget; the furthest one wins)."""
    if args.warmup > 0 and step <= args.warmup:
        return args.lr * step / args.warmup
    progress = 0.0
    if args.steps:
        progress = max(progress, (step - args.warmup) / max(1, args.steps - args.warmup))
    if args.time_budget:
        progress = max(progress, elapsed / args.time_budget)
    if getattr(args, "flops_budget", None):
        progress = max(progress, flops / args.flops_budget)
    progress = min(max(progress, 0.0), 1.0)
    lo = args.lr * args.min_lr_ratio
    return lo + 0.5 * (args.lr - lo) * (1.0 + math.cos(math.pi * progress))


def schedule_warning(args) -> str | None:
    """A one-line note when the warmup cannot finish within --steps (the run never reaches --lr)."""
    if args.steps and args.warmup > args.steps:
        return (f"warning: --warmup {args.warmup} exceeds --steps {args.steps}: the learning rate only reaches "
                f"{args.lr * args.steps / args.warmup:.3g} of --lr {args.lr:g} and never decays")
    return None
