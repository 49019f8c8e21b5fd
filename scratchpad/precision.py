"""Precision and compilation choices shared by training, evaluation and generation: the --dtype
flag (bf16 autocast or bf16 weights, refused where the device cannot, noted where a CPU runs it
slower) and torch.compile (whether it can run here, and the settings every compiled forward uses).
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

from scratchpad.errors import UserError

DTYPES = ("fp32", "bf16")


def torch_dtype(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def autocast(device: torch.device, dtype: str = "fp32"):
    """bf16 autocast for --dtype bf16 (weights, gradients and optimizer state stay fp32)."""
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_dtype(dtype: str, device: torch.device) -> str | None:
    """Refuse what cannot run (one UserError line); return a one-line note when bf16 runs but is
    measured slower than fp32 on this CPU (a 0.2 s matmul probe), None otherwise."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be fp32 or bf16, got {dtype!r}")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name(device)} does not support bf16")
    if dtype == "bf16" and device.type == "cpu":
        fp32_s, bf16_s = _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
        if bf16_s > fp32_s:
            return (f"note: --dtype bf16 on this CPU is {bf16_s / fp32_s:.1f}x slower than fp32 for matmuls "
                    f"(measured); continuing in bf16, --dtype fp32 is faster here")
    return None


def _matmul_seconds(dtype: torch.dtype, n: int = 256, reps: int = 4, trials: int = 7) -> float:
    """The fastest of `trials` timings of `reps` n x n matmuls (a few ms in all): one timing is at
    the mercy of a context switch, and once told a trainer bf16 was 4x slower on a CPU where it is
    2x faster."""
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0)).to(dtype)
    a @ a  # warm-up (oneDNN builds its kernel on the first call)
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ a
        best = min(best, time.perf_counter() - t0)
    return best


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot run here (None when it can): inductor needs a C++ compiler on
    CPU and triton on CUDA."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not importable (torch.compile's CUDA backend needs it)"
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 -- InvalidCxxCompiler and whatever the search raises
        return f"no working C++ compiler for torch.compile's CPU backend ({type(e).__name__}; install g++ or set CXX)"
    return None


def configure_compile():
    """capture_scalar_outputs lets the scratchpad count become an unbacked size inside the graph
    (no graph break at `compact`); fallback_random makes compiled graphs draw the same random
    numbers as eager (the random subset of scratchpads a training forward keeps), so compiled and
    eager runs take the same steps."""
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.config.capture_scalar_outputs = True
    torch._inductor.config.fallback_random = True


def compile_module(module: torch.nn.Module):
    """torch.compile for training and evaluation forwards (configure_compile's settings)."""
    configure_compile()
    return torch.compile(module)
