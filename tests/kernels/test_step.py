"""The transient scratch step a * states + b: the torch path and the Triton kernel against the naive
reference (kernels/naive.py), forward and backward."""
import pytest
import torch
from kernel_testutil import CUDA, DEVICE, HAVE_TRITON, gpu, needs_triton, rel_err

from kernels.naive import scratch_step_naive
from kernels.step_torch import scratch_step_torch


def scratch_resolve(fn):
    if fn == "triton":
        from kernels.ops import scratch_step_triton

        return scratch_step_triton
    return fn


@pytest.mark.parametrize("fn,device", [pytest.param(scratch_step_torch, "cpu", id="torch")]
                         + ([pytest.param("triton", DEVICE, id="triton", marks=needs_triton)] if HAVE_TRITON else []))
@pytest.mark.parametrize("dtype,state_dtype", [(torch.float32, torch.float32), (torch.float16, torch.float32), (torch.float16, torch.float16)])
@pytest.mark.parametrize("shape", [(6, 37), (2, 3, 5)])
def test_scratch_step_writes_nothing_and_grads(fn, device, dtype, state_dtype, shape, poison):
    fn = scratch_resolve(fn)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(shape, generator=g).to(dtype).to(device).requires_grad_()
    b = torch.randn(shape, generator=g).to(dtype).to(device).requires_grad_()
    s = torch.randn(shape, generator=g).to(state_dtype).to(device).requires_grad_()
    copies = [x.detach().clone() for x in (a, b, s)]
    out = fn(a, b, s)
    want = scratch_step_naive(a, b, s)
    assert out.dtype == dtype and out.shape == torch.Size(shape)
    tol = 1e-6 if dtype == torch.float32 else 2e-3
    assert rel_err(out, want) < tol
    assert all(torch.equal(x.detach(), c) for x, c in zip((a, b, s), copies))  # nothing written
    go = torch.randn(shape, generator=g).to(device)
    grads = torch.autograd.grad((out.float() * go).sum(), (a, b, s))
    want_grads = torch.autograd.grad((want.float() * go).sum(), (a, b, s))
    assert [x.dtype for x in grads] == [dtype, dtype, state_dtype]
    for name, x, y in zip(("da", "db", "dstates"), grads, want_grads):
        assert rel_err(x, y) < tol, name
    assert all(torch.equal(x.detach(), c) for x, c in zip((a, b, s), copies))


@needs_triton
def test_scratch_step_triton_matches_naive_non_contiguous(poison):
    from kernels.ops import scratch_step_triton

    base = torch.randn(3, 9, 4, device=DEVICE)
    a = torch.rand(3, 4, 9, device=DEVICE).transpose(1, 2)
    b = base * 0.5
    s = base.flip(0)
    assert not a.is_contiguous()
    assert rel_err(scratch_step_triton(a, b, s), scratch_step_naive(a, b, s)) < 1e-6


def test_scratch_step_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        scratch_step_torch(x, torch.zeros(3, 2), x)
    with pytest.raises(ValueError, match="states must have shape"):
        scratch_step_torch(x, x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same dtype"):
        scratch_step_torch(x, x.half(), x)
    with pytest.raises(ValueError, match="states must have dtype"):
        scratch_step_torch(x.half(), x.half(), x.double())


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_scratch_step_real_sizes(dtype, poison):
    from kernels.ops import scratch_step_triton

    s = torch.randn(4, 16, 2048, device="cuda", dtype=dtype)
    a3, b3 = torch.rand_like(s), torch.randn_like(s)
    assert rel_err(scratch_step_triton(a3, b3, s), scratch_step_naive(a3, b3, s)) < 1e-2
    assert CUDA
