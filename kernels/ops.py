"""The Triton kernels as torch.library custom operators: what `kernels.diagonal_scan` and
`kernels.scratch_step` call on the Triton path, eagerly and under torch.compile alike (except a
scratch step that needs neither autograd nor a graph, e.g. decode: see `scratch_step` below).

A compiled graph calls each operator as one opaque node -- forward and backward -- with shapes from
its fake registration, so Dynamo never traces into a kernel launch (which it cannot) and the
training forward and backward compile without a graph break:

  scratchpad::triton_scan(a, b, h0?) -> (h, final)                 a, b, h: [B, T, D]; h0, final: [B, D]
  scratchpad::triton_scan_backward(a, h, h0?, dh, dfinal) -> (da, db, dh0)
  scratchpad::triton_scratch_step(a, b, states) -> a * states + b  any shape, all three alike
  scratchpad::triton_scratch_step_backward(g, a, states) -> (da, db, dstates)

They are `custom_op`s, not `triton_op`s: a triton_op would let Inductor see the kernels, but its
body must launch each one through `wrap_triton`, which the launchers in scan_triton.py do not;
Inductor calls a custom_op as one extern kernel.
Inputs are validated (kernels._validate) before these are called; the backward operators are
not differentiable (no double backward on the Triton path).

Imports triton at the top; `kernels/__init__.py` imports this module on first use.
"""
from __future__ import annotations

import torch
from triton.runtime.interpreter import InterpretedFunction

from kernels import scan_triton, step_triton
from kernels._validate import check_scratch

ON_INTERPRETER = isinstance(step_triton._scratch_fwd_kernel, InterpretedFunction)
"""True when triton was imported with TRITON_INTERPRET=1: the kernels then run on CPU tensors."""


@torch.library.custom_op("scratchpad::triton_scan", mutates_args=())
def triton_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t by the Triton kernels. a, b: contiguous [B, T, D]; h0: [B, D] | None.
    Returns (h in b's dtype, final in h0's dtype or b's)."""
    return scan_triton.diagonal_scan_triton(a, b, h0)


@triton_scan.register_fake
def _triton_scan_fake(a, b, h0):
    return torch.empty_like(b), b.new_empty(b.shape[0], b.shape[2], dtype=b.dtype if h0 is None else h0.dtype)


@torch.library.custom_op("scratchpad::triton_scan_backward", mutates_args=())
def triton_scan_backward(a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None, dh: torch.Tensor,
                         dfinal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of triton_scan: (da [B, T, D], db [B, T, D], dh0 [B, D]; zeros when h0 is None)."""
    B, T, D = h.shape
    if h.numel() == 0:  # no kernel ran forward; at T = 0 the final state was h0 itself
        return torch.zeros_like(a), torch.zeros_like(h), dfinal.to(a.dtype if h0 is None else h0.dtype).clone()
    plan = scan_triton.resolve_plan(B, T, D, a.device)  # the plan diagonal_scan_triton ran forward
    with scan_triton.on_device(a):
        da, db, dh0 = scan_triton.scan_backward(a, h, h0, dh, dfinal, plan)
    return da, db, (a.new_zeros(B, D) if dh0 is None else dh0)


@triton_scan_backward.register_fake
def _triton_scan_backward_fake(a, h, h0, dh, dfinal):
    return torch.empty_like(a), torch.empty_like(h), a.new_empty(a.shape[0], a.shape[2], dtype=a.dtype if h0 is None else h0.dtype)


def _scan_setup(ctx, inputs, output):
    a, _, h0 = inputs
    ctx.has_h0 = h0 is not None
    ctx.save_for_backward(a, output[0], h0)


def _scan_backward(ctx, dh, dfinal):
    a, h, h0 = ctx.saved_tensors
    da, db, dh0 = triton_scan_backward(a, h, h0, dh, dfinal)
    return da, db, (dh0 if ctx.has_h0 else None)


triton_scan.register_autograd(_scan_backward, setup_context=_scan_setup)


@torch.library.custom_op("scratchpad::triton_scratch_step", mutates_args=())
def triton_scratch_step(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """a * states + b by the Triton kernel; a, b, states contiguous, one shape. Returns b's dtype."""
    return step_triton.scratch_forward(a, b, states)


@triton_scratch_step.register_fake
def _triton_scratch_step_fake(a, b, states):
    return torch.empty_like(b)


@torch.library.custom_op("scratchpad::triton_scratch_step_backward", mutates_args=())
def triton_scratch_step_backward(g: torch.Tensor, a: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of triton_scratch_step for the output gradient g: (g * states, g, g * a)."""
    return step_triton.scratch_backward(g.contiguous(), a, states)


@triton_scratch_step_backward.register_fake
def _triton_scratch_step_backward_fake(g, a, states):
    return torch.empty_like(a), torch.empty_like(a), torch.empty_like(states)


def _scratch_setup(ctx, inputs, output):
    a, _, states = inputs
    ctx.save_for_backward(a, states)


def _scratch_backward(ctx, g):
    a, states = ctx.saved_tensors
    return triton_scratch_step_backward(g, a, states)


triton_scratch_step.register_autograd(_scratch_backward, setup_context=_scratch_setup)


def scratch_step(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """a * states + b (validated, contiguous inputs): the operator where a compiled graph or autograd
    needs it, else the bare kernel launch -- a decode step per byte and layer, where the operator's
    dispatch costs about twice an autograd.Function's Python overhead (measured on CPU)."""
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or states.requires_grad)
    if torch.compiler.is_compiling() or needs_grad:
        return triton_scratch_step(a, b, states)
    return step_triton.scratch_forward(a, b, states)


def scratch_step_triton(a, b, states):
    """The Triton scratch step on its own (benches, tests): a, b, states of one shape -> a * states
    + b in b's dtype; validated (no fp64, a device Triton runs on); writes nothing; differentiable."""
    a, b, states = check_scratch(a, b, states)
    if a.dtype == torch.float64:
        raise ValueError("scratch_step (Triton) computes in fp32; use the torch path (SCRATCHPAD_KERNELS=torch) for fp64")
    scan_triton.check_device(a)
    return triton_scratch_step(a, b, states)
