"""On a GPU (marker gpu, skipped without CUDA): the decode step replayed as CUDA graphs equals the
parallel forward for the packaged default model and a tiny all-SSM model at tau 0, 1.5, inf and the
stride trigger, and a training step traces for torch.compile without graph breaks with the CUDA
kernels. On CPU the same comparison runs the step as graphs replay it, uncaptured."""
from __future__ import annotations

import math

import pytest
import torch

from eval.bench.graph_decode import MODELS, REL_TOL, compare, text
from scratchpad import ModelConfig, build_model
from scratchpad.precision import autocast, configure_compile
from train.loss import LossModule

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def check_rows(rows: list[dict], decode_step: str):
    assert [r["tau"] for r in rows if r["every"] == 0] == [0.0, 1.5, "inf"]
    for r in rows:
        assert "error" not in r, r["error"]  # a failed capture
        assert r["rel_diff"] <= REL_TOL and r["commits_equal"] and r["scratchpads_equal"], r
        assert r["trunk_passes"] == r["trunk_passes_eager"], r  # the trunk ran where eager decode runs it
        assert r["decode_step"] == decode_step and r["passed"], r
    assert any(r["every"] > 0 and r["scratchpads"] > 0 for r in rows), "the stride trigger never fired"
    plain = next(r for r in rows if r["tau"] == "inf" and r["every"] == 0)
    assert plain["trunk_passes"] < plain["bytes"] / 2  # commits alone: most bytes skip the trunk


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_graph_decode_equals_parallel_forward(name):
    torch.backends.cuda.matmul.allow_tf32 = False
    model = MODELS[name]().cuda()
    check_rows(compare(model, text(2, 96), "cuda", prefill=[0, 29]), "cuda-graphs")


def test_static_step_on_cpu_equals_parallel_forward():
    """The comparison the GPU test makes, on the step CUDA graphs would capture (run uncaptured)."""
    check_rows(compare(MODELS["tiny-ssm"](), text(2, 20), "cpu", prefill=[0, 7]), "static")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("preset", ["tiny-sp-fixed-p4", "heavy-p16-aux2"])
def test_training_step_traces_without_graph_breaks_on_cuda(preset):
    """torch._dynamo.explain of the training loss (bf16 autocast, as `scratchpad train` runs on a
    GPU): the CUDA scan and scratch kernels are traced as operators, not graph breaks."""
    configure_compile()
    torch._dynamo.reset()
    model = build_model(ModelConfig.preset(preset)).cuda().train()
    x = torch.randint(0, 256, (2, 129), device="cuda")
    tau = torch.tensor([0.5, math.inf], device="cuda")
    with autocast(torch.device("cuda"), "bf16"):
        ex = torch._dynamo.explain(LossModule(model))(x[:, :-1], x[:, 1:], tau)
    assert ex.graph_break_count == 0, [b.reason.splitlines()[0] for b in ex.break_reasons]
    assert ex.graph_count == 1
