"""The optimizer-step loop, shared by `scratchpad train` and the tokenizer baseline.

A step: set the scheduled LR; for each micro-batch draw (x, y, tau) from `batch(step, micro)`, run
the loss module under autocast (DDP syncs gradients on the last micro-batch only) and backward the
loss / grad_accum; clip; sum the statistics over micro-batches and ranks (one all-reduce, so every
rank takes the same decisions); refuse a non-finite loss or gradient norm before the update
(`NonFinite`); AdamW step. The step time waits for the device (`synchronize`), so it is the step's
time on a GPU too, not its launch time.

The loss module takes (x, y, tau) and returns (loss with grad, a 1-D tensor of detached statistics);
`StepStats.stats` holds their means over the step's micro-batches (all ranks).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from scratchpad.precision import autocast
from train.hardware import synchronize
from train.optim import lr_at

FLOPS_TOLERANCE = 1 - 1e-9  # a budget of n equal steps is reached at step n despite float summation


@dataclass
class StepStats:
    step: int
    lr: float
    loss: float            # the optimised loss, mean over micro-batches and ranks
    stats: list[float]     # the loss module's statistics, means over micro-batches and ranks
    grad_norm: float
    step_s: float          # this step's seconds on this rank (device synchronised)
    elapsed: float         # training seconds so far, the mean over ranks
    stop_requested: bool   # some rank got SIGINT/SIGTERM
    flops: float = 0.0     # training FLOPs of this step (all ranks), by the loop's step_flops


class NonFinite(Exception):
    def __init__(self, step: int, what: str, value: float, lr: float):
        super().__init__(f"step {step}: {what} is {value}")
        self.step, self.what, self.value, self.lr = step, what, value, lr


class StepLoop:
    def __init__(self, step_model, params, opt, args, dist, device: torch.device, *, no_sync=None,
                 stop_flag: Callable[[], bool] = lambda: False,
                 step_flops: Callable[[list[float]], float] | None = None, flops_spent: float = 0.0):
        """step_model: the loss module (maybe DDP-wrapped, maybe compiled); no_sync: the DDP
        module's no_sync (None without DDP); args: lr, warmup, steps, time_budget, flops_budget,
        min_lr_ratio, grad_accum, clip, dtype. step_flops(stats) -> one step's training FLOPs over all
        ranks from the step's mean statistics; `flops_spent` (FLOPs before the first step here, e.g.
        from a resumed checkpoint) grows by it every step and drives args.flops_budget."""
        if getattr(args, "flops_budget", None) and step_flops is None:
            raise ValueError("a FLOP budget needs step_flops")
        self.step_model, self.params, self.opt, self.args = step_model, params, opt, args
        self.dist, self.device, self.no_sync, self.stop_flag = dist, device, no_sync, stop_flag
        self.step_flops, self.flops_spent = step_flops, flops_spent

    def step(self, step: int, elapsed: float, local_elapsed: float, batch) -> StepStats:
        a, dev = self.args, self.device
        lr = lr_at(a, step, elapsed, self.flops_spent)
        for g in self.opt.param_groups:
            g["lr"] = lr
        synchronize(dev)
        t0 = time.perf_counter()
        acc = None
        for micro in range(a.grad_accum):
            x, y, tau = batch(step, micro)
            sync = self.no_sync() if self.no_sync is not None and micro < a.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                with autocast(dev, a.dtype):
                    loss, stats = self.step_model(x, y, tau)
                (loss * (1.0 / a.grad_accum)).backward()
            part = torch.cat([loss.detach().double().view(1), stats.double().view(-1)])
            acc = part if acc is None else acc + part
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, a.clip if a.clip > 0 else math.inf)
        local_bad = float(not torch.isfinite(acc[:2]).all())
        so_far = local_elapsed + (time.perf_counter() - t0)
        summary = torch.cat([acc, torch.tensor([local_bad, float(self.stop_flag()), so_far], device=dev,
                                               dtype=torch.float64)])
        summary = self.dist.all_sum(summary).cpu()
        n_micro = a.grad_accum * self.dist.world
        loss_v, gnorm_v = float(summary[0]) / n_micro, float(gnorm)
        if summary[-3] > 0 or not math.isfinite(gnorm_v):
            what = "loss" if summary[-3] > 0 else "gradient norm"
            raise NonFinite(step, what, loss_v if summary[-3] > 0 else gnorm_v, lr)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        synchronize(dev)
        stats = [float(v) / n_micro for v in summary[1:-3]]
        flops = self.step_flops(stats) if self.step_flops is not None else 0.0
        self.flops_spent += flops
        return StepStats(step=step, lr=lr, loss=loss_v, stats=stats, grad_norm=gnorm_v, step_s=time.perf_counter() - t0,
                         elapsed=float(summary[-1]) / self.dist.world,  # identical on every rank
                         stop_requested=bool(summary[-2] > 0), flops=flops)

    def run(self, step: int, elapsed: float, batch, on_step: Callable[[StepStats], None]) -> tuple[int, str]:
        """Steps from `step` until args.steps, args.time_budget or args.flops_budget is reached or a
        rank was signalled -> (last step, reason: "steps" | "time_budget" | "flops_budget" | "signal").
        A FLOP budget stops at the first step that reaches it, so a run overshoots it by less than
        one step. on_step runs after every update (logging, evaluation, checkpoints)."""
        a = self.args
        local = elapsed  # this rank's training-step seconds; ranks agree on their mean
        while True:
            if a.steps and step >= a.steps:
                return step, "steps"
            if a.time_budget and elapsed >= a.time_budget:
                return step, "time_budget"
            if getattr(a, "flops_budget", None) and self.flops_spent >= a.flops_budget * FLOPS_TOLERANCE:
                return step, "flops_budget"
            step += 1
            st = self.step(step, elapsed, local, batch)
            local += st.step_s
            elapsed = st.elapsed
            on_step(st)
            if st.stop_requested:
                return step, "signal"
