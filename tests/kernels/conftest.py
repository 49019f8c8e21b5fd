"""Kernel tests. Without CUDA the Triton kernels run under the Triton interpreter, which must be
switched on before triton compiles anything -- before `kernels.scan_triton` is imported, since its
kernels are decorated at import (`kernels` itself imports triton lazily). Set it here, first.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


@pytest.fixture
def poison(monkeypatch):
    """Every buffer the Triton kernels write starts as NaN, so an unwritten element fails the test."""
    import kernels.scan_triton as st
    import kernels.step_triton as stp

    def nan_empty(shape, *, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(st, "_empty", nan_empty)
    monkeypatch.setattr(stp, "_empty", nan_empty)
