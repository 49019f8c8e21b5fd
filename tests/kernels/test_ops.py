"""The Triton custom operators (kernels/ops.py) that kernels.diagonal_scan and kernels.scratch_step
call on the Triton path: torch.library.opcheck (schema, fake/meta kernel, autograd registration,
AOT dispatch), and forward and backward against the naive loop (kernels/naive.py), through the public dispatch."""
import pytest
import torch
from kernel_testutil import DEVICE, needs_triton, rel_err
from test_scan_triton import make, run

from kernels import diagonal_scan, scratch_step
from kernels.naive import diagonal_scan_naive

pytestmark = needs_triton


@pytest.fixture
def triton_path(monkeypatch, poison):
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "triton")
    from kernels import ops

    return ops


@pytest.mark.parametrize("with_h0", [False, True])
def test_scan_operators_pass_opcheck(triton_path, with_h0):
    a, b, h0, dh, dfinal = make(2, 9, 5, torch.float32, with_h0)
    inputs = [x.requires_grad_() if x is not None else None for x in (a, b, h0)]
    torch.library.opcheck(triton_path.triton_scan, tuple(inputs))
    h, _ = triton_path.triton_scan(a.detach(), b.detach(), None if h0 is None else h0.detach())
    torch.library.opcheck(triton_path.triton_scan_backward, (a.detach(), h, None if h0 is None else h0.detach(), dh, dfinal))


def test_scratch_operators_pass_opcheck(triton_path):
    g = torch.Generator().manual_seed(0)
    a, b, s = (torch.randn(3, 4, 7, generator=g, device=DEVICE).requires_grad_() for _ in range(3))
    torch.library.opcheck(triton_path.triton_scratch_step, (a, b, s))
    torch.library.opcheck(triton_path.triton_scratch_step_backward, (torch.randn_like(a), a.detach(), s.detach()))


@pytest.mark.parametrize(("T", "with_h0", "h0_dtype"), [(1, True, None), (13, False, None), (13, True, torch.float32)])
def test_scan_through_the_operator_matches_naive(triton_path, T, with_h0, h0_dtype):
    dtype = torch.bfloat16 if h0_dtype else torch.float32  # bf16 activations with an fp32 state
    a, b, h0, dh, dfinal = make(2, T, 6, dtype, with_h0, h0_dtype)
    got = run(diagonal_scan, a, b, h0, dh, dfinal)
    want = run(diagonal_scan_naive, a.double(), b.double(), None if h0 is None else h0.double(), dh.double(), dfinal.double())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert [x.dtype for x in got[:2]] == [dtype, h0.dtype if with_h0 else dtype]
    assert got[-1].dtype == (h0.dtype if with_h0 else dtype)
    for name, x, y in zip(["h", "final", "da", "db", "dh0"], got, want):
        assert rel_err(x, y) < tol, name


def test_scan_operator_on_an_empty_sequence_hands_the_gradient_to_the_initial_state(triton_path):
    a = torch.rand(2, 0, 3, device=DEVICE, requires_grad=True)
    h0 = torch.randn(2, 3, device=DEVICE, requires_grad=True)
    h, final = diagonal_scan(a, a.detach().clone(), h0)
    assert h.shape == (2, 0, 3) and torch.equal(final, h0)
    w = torch.randn(2, 3, device=DEVICE)
    (dh0,) = torch.autograd.grad((final * w).sum(), h0)
    assert torch.equal(dh0, w)


def test_scratch_step_through_the_operator_matches_torch(triton_path):
    g = torch.Generator().manual_seed(1)
    a, b, s = (torch.randn(2, 5, 8, generator=g, device=DEVICE, requires_grad=True) for _ in range(3))
    out = scratch_step(a, b, s)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), (a, b, s))
    assert rel_err(out, a * s + b) < 1e-6
    for x, y in zip(grads, (w * s, w, w * a)):
        assert rel_err(x, y) < 1e-6


def test_scratch_step_without_autograd_launches_the_kernel_directly(triton_path, monkeypatch):
    """A decode step (no grad) skips the operator's dispatch and still writes every element."""
    def refuse(*args):
        raise AssertionError("the operator ran for a step that needs no autograd")

    monkeypatch.setattr(triton_path, "triton_scratch_step", refuse)
    g = torch.Generator().manual_seed(2)
    a, b, s = (torch.randn(3, 40, generator=g, device=DEVICE) for _ in range(3))
    with torch.no_grad():
        out = scratch_step(a, b, s.requires_grad_())
    assert rel_err(out, a * s.detach() + b) < 1e-6
