"""Input checks shared by every scan/step implementation (torch and Triton alike).

Rules, the same on every path:
  * a and b have the same shape, dtype and device, and a floating dtype (fp16, bf16, fp32, fp64);
  * a state tensor (initial_state, state_pool, states) is on the same device and has either the
    dtype of a/b or float32 (keeping recurrent state in fp32 next to bf16 activations is normal);
  * non-contiguous a/b/initial_state/states are made contiguous (a copy); state_pool is written in
    place, so it is used as it is (any strides);
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


def check_step(a, b, state_pool, slot_index):
    """a, b [N, D]; state_pool [S, D] (any strides, written in place); slot_index [N] integer."""
    a, b = _check_pair(a, b, 2, "diagonal_step")
    state_pool = _check_state("state_pool", state_pool, a, (_tensor("state_pool", state_pool).shape[0], a.shape[1]), "diagonal_step")
    if isinstance(slot_index, (list, tuple)):
        slot_index = torch.as_tensor(slot_index, dtype=torch.long, device=a.device)
    slot_index = _tensor("slot_index", slot_index)
    if slot_index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"diagonal_step: slot_index must be int32 or int64, got {slot_index.dtype}")
    if tuple(slot_index.shape) != (a.shape[0],):
        raise ValueError(f"diagonal_step: slot_index must have shape ({a.shape[0]},) (one slot per row of a), got {tuple(slot_index.shape)}")
    if slot_index.device != a.device:
        raise ValueError(f"diagonal_step: slot_index must be on {a.device} like a and b, got {slot_index.device}")
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or state_pool.requires_grad):
        raise ValueError(
            "diagonal_step updates state_pool in place and is not differentiable; call it under "
            "torch.no_grad()/torch.inference_mode(), or use scratch_step for a differentiable step"
        )
    return a, b, state_pool, slot_index.contiguous()


def check_scratch(a, b, states):
    """a, b, states: the same shape (any rank). Returns contiguous (a, b, states)."""
    a, b = _check_pair(a, b, None, "scratch_step")
    states = _check_state("states", states, a, tuple(a.shape), "scratch_step").contiguous()
    return a, b, states
