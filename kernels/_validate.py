"""Input checks shared by every scan/step implementation (torch and Triton alike).

Rules, the same on every path:
  * a and b have the same shape, dtype and device, and a floating dtype (fp16, bf16, fp32, fp64);
  * a state tensor (initial_state, states) is on the same device and has either the
    dtype of a/b or float32 (keeping recurrent state in fp32 next to bf16 activations is normal);
  * non-contiguous a/b/initial_state/states are made contiguous (a copy);
  * violations raise ValueError with a message naming the argument.
"""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype: fp64 stays fp64, everything else accumulates in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004 -- the contract: bad inputs raise ValueError
    return x


def _check_pair(a, b, ndim: int | None, what: str):
    a = _tensor("a", a)
    b = _tensor("b", b)
    if ndim is not None and a.dim() != ndim:
        raise ValueError(f"{what}: a must be {ndim}-D, got shape {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{what}: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"{what}: a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{what}: a and b must be fp16/bf16/fp32/fp64, got {a.dtype}")
    if a.device != b.device:
        raise ValueError(f"{what}: a and b must be on the same device, got {a.device} and {b.device}")
    return a.contiguous(), b.contiguous()


def _check_state(name: str, s, a: torch.Tensor, shape: tuple, what: str):
    s = _tensor(name, s)
    if tuple(s.shape) != tuple(shape):
        raise ValueError(f"{what}: {name} must have shape {tuple(shape)}, got {tuple(s.shape)}")
    if s.dtype not in (a.dtype, torch.float32):
        raise ValueError(f"{what}: {name} must have dtype {a.dtype} (like a, b) or torch.float32, got {s.dtype}")
    if s.device != a.device:
        raise ValueError(f"{what}: {name} must be on {a.device} like a and b, got {s.device}")
    return s


def check_scan(a, b, initial_state):
    """a, b [B, T, D]; initial_state [B, D] | None. Returns contiguous (a, b, initial_state)."""
    a, b = _check_pair(a, b, 3, "diagonal_scan")
    if initial_state is not None:
        initial_state = _check_state("initial_state", initial_state, a, (a.shape[0], a.shape[2]), "diagonal_scan").contiguous()
    return a, b, initial_state


def check_scratch(a, b, states):
    """a, b, states: the same shape (any rank). Returns contiguous (a, b, states)."""
    a, b = _check_pair(a, b, None, "scratch_step")
    states = _check_state("states", states, a, tuple(a.shape), "scratch_step").contiguous()
    return a, b, states
