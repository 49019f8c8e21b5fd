"""Triton diagonal scan vs the torch reference, forward and backward (the interpreter on CPU).

Interpreter time is ~linear in the number of sequential row groups, so the long case (T=500) is
run on few configurations; T=1 and T=63 cover the combinations.
"""
import pytest
import torch
from kernel_testutil import CUDA, DEVICE, gpu, needs_triton, rel_err

from kernels.scan_ref import diagonal_scan_loop, diagonal_scan_ref

pytestmark = needs_triton

TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}


def make(B, T, D, dtype, with_h0, h0_dtype=None, seed=0, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, D, generator=g) * 0.6 + 0.4
    if T > 3:
        a[:, T // 2, : (D + 1) // 2] = 0.0  # resets
    b = torch.randn(B, T, D, generator=g)
    h0 = torch.randn(B, D, generator=g).to(h0_dtype or dtype) if with_h0 else None
    dh = torch.randn(B, T, D, generator=g)
    dfinal = torch.randn(B, D, generator=g)
    to = lambda x: None if x is None else x.to(device)
    return to(a.to(dtype)), to(b.to(dtype)), to(h0), to(dh), to(dfinal)


def run(fn, a, b, h0, dh, dfinal, **kw):
    """Forward and backward of fn; returns [h, final, da, db, (dh0)]."""
    xs = [x.detach().clone().requires_grad_() for x in (a, b)] + ([h0.detach().clone().requires_grad_()] if h0 is not None else [])
    h, final = fn(xs[0], xs[1], xs[2] if h0 is not None else None, **kw)
    loss = (h.float() * dh).sum() + (final.float() * dfinal).sum()
    return [h, final, *torch.autograd.grad(loss, xs)]


def check(B, T, D, dtype, with_h0, chunk=None, h0_dtype=None):
    from kernels.scan_triton import diagonal_scan_triton

    a, b, h0, dh, dfinal = make(B, T, D, dtype, with_h0, h0_dtype)
    got = run(diagonal_scan_triton, a, b, h0, dh, dfinal, chunk_size=chunk)
    want = run(diagonal_scan_ref, a, b, h0, dh, dfinal)
    names = ["h", "final", "da", "db", "dh0"]
    for name, x, y in zip(names, got, want):
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape, name
        err = rel_err(x, y)
        assert err < TOL[dtype], f"{name}: rel err {err:.2e} (T={T}, D={D}, {dtype}, h0={with_h0}, chunk={chunk})"


@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize(
    "T,D,chunk,dtype",
    [
        (1, 5, None, torch.float32), (1, 5, None, torch.float16),
        (63, 37, None, torch.float32), (63, 37, None, torch.float16),
        (63, 37, 16, torch.float32), (63, 37, 16, torch.float16),
        (63, 5, 7, torch.float32),  # many small chunks, the last one ragged
    ],
)
def test_short(poison, T, D, chunk, dtype, with_h0):
    check(2, T, D, dtype, with_h0, chunk)


@pytest.mark.parametrize("dtype,with_h0,chunk,D", [(torch.float32, False, None, 5), (torch.float16, True, 128, 37)])
def test_long(poison, dtype, with_h0, chunk, D):
    check(1, 500, D, dtype, with_h0, chunk)


def test_fp32_state_with_fp16_inputs(poison):
    check(2, 20, 5, torch.float16, True, chunk=8, h0_dtype=torch.float32)


def test_block_d_smaller_than_d(poison):
    """Several channel blocks per row (D=37 over blocks of 16), chunked."""
    from kernels.scan_triton import diagonal_scan_triton

    a, b, h0, dh, dfinal = make(1, 22, 37, torch.float32, True)
    got = run(diagonal_scan_triton, a, b, h0, dh, dfinal, chunk_size=9, block_d=16)
    want = run(diagonal_scan_ref, a, b, h0, dh, dfinal)
    assert all(rel_err(x, y) < 1e-5 for x, y in zip(got, want))


def test_exact_against_loop_and_only_final_used(poison):
    from kernels.scan_triton import diagonal_scan_triton

    a, b, h0, _, _ = make(2, 40, 6, torch.float32, True)
    h, final = diagonal_scan_triton(a, b, h0, chunk_size=11)
    h_ref, final_ref = diagonal_scan_loop(a, b, h0)
    assert rel_err(h, h_ref) < 1e-6 and rel_err(final, final_ref) < 1e-6
    # gradient through the final state alone (dh is None in backward)
    xs = [x.clone().requires_grad_() for x in (a, b)]
    g = torch.autograd.grad(diagonal_scan_triton(*xs, chunk_size=11)[1].sum(), xs)
    g_ref = torch.autograd.grad(diagonal_scan_ref(*xs)[1].sum(), xs)
    assert all(rel_err(x, y) < 1e-6 for x, y in zip(g, g_ref))


def test_empty_and_errors():
    from kernels.scan_triton import diagonal_scan_triton

    a = torch.zeros(2, 0, 3, device=DEVICE)
    h, f = diagonal_scan_triton(a, a)
    assert h.shape == (2, 0, 3) and f.shape == (2, 3) and not f.any()
    for shape in [(0, 5, 3), (2, 5, 0)]:
        x = torch.rand(shape, device=DEVICE, requires_grad=True)
        h0 = torch.rand(shape[0], shape[2], device=DEVICE, requires_grad=True)
        h, f = diagonal_scan_triton(x, x, h0)
        (h.sum() + f.sum()).backward()
        assert h.shape == shape and x.grad.shape == shape and h0.grad.shape == h0.shape
    with pytest.raises(ValueError, match="fp64"):
        diagonal_scan_triton(a.double(), a.double())
    with pytest.raises(ValueError, match="same shape"):
        diagonal_scan_triton(torch.zeros(2, 3, 4, device=DEVICE), torch.zeros(2, 3, 5, device=DEVICE))


@pytest.mark.skipif(CUDA, reason="CPU-only check")
def test_cpu_tensors_need_the_interpreter(monkeypatch):
    import kernels.scan_triton as st

    class NotInterpreted:  # a stand-in for a compiled (non-interpreted) kernel
        pass

    monkeypatch.setattr(st, "_scan_fwd_kernel", NotInterpreted())
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        st.diagonal_scan_triton(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))


# ---- real sizes on a GPU ------------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,T,D", [(8, 4096, 512), (1, 16384, 2048), (3, 1000, 1000)])
@pytest.mark.parametrize("chunk", [None, "one"])
def test_gpu_real_sizes(B, T, D, dtype, chunk, poison):
    """Default launch plan (chunked where the grid is small) and a single chunk, bf16 included."""
    check(B, T, D, dtype, True, chunk=T if chunk == "one" else None)
