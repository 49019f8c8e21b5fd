"""The shared optimizer-step loop: stopping rules, statistics, the non-finite guard, and the
tokenizer baseline training through it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from train.args import TrainArgs
from train.dist import Dist
from train.loop import NonFinite, StepLoop
from train.optim import make_optimizer


class Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x, y, tau):
        loss = ((self.w * x - y) ** 2).mean()
        return loss, torch.stack([loss.detach(), x.sum()])


def _loop(model, **kw):
    args = TrainArgs(lr=0.1, warmup=0, **kw)
    opt = make_optimizer(model, args.lr, 0.0, torch.device("cpu"))
    return StepLoop(model, list(model.parameters()), opt, args, Dist.single("cpu"), torch.device("cpu"))


def test_loop_runs_to_steps_and_averages_micro_batch_statistics():
    model = Quadratic()
    seen, stats = [], []

    def batch(step, micro):
        seen.append((step, micro))
        return torch.full((4,), float(micro + 1)), torch.zeros(4), None

    step, reason = _loop(model, steps=3, grad_accum=2).run(0, 0.0, batch, stats.append)
    assert (step, reason) == (3, "steps")
    assert seen == [(s, m) for s in (1, 2, 3) for m in (0, 1)]
    assert [s.step for s in stats] == [1, 2, 3]
    assert stats[0].stats[1] == pytest.approx((4 + 8) / 2)  # mean of the micro-batches' x.sum()
    assert stats[-1].loss < stats[0].loss and all(s.step_s > 0 for s in stats)


def test_loop_stops_on_time_budget():
    model = Quadratic()
    step, reason = _loop(model, time_budget=1e-9).run(0, 0.0, lambda s, m: (torch.ones(4), torch.zeros(4), None),
                                                      lambda st: None)
    assert (step, reason) == (1, "time_budget")


def test_nonfinite_loss_raises_before_the_update():
    model = Quadratic()
    before = model.w.detach().clone()
    with pytest.raises(NonFinite) as e:
        _loop(model, steps=2).run(0, 0.0, lambda s, m: (torch.full((4,), float("nan")), torch.zeros(4), None),
                                  lambda st: None)
    assert e.value.step == 1 and e.value.what == "loss"
    assert torch.equal(model.w.detach(), before)


def test_tokenizer_baseline_trains_through_the_step_loop(monkeypatch):
    from eval.experiments import tokenizer_baseline as tb

    calls = []
    real = StepLoop.step

    def spy(self, step, *a, **k):
        calls.append(step)
        return real(self, step, *a, **k)

    monkeypatch.setattr(StepLoop, "step", spy)
    torch.manual_seed(0)
    model = tb.TokenLM(300, dict(trunk_mixers=["attn"], d_model=16, n_heads=2, ssm_expand=1, mlp_mult=2, preset="x"))
    ids = np.random.default_rng(0).integers(0, 300, 2000).astype(np.int32)
    ms, losses = tb._train_token_lm(model, ids, 16, 4, 1e-2, 2, 5, None, 0)
    assert calls == [1, 2, 3, 4, 5] and len(ms) == len(losses) == 5
    with pytest.raises(tb.UserError, match="tokenizer baseline: loss is nan at step 1"):
        with torch.no_grad():
            model.head.weight.fill_(float("nan"))
        tb._train_token_lm(model, ids, 16, 4, 1e-2, 0, 2, None, 0)
