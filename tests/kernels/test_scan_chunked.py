"""The chunked torch scan against the naive loop (kernels/naive.py), forward and backward; resets,
double backward, edge cases."""
import pytest
import torch
from kernel_testutil import rel_err

from kernels.naive import diagonal_scan_naive
from kernels.scan_chunked import default_chunk, diagonal_scan_chunked, diagonal_scan_hillis_steele


def inputs(B, T, D, dtype=torch.float64, resets=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, D, generator=g, dtype=torch.float64) * 0.5 + 0.5
    b = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    if resets and T > 2:
        a[:, T // 3, : D // 2 + 1] = 0.0  # exact resets in some channels
        a[0, -1] = 0.0
    h0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), h0.to(dtype)


@pytest.mark.parametrize("T", [1, 2, 15, 16, 17, 63, 64, 100, 500])
@pytest.mark.parametrize("chunk", [None, 1, 4, 7])
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_naive_fp64(T, chunk, with_h0):
    a, b, h0 = inputs(2, T, 5)
    h0 = h0 if with_h0 else None
    h, final = diagonal_scan_chunked(a, b, h0, chunk_size=chunk)
    h_ref, final_ref = diagonal_scan_naive(a, b, h0)
    assert h.dtype == torch.float64 and final.dtype == torch.float64
    assert rel_err(h, h_ref) < 1e-13 and rel_err(final, final_ref) < 1e-13
    assert torch.equal(final, h[:, -1])


def test_hillis_steele_agrees():
    a, b, h0 = inputs(2, 77, 3)
    for s in (None, h0):
        assert rel_err(diagonal_scan_hillis_steele(a, b, s)[0], diagonal_scan_naive(a, b, s)[0]) < 1e-13


@pytest.mark.parametrize("chunk", [None, 5])
def test_reset_is_exact(chunk):
    """After a_t = 0 the outputs are bitwise independent of everything before t."""
    a, b, h0 = inputs(2, 90, 4, resets=False)
    r = 41
    a[:, r] = 0.0
    h1, f1 = diagonal_scan_chunked(a, b, h0, chunk_size=chunk)
    a2, b2 = a.clone(), b.clone()
    a2[:, :r] = torch.rand_like(a2[:, :r])
    b2[:, :r] = 1e6 * torch.randn_like(b2[:, :r])
    h2, f2 = diagonal_scan_chunked(a2, b2, -h0, chunk_size=chunk)
    assert torch.equal(h1[:, r:], h2[:, r:]) and torch.equal(f1, f2)
    assert torch.equal(h1[:, r], b[:, r])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_low_precision_accumulates_in_fp32(dtype, tol):
    a, b, h0 = inputs(2, 300, 6, dtype)
    h, final = diagonal_scan_chunked(a, b, h0.float())
    h_ref, final_ref = diagonal_scan_naive(a, b, h0.float())
    assert h.dtype == dtype and final.dtype == torch.float32  # final keeps initial_state's dtype
    assert rel_err(h, h_ref) < tol and rel_err(final, final_ref) < 1e-5
    _, final2 = diagonal_scan_chunked(a, b)
    assert final2.dtype == dtype


@pytest.mark.parametrize("chunk", [None, 3])
def test_gradcheck_fp64(chunk):
    a, b, h0 = inputs(2, 11, 3)
    args = [x.clone().requires_grad_() for x in (a, b, h0)]
    fn = lambda a, b, h0: diagonal_scan_chunked(a, b, h0, chunk_size=chunk)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_grad_matches_naive():
    a, b, h0 = inputs(2, 70, 5)
    dh = torch.randn(2, 70, 5, dtype=torch.float64)
    df = torch.randn(2, 5, dtype=torch.float64)

    def grads(fn, **kw):
        xs = [x.clone().requires_grad_() for x in (a, b, h0)]
        h, f = fn(*xs, **kw)
        return torch.autograd.grad((h * dh).sum() + (f * df).sum(), xs)

    for got, want in zip(grads(diagonal_scan_chunked, chunk_size=8), grads(diagonal_scan_naive)):
        assert rel_err(got, want) < 1e-12
    # only h used / only the final state used
    xs = [x.clone().requires_grad_() for x in (a, b)]
    g1 = torch.autograd.grad(diagonal_scan_chunked(*xs)[1].sum(), xs)
    g2 = torch.autograd.grad(diagonal_scan_naive(*xs)[1].sum(), xs)
    assert all(rel_err(x, y) < 1e-12 for x, y in zip(g1, g2))


def test_empty_sequence():
    a = torch.zeros(3, 0, 4)
    h, f = diagonal_scan_chunked(a, a)
    assert h.shape == (3, 0, 4) and torch.equal(f, torch.zeros(3, 4))
    h0 = torch.randn(3, 4)
    h, f = diagonal_scan_chunked(a, a, h0)
    assert torch.equal(f, h0) and f is not h0


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 5, 0), (2, 0, 3)])
def test_empty_dims_differentiable(shape):
    a = torch.rand(shape, requires_grad=True)
    h0 = torch.rand(shape[0], shape[2], requires_grad=True)
    h, f = diagonal_scan_chunked(a, a, h0)
    (h.sum() + f.sum()).backward()
    assert h.shape == shape and a.grad.shape == shape and torch.equal(h0.grad, torch.ones_like(h0))


def test_non_contiguous_inputs():
    a, b, h0 = inputs(2, 40, 6)
    at = a.transpose(0, 1).contiguous().transpose(0, 1)
    bt = b[:, :, :].clone().transpose(1, 2).contiguous().transpose(1, 2)
    assert not at.is_contiguous() and not bt.is_contiguous()
    assert torch.equal(diagonal_scan_chunked(at, bt, h0)[0], diagonal_scan_chunked(a, b, h0)[0])


def test_default_chunk():
    assert default_chunk(1) == 4 and default_chunk(40) == 4 and default_chunk(128) == 8
    assert default_chunk(1024) == 32 and default_chunk(16384) == 128 and default_chunk(10**7) == 256
