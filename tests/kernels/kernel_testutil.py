"""Shared helpers of the kernel tests (a uniquely named module: tests/*/conftest.py all import as `conftest`)."""
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"  # where the Triton tests run: CUDA, or CPU under the interpreter

try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except ImportError:  # pragma: no cover
    HAVE_TRITON = False

needs_triton = pytest.mark.skipif(
    not HAVE_TRITON or (not CUDA and os.environ.get("TRITON_INTERPRET") != "1"),
    reason="needs triton, and CUDA or TRITON_INTERPRET=1",
)


def gpu(fn):
    """Mark a test GPU-only: `-m gpu` selects it, and it is skipped without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs CUDA")(fn))


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|, in fp64; NaN anywhere in got gives inf."""
    if got.shape != want.shape:
        raise AssertionError(f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    if not got.numel():
        return 0.0
    got = got.detach().double()
    want = want.detach().double()
    if torch.isnan(got).any():
        return float("inf")
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
