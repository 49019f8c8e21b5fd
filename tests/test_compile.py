"""torch.compile: a fixed-patcher training forward traces without graph breaks on either kernel
path (torch, and Triton under the interpreter), the operators the compiled graph calls agree with
the eager code forward and backward, and compiled training takes eager's steps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.scan_chunked import _ChunkedScan, chunked_scan
from scratchpad import ModelConfig, build_model
from scratchpad.precision import compile_module


def test_chunked_scan_operator_matches_the_eager_scan_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 37, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 37, 5, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for reverse in (False, True):
        h1, f1 = _ChunkedScan.apply(a, b, h0, reverse, 4)
        h2, f2 = chunked_scan(a, b, h0, reverse, 4)
        assert torch.equal(h1, h2) and torch.equal(f1, f2)
        w = torch.randn_like(h1)
        g1 = torch.autograd.grad((h1 * w).sum() + f1.sum(), (a, b, h0))
        g2 = torch.autograd.grad((h2 * w).sum() + f2.sum(), (a, b, h0))
        for x, y in zip(g1, g2):
            assert torch.allclose(x, y, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b, h0: chunked_scan(a, b, h0, False, 4), (a[:1, :9], b[:1, :9], h0[:1]))


ROOT = Path(__file__).resolve().parents[1]


def compiled_loss_check(compiled: str, *args: str, cuda: bool = False) -> dict:
    """tests/compiled_loss_check.py in a fresh process, on CPU with the Triton interpreter on (it
    must be on before triton is first imported), or on CUDA; its JSON per kernel path."""
    pytest.importorskip("triton")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not cuda:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-m", "tests.compiled_loss_check", "--compiled", compiled, *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_compiles_like_eager(result: dict, loss_tol: float = 1e-6, grad_tol: float = 1e-5):
    triton_ops = {"scratchpad.triton_scan.default", "scratchpad.triton_scratch_step.default"}
    ops = {"triton": triton_ops, "auto": triton_ops, "torch": {"scratchpad.chunked_scan.default"}}  # auto: on CUDA
    for kernels, r in result.items():
        assert r["graph_breaks"] == 0 and r["graphs"] == 1, (kernels, r["break_reasons"])
        assert set(r["ops"]) == ops[kernels], (kernels, r["ops"])  # the path asked for is the path traced
        assert r["grads_compared"] >= 4 and r["grads_missing"] == 0, (kernels, r)
        assert r["loss_rel_diff"] < loss_tol and r["grad_rel_diff"] < grad_tol, (kernels, r)


def test_both_kernel_paths_compile_forward_and_backward_without_graph_breaks():
    """SCRATCHPAD_KERNELS=triton (interpreter) and =torch: explain of the tiny-sp-fixed-p4 training
    loss has no graph break and calls the path's operators; one SSM layer's scan and scratch step
    compiled fullgraph, forward and backward, give eager's loss and gradients."""
    assert_compiles_like_eager(compiled_loss_check("layer", "--kernels", "triton", "torch"))


@pytest.mark.slow
def test_both_kernel_paths_compile_the_whole_training_loss_like_eager():
    assert_compiles_like_eager(compiled_loss_check("model", "--kernels", "triton", "torch"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_loss_compiles_with_inductor_without_graph_breaks():
    """On CUDA (SCRATCHPAD_KERNELS=auto picks Triton; torch for comparison): the whole training loss
    compiled by Inductor, forward and backward, no graph break, eager's loss and gradients (to
    Inductor's reordered fp32 sums)."""
    result = compiled_loss_check("model", "--kernels", "auto", "torch", "--device", "cuda", "--backend", "inductor",
                                 cuda=True)
    assert_compiles_like_eager(result, loss_tol=1e-4, grad_tol=1e-3)


@pytest.mark.slow
def test_compiled_training_steps_match_eager():
    from train.optim import make_optimizer
    from train.loss import LossModule

    def run(compiled):
        torch.manual_seed(0)
        model = build_model(ModelConfig.preset("tiny-sp-fixed-p4")).train()
        opt = make_optimizer(model, 3e-3, 0.1, torch.device("cpu"))
        f = compile_module(LossModule(model)) if compiled else LossModule(model)
        losses = []
        for i in range(6):
            g = torch.Generator().manual_seed(i)
            x = torch.randint(0, 256, (4, 65), generator=g)
            tau = model.sample_thresholds(4, g)
            torch.manual_seed(100 + i)
            loss, _ = f(x[:, :-1], x[:, 1:], tau)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        return losses

    eager, comp = run(False), run(True)
    assert max(abs(a - b) / abs(a) for a, b in zip(eager, comp)) < 1e-4, (eager, comp)


@pytest.mark.slow
def test_bench_train_compile_row_carries_both_figures(capsys):
    import json

    from eval.bench.train_cli import main as bench_main

    assert bench_main(["--presets", "tiny-sp-fixed-p4", "--no-plain", "--compile", "--seq-len", "64", "--warmup", "1",
                       "--steps", "3", "--threads", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"][0]
    assert row["compiled_bytes_per_s"] > 0 and row["bytes_per_s"] > 0 and row["compile_first_step_s"] > 0
    assert row["compile_speedup"] == pytest.approx(row["compiled_bytes_per_s"] / row["bytes_per_s"], rel=1e-2)
    assert row["loss_steps_compared"] == 4 and row["loss_max_rel_diff"] < 1e-4
