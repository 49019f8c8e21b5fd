"""Kernels with one dispatch point: Triton on CUDA, the torch path elsewhere.

`SCRATCHPAD_KERNELS=auto|triton|torch` (read at every call) picks the implementation:
  auto   (default) Triton when the tensors are on CUDA and triton imports, torch otherwise;
  triton always Triton -- on CPU tensors that works only under the Triton interpreter
         (TRITON_INTERPRET=1 set before triton is first imported); otherwise, and without
         triton, a KernelUnavailable (a RuntimeError) says so in one line;
  torch  always the pure-torch path.
fp64 inputs always take the torch path: the Triton kernels accumulate in fp32, and fp64 is what the
causality audits use for exact comparisons.

triton is imported lazily, on the first call that needs it: importing `kernels` never needs triton.
The Triton path runs through the custom operators of `kernels.ops` (eagerly and under
torch.compile), so a compiled forward and backward has no graph break on either path.

Public API:
  diagonal_scan(a, b, initial_state=None) -> (h, final_state)     h_t = a_t * h_{t-1} + b_t
  scratch_step(a, b, states) -> a * states + b                    transient, writes nothing

Each op in three forms of the identical signature, laid out as in fla:
  naive.py                          the plain recurrence in fp64: the reference every other form is tested against
  scan_chunked.py, step_torch.py    the torch path (chunked scan; elementwise step)
  scan_triton.py (+ scan_carry.py, scan_plan.py), step_triton.py   the Triton path, through ops.py
"""
from __future__ import annotations

import os
import warnings

import torch

from kernels._validate import check_scan, check_scratch
from kernels.naive import diagonal_scan_naive, scratch_step_naive
from kernels.scan_chunked import diagonal_scan_chunked
from kernels.step_torch import scratch_step_torch

MODES = ("auto", "triton", "torch")
_warned_no_triton = False


class KernelUnavailable(RuntimeError):
    """SCRATCHPAD_KERNELS=triton where the Triton kernels cannot run (no triton; CPU tensors
    without the interpreter). A setup mistake, not a bug: the CLIs print its one-line message."""


def kernel_mode() -> str:
    """The SCRATCHPAD_KERNELS setting, validated (default 'auto')."""
    mode = os.environ.get("SCRATCHPAD_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"SCRATCHPAD_KERNELS must be one of {'|'.join(MODES)}, got {mode!r}")
    return mode


def backend_for(x: torch.Tensor) -> str:
    """'triton' or 'torch': what a call with this (first) input tensor dispatches to."""
    mode = kernel_mode()
    if mode == "torch" or (isinstance(x, torch.Tensor) and x.dtype == torch.float64):
        return "torch"
    if mode == "triton":
        return "triton"
    if not (isinstance(x, torch.Tensor) and x.is_cuda):
        return "torch"
    try:
        import triton  # noqa: F401
    except ImportError:
        global _warned_no_triton
        if not _warned_no_triton:
            warnings.warn("triton is not importable: the CUDA scan kernels fall back to the torch path", stacklevel=3)
            _warned_no_triton = True
        return "torch"
    return "triton"


def check_backend(device: torch.device) -> None:
    """Raise KernelUnavailable now, before any model runs, when SCRATCHPAD_KERNELS=triton cannot run
    on `device` (the CLIs call it with their --device: a decode scheduler would only record the
    error per request)."""
    if kernel_mode() == "triton":
        _triton_ops(torch.device(device))


def _triton_ops(device: torch.device):
    """kernels.ops (the Triton custom operators), imported on first use -- a plain import, which
    Dynamo traces -- after checking that `device` can run them."""
    try:
        from kernels import ops
    except ImportError as e:
        raise KernelUnavailable(f"SCRATCHPAD_KERNELS=triton, but triton cannot be imported ({e}); "
                                "install triton or set SCRATCHPAD_KERNELS=auto") from None
    if device.type != "cuda" and not (device.type == "cpu" and ops.ON_INTERPRETER):
        raise KernelUnavailable(f"SCRATCHPAD_KERNELS=triton needs a CUDA device (got {device}); on CPU the Triton kernels "
                                "run only under the interpreter (TRITON_INTERPRET=1 set before triton is imported); "
                                "or set SCRATCHPAD_KERNELS=auto")
    return ops


def diagonal_scan(a, b, initial_state=None):
    """h_t = a_t * h_{t-1} + b_t. a, b: [B, T, D]; initial_state: [B, D] | None.
    Returns (h [B, T, D] in b's dtype, final_state [B, D] in initial_state's dtype, or b's)."""
    if backend_for(a) == "triton":
        a, b, initial_state = check_scan(a, b, initial_state)
        return _triton_ops(a.device).triton_scan(a, b, initial_state)
    return diagonal_scan_chunked(a, b, initial_state)


def scratch_step(a, b, states):
    """Transient step a * states + b (any shape, all three alike); writes nothing; differentiable."""
    if backend_for(a) == "triton":
        a, b, states = check_scratch(a, b, states)
        return _triton_ops(a.device).scratch_step(a, b, states)
    return scratch_step_torch(a, b, states)


__all__ = [
    "MODES",
    "KernelUnavailable",
    "backend_for",
    "check_backend",
    "diagonal_scan",
    "diagonal_scan_chunked",
    "diagonal_scan_naive",
    "kernel_mode",
    "scratch_step",
    "scratch_step_naive",
    "scratch_step_torch",
]
