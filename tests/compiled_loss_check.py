"""torch.compile on each kernel path named (SCRATCHPAD_KERNELS values): prints one JSON line with,
per path, Dynamo's graph breaks in a training forward of a tiny preset, the scratchpad operators in
its graph, and how far a compiled loss and its gradients (forward and backward, fullgraph) are from
eager's. tests/test_compile.py runs it in a fresh process, because the Triton interpreter
(TRITON_INTERPRET=1) must be on before triton is first imported.

    TRITON_INTERPRET=1 python -m tests.compiled_loss_check --kernels triton torch --compiled layer

--compiled layer compiles one SSM layer's scan and scratch step (seconds); --compiled model the
whole training loss of the preset (AOT-traced backward: minutes on a loaded CPU). On a GPU:
--kernels auto --device cuda --backend inductor.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import torch

from scratchpad import ModelConfig, build_model
from scratchpad.mixers.ssm import DiagonalSSM
from scratchpad.precision import configure_compile


def rel_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def model_loss(preset: str, device: str):
    """(loss_fn, its inputs, params): the preset's training loss on two rows of 12 bytes (short: the
    interpreter runs a kernel row by row), one row with scratchpads (tau 0.5), one without (inf)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(preset)).train().to(device)
    x = torch.randint(0, 256, (2, 13), generator=torch.Generator().manual_seed(1)).to(device)

    def loss_fn(x, y, tau):
        return model(x, targets=y, threshold=tau).loss

    return loss_fn, (x[:, :-1], x[:, 1:], torch.tensor([0.5, math.inf], device=device)), list(model.parameters())


def layer_loss(device: str):
    """(loss_fn, its inputs, params): one SSM layer's scan over x [2, 12, 16] and scratch steps
    from parents into its trace (-1: the zero state)."""
    torch.manual_seed(0)
    layer = DiagonalSSM(16).to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 12, 16, generator=g).to(device).requires_grad_()
    q = torch.randn(2, 5, 16, generator=g).to(device)
    parent = torch.tensor([[-1, 0, 3, 3, 11], [2, 5, -1, 7, 10]], device=device)

    def loss_fn(x, q, parent):
        y, trace = layer(x)
        return y.square().mean() + layer.scratch(q, trace, parent).square().mean()

    return loss_fn, (x, q, parent), [x, *layer.parameters()]


def compiled_vs_eager(loss_fn, inputs, params, backend: str) -> dict:
    def loss_and_grads(fn):
        torch.manual_seed(2)  # the random subset of scratchpads a training forward keeps
        loss = fn(*inputs)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    eager_loss, eager_grads = loss_and_grads(loss_fn)
    torch._dynamo.reset()
    comp_loss, comp_grads = loss_and_grads(torch.compile(loss_fn, backend=backend, fullgraph=True))
    pairs = [(c, e) for c, e in zip(comp_grads, eager_grads) if e is not None]
    return {
        "loss_rel_diff": rel_diff(comp_loss, eager_loss),
        "grad_rel_diff": max(rel_diff(c, e) for c, e in pairs if c is not None),
        "grads_compared": len(pairs),
        "grads_missing": sum(c is None for c, _ in pairs),
    }


def check(kernels: str, preset: str, compiled: str, backend: str, device: str) -> dict:
    os.environ["SCRATCHPAD_KERNELS"] = kernels
    torch._dynamo.reset()
    configure_compile()
    loss_fn, inputs, _ = model_loss(preset, device)
    ex = torch._dynamo.explain(loss_fn)(*inputs)
    ops = sorted({str(n.target) for gm in ex.graphs for n in gm.graph.nodes if "scratchpad" in str(n.target)})
    case = model_loss(preset, device) if compiled == "model" else layer_loss(device)
    return {
        "graph_breaks": ex.graph_break_count,
        "break_reasons": [b.reason.splitlines()[0] for b in ex.break_reasons],
        "graphs": ex.graph_count,
        "ops": ops,
        **compiled_vs_eager(*case, backend),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", nargs="+", default=["triton", "torch"])
    ap.add_argument("--preset", default="tiny-sp-fixed-p4")
    ap.add_argument("--compiled", choices=["layer", "model"], default="layer")
    ap.add_argument("--backend", default="aot_eager")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps({k: check(k, args.preset, args.compiled, args.backend, args.device) for k in args.kernels}))


if __name__ == "__main__":
    main()
