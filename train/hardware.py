"""The device side of a training step: precision (autocast), torch.compile's availability, timing
that waits for the device, peak memory, and model FLOPs utilisation (MFU).

MFU = model FLOPs per second / the device's peak dense FLOPs at the training dtype. Model FLOPs are
the accounting's (scratchpad.accounting) forward FLOPs of the events the step ran, times 3 for the
backward pass; attention over keys is included, recomputation and optimizer are not. The peak is
known for the GPUs in PEAK_TFLOPS (dense, no sparsity); elsewhere MFU is left out, never guessed.
"""
from __future__ import annotations

import contextlib
import time

import torch

from scratchpad.errors import UserError

# dense peak TFLOP/s by (device-name substring, dtype): NVIDIA data sheets, SXM parts
PEAK_TFLOPS = {
    ("H200", "bf16"): 989.0, ("H200", "fp32"): 67.0,
    ("H100", "bf16"): 989.0, ("H100", "fp32"): 67.0,
    ("A100", "bf16"): 312.0, ("A100", "fp32"): 19.5,
}


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
    if dtype not in ("fp32", "bf16"):
        raise UserError(f"--dtype must be fp32 or bf16, got {dtype!r}")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name(device)} does not support bf16")
    if dtype == "bf16" and device.type == "cpu":
        fp32_s, bf16_s = _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
        if bf16_s > fp32_s:
            return (f"note: --dtype bf16 on this CPU is {bf16_s / fp32_s:.1f}x slower than fp32 for matmuls "
                    f"(measured); continuing in bf16 autocast, --dtype fp32 is faster here")
    return None


def _matmul_seconds(dtype: torch.dtype, n: int = 256, reps: int = 8) -> float:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0)).to(dtype)
    a @ a  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ a
    return time.perf_counter() - t0


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


def synchronize(device: torch.device):
    """Wait for queued device work, so a host timer measures the step and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak allocated device memory since the last reset (CUDA); None on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """The device's dense peak FLOP/s at dtype, or None when it is not in PEAK_TFLOPS."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for (part, dt), tflops in PEAK_TFLOPS.items():
        if part in name and dt == dtype:
            return tflops * 1e12
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
