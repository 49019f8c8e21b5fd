"""The training loss module (what DDP and torch.compile wrap), the DDP unused-parameter probe, and
validation BPB."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from scratchpad.precision import autocast

STATS = ("byte_loss", "aux_loss", "scratchpads", "commits")  # what LossModule returns beside the loss


class LossModule(nn.Module):
    """What DDP (and torch.compile) wrap: (x, y, tau) -> (loss with grad, detached STATS)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, tau):
        out = self.model(x, targets=y, threshold=tau)
        stats = torch.stack([out.byte_loss.float(), out.aux_loss.float(), out.scratch.sum().float(),
                             out.ends.sum().float()])
        return out.loss, stats.detach()


def unused_parameters(model, device, seq_len: int) -> list[str]:
    """Parameters that get no gradient from a training forward (structurally unused in this
    config); DDP needs find_unused_parameters=True when there are any."""
    L = min(seq_len, 64)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, L + 1), generator=g).to(device)
    tau = model.sample_thresholds(2, g).to(device)
    out = model(x[:, :-1], targets=x[:, 1:], threshold=tau)
    out.loss.backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return names


@torch.no_grad()
def validation_bpb(model, eval_model, corpus, offsets, dist, batch_size: int, dtype: str, tau: float) -> dict:
    """{"val_bpb": at tau = inf, and for scratchpad models "val_bpb_tau{tau}", "val_scratch_rate_tau{tau}"}
    over the validation windows at `offsets` (this rank's), summed over ranks. eval_model may be the
    compiled model; `model` is switched to eval mode and back."""
    dev = dist.device
    was_training = model.training
    model.eval()
    res = {}
    for t in [None] + ([tau] if model.cfg.scratchpad else []):
        acc = torch.zeros(3, dtype=torch.float64, device=dev)  # nats, bytes, scratchpads
        for x, y in corpus.val_batches(offsets, batch_size):
            x, y = x.to(dev), y.to(dev)
            with autocast(dev, dtype):
                out = eval_model(x, targets=y, threshold=t)
            n = y.numel()
            acc += torch.stack([out.byte_loss.double() * n, torch.tensor(float(n), device=dev, dtype=torch.float64),
                                out.scratch.sum().double()])
        acc = dist.all_sum(acc)
        bpb = float(acc[0] / acc[1] / math.log(2)) if acc[1] > 0 else float("nan")
        if t is None:
            res["val_bpb"] = bpb
        else:
            res[f"val_bpb_tau{t:g}"] = bpb
            res[f"val_scratch_rate_tau{t:g}"] = float(acc[2] / acc[1]) if acc[1] > 0 else 0.0
    model.train(was_training)
    return res
