"""The device side of a training step: timing that waits for the device, peak memory, and model
FLOPs utilisation (MFU). Precision and torch.compile live in scratchpad.precision.

MFU = model FLOPs per second / the device's peak dense FLOPs at the training dtype. Model FLOPs are
the accounting's (scratchpad.accounting) forward FLOPs of the events the step ran, times 3 for the
backward pass; attention over keys is included, recomputation and optimizer are not. The peak is
known for the GPUs in PEAK_TFLOPS (dense, no sparsity); elsewhere MFU is left out, never guessed.
"""
from __future__ import annotations

import os

import torch

# dense peak TFLOP/s by (device-name substring, dtype): NVIDIA data sheets, SXM parts
PEAK_TFLOPS = {
    ("H200", "bf16"): 989.0, ("H200", "fp32"): 67.0,
    ("H100", "bf16"): 989.0, ("H100", "fp32"): 67.0,
    ("A100", "bf16"): 312.0, ("A100", "fp32"): 19.5,
}


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


def machine_load() -> dict:
    """The cores this process may run on and the machine's 1/5/15-minute load averages, for the
    training log: a wall-clock comparison is only as fair as the load it ran under."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return dict(cores=cores, cpu_count=os.cpu_count(), loadavg=load)
