"""Kernel tests. Without CUDA the Triton kernels run under the Triton interpreter, which must be
switched on before triton compiles anything -- before `kernels.scan_triton` is imported, since its
kernels are decorated at import (`kernels` itself imports triton lazily). Set it here, first.

Helpers live in kernel_testutil.py, not here: see _restore_root_conftest.
"""
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


def _restore_root_conftest(config) -> None:
    """tests/ has no __init__.py, so pytest imports every conftest.py as the module `conftest`, and
    loading this one replaced tests/conftest.py in sys.modules -- which the top-level test modules
    import names from (`from conftest import TINY_PRESETS`). Put that one back (idempotent)."""
    root = config.pluginmanager.get_plugin(str(Path(__file__).resolve().parent.parent / "conftest.py"))
    if root is not None and sys.modules.get("conftest") is not root:
        sys.modules["conftest"] = root


def pytest_collectstart(collector):
    # called for this directory and each of its modules, i.e. right after this file was loaded
    _restore_root_conftest(collector.config)


@pytest.fixture
def poison(monkeypatch):
    """Every buffer the Triton kernels write starts as NaN, so an unwritten element fails the test."""
    import kernels.scan_triton as st
    import kernels.step_triton as stp

    def nan_empty(shape, *, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(st, "_empty", nan_empty)
    monkeypatch.setattr(stp, "_empty", nan_empty)
