"""Triton diagonal scan vs the naive loop (kernels/naive.py), forward and backward (the interpreter on CPU).

Interpreter time is ~linear in the number of sequential row groups, so the long case (T=500) is
run on few configurations; T=1 and T=63 cover the combinations. The chunk carries (the tree of
kernels/scan_carry.py) are checked on their own against the naive scan over the chunk maps, and
end to end with tiles so small that the tree has several levels.
"""
import pytest
import torch
from kernel_testutil import CUDA, DEVICE, gpu, needs_triton, rel_err

import triton

from kernels.naive import diagonal_scan_naive

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


def check(B, T, D, dtype, with_h0, chunk=None, h0_dtype=None, block_d=None):
    from kernels.scan_triton import diagonal_scan_triton

    a, b, h0, dh, dfinal = make(B, T, D, dtype, with_h0, h0_dtype)
    got = run(diagonal_scan_triton, a, b, h0, dh, dfinal, chunk_size=chunk, block_d=block_d)
    want = run(diagonal_scan_naive, a, b, h0, dh, dfinal)
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


# ---- the chunk carries --------------------------------------------------------------------------


def carry_naive(p, e, init, reverse):
    """The states entering every chunk [B, N, D] in fp64, by the naive scan over the chunk maps:
    S_0 = init, S_{c+1} = P_c S_c + E_c (counted from the right when reverse)."""
    if reverse:
        p, e = p.flip(1), e.flip(1)
    start = init.double() if init is not None else p.new_zeros(p.shape[0], p.shape[2], dtype=torch.float64)
    leaving, _ = diagonal_scan_naive(p.double(), e.double(), start)
    s = torch.cat([start[:, None], leaving[:, :-1]], 1)
    return s.flip(1) if reverse else s


def chunk_maps(B, N, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(B, N, D, generator=g) * 0.5 + 0.5  # long memory: every carry matters
    return p.to(DEVICE), torch.randn(B, N, D, generator=g).to(DEVICE), torch.randn(B, D, generator=g).to(DEVICE)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("tile,with_init", [(4, True), (4, False), (None, True)])
def test_chunk_start_states_tree(reverse, tile, with_init):
    """37 chunks in tiles of 4: three levels (37 -> 10 -> 3 -> 1); tile None: one level."""
    import kernels.scan_triton as st
    from kernels.scan_carry import chunk_start_states

    p, e, init = chunk_maps(2, 37, 5)
    init = init if with_init else None
    s = chunk_start_states(p, e, init, reverse, empty=st._empty, tile=tile)
    assert s.dtype == torch.float32 and rel_err(s, carry_naive(p.cpu(), e.cpu(), None if init is None else init.cpu(), reverse)) < 1e-5


@triton.jit
def _compose_swapped(p1, e1, p2, e2):
    return p1 * p2, p1 * e2 + e1  # the maps composed in the wrong order


@pytest.mark.skipif(CUDA, reason="patches the interpreted kernel's combine function")
def test_a_wrong_composition_is_caught(monkeypatch):
    """The checks above fail when the tree composes the maps in the wrong order."""
    import kernels.scan_carry as sc

    p, e, init = chunk_maps(1, 9, 3)
    want = carry_naive(p, e, init, False)
    assert rel_err(sc.chunk_start_states(p, e, init, False, empty=torch.empty, tile=4), want) < 1e-5
    monkeypatch.setattr(sc, "_compose", _compose_swapped)
    assert rel_err(sc.chunk_start_states(p, e, init, False, empty=torch.empty, tile=4), want) > 1e-2


@pytest.mark.parametrize("B,T,chunk,tile,with_h0", [(1, 61, 4, 2, True), (2, 50, 3, 4, False)])
def test_many_chunks_several_tree_levels(poison, monkeypatch, B, T, chunk, tile, with_h0):
    """Ragged T (not a multiple of the chunk), D = 37 over blocks of 16, many chunks, tiny carry
    tiles: 16 chunks in tiles of 2 (four levels), 17 in tiles of 4 (three). Forward and backward."""
    import kernels.scan_carry as sc

    monkeypatch.setattr(sc, "CARRY_TILE", tile)
    check(B, T, 37, torch.float32, with_h0, chunk=chunk, block_d=16)


def test_exact_against_naive_and_only_final_used(poison):
    from kernels.scan_triton import diagonal_scan_triton

    a, b, h0, _, _ = make(2, 40, 6, torch.float32, True)
    h, final = diagonal_scan_triton(a, b, h0, chunk_size=11)
    h_ref, final_ref = diagonal_scan_naive(a, b, h0)
    assert rel_err(h, h_ref) < 1e-6 and rel_err(final, final_ref) < 1e-6
    # gradient through the final state alone (dh is None in backward)
    xs = [x.clone().requires_grad_() for x in (a, b)]
    g = torch.autograd.grad(diagonal_scan_triton(*xs, chunk_size=11)[1].sum(), xs)
    g_ref = torch.autograd.grad(diagonal_scan_naive(*xs)[1].sum(), xs)
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
    x = torch.zeros(1, 4, 3, device=DEVICE)
    for kw, msg in (({"chunk_size": 0}, "chunk_size"), ({"num_warps": -1}, "num_warps"), ({"block_d": 24}, "power of two")):
        with pytest.raises(ValueError, match=msg):
            diagonal_scan_triton(x, x, **kw)


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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B,T,D", [(8, 4096, 1024), (8, 4093, 1000), (1, 16384, 2048)])
@pytest.mark.parametrize("chunk", [None, "one", 16])
def test_gpu_real_sizes(B, T, D, dtype, chunk, poison):
    """The table's plan, a single chunk, and chunks of 16 rows (256+ chunks: a two-level carry
    tree); 8x4093x1000 is ragged in T and D. fp32 is what the model launches."""
    check(B, T, D, dtype, True, chunk=T if chunk == "one" else chunk)
