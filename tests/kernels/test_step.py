"""Decode commit step through a slot index, and the transient scratch step: torch and Triton."""
import pytest
import torch
from kernel_testutil import CUDA, DEVICE, HAVE_TRITON, gpu, needs_triton, rel_err

from kernels.step_ref import diagonal_step_ref, scratch_step_ref


def step_impls():
    impls = [pytest.param(diagonal_step_ref, "cpu", id="torch")]
    if HAVE_TRITON:
        impls.append(pytest.param("triton", DEVICE, id="triton", marks=needs_triton))
    return impls


def resolve(fn):
    if fn == "triton":
        from kernels.step_triton import diagonal_step_triton

        return diagonal_step_triton
    return fn


def scratch_resolve(fn):
    if fn == "triton":
        from kernels.step_triton import scratch_step_triton

        return scratch_step_triton
    return fn


@pytest.mark.parametrize("fn,device", step_impls())
@pytest.mark.parametrize("dtype,pool_dtype", [(torch.float32, torch.float32), (torch.float16, torch.float32), (torch.float16, torch.float16)])
def test_diagonal_step_updates_only_indexed_slots(fn, device, dtype, pool_dtype, poison):
    fn = resolve(fn)
    g = torch.Generator().manual_seed(1)
    S, N, D = 11, 6, 37
    pool = torch.randn(S, D, generator=g).to(pool_dtype).to(device)
    slot = torch.randperm(S, generator=g)[:N].to(device)  # shuffled, distinct
    slot[2] = -1  # a padding row
    a = torch.rand(N, D, generator=g).to(dtype).to(device)
    a[0] = 0.0  # a reset row
    b = torch.randn(N, D, generator=g).to(dtype).to(device)
    before = pool.clone()
    with torch.no_grad():
        new = fn(a, b, pool, slot)
    assert new.dtype == dtype and new.shape == (N, D) and pool.dtype == pool_dtype
    # expected, row by row
    for i in range(N):
        s = int(slot[i])
        prev = before[s].double() if s >= 0 else torch.zeros(D, dtype=torch.float64, device=device)
        want = a[i].double() * prev + b[i].double()
        tol = 1e-6 if dtype == torch.float32 else 2e-3
        assert rel_err(new[i], want) < tol, i
        if s >= 0:
            assert rel_err(pool[s], want) < (1e-6 if pool_dtype == torch.float32 and dtype == torch.float32 else 2e-3)
    assert torch.equal(new[0], b[0])  # reset row: exactly b
    untouched = torch.ones(S, dtype=torch.bool, device=device)
    untouched[slot[slot >= 0]] = False
    assert torch.equal(pool[untouched], before[untouched])  # every other slot bitwise unchanged


@pytest.mark.parametrize("fn,device", step_impls())
def test_diagonal_step_strided_pool_and_int32_index(fn, device):
    fn = resolve(fn)
    big = torch.randn(8, 2, 10, device=device)
    pool = big[:, 1, 1:8]  # [8, 7], row stride 20, not contiguous
    before = big.clone()
    a = torch.rand(3, 7, device=device)
    b = torch.randn(3, 7, device=device)
    slot = torch.tensor([5, 0, 3], dtype=torch.int32, device=device)
    with torch.no_grad():
        new = fn(a, b, pool, slot)
    want = a * before[:, 1, 1:8][slot.long()] + b
    assert rel_err(new, want) < 1e-6 and rel_err(pool[slot.long()], want) < 1e-6
    mask = torch.ones_like(big, dtype=torch.bool)
    mask[slot.long(), 1, 1:8] = False
    assert torch.equal(big[mask], before[mask])


def test_diagonal_step_ref_rejects_bad_slots():
    pool = torch.zeros(4, 3)
    a = torch.rand(2, 3)
    with torch.no_grad():
        with pytest.raises(ValueError, match="only 4 slots"):
            diagonal_step_ref(a, a, pool, torch.tensor([1, 4]))
        with pytest.raises(ValueError, match="duplicate"):
            diagonal_step_ref(a, a, pool, torch.tensor([2, 2]))
        with pytest.raises(ValueError, match="int32 or int64"):
            diagonal_step_ref(a, a, pool, torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match="shape"):
            diagonal_step_ref(a, a, pool, torch.tensor([0, 1, 2]))
        with pytest.raises(ValueError, match="state_pool must have shape"):
            diagonal_step_ref(a, a, torch.zeros(4, 5), torch.tensor([0, 1]))
    assert not pool.any()
    with pytest.raises(ValueError, match="not differentiable"):
        diagonal_step_ref(a.requires_grad_(), a, pool, torch.tensor([0, 1]))


@needs_triton
def test_diagonal_step_triton_skips_out_of_range_slots(poison):
    from kernels.step_triton import diagonal_step_triton

    pool = torch.randn(4, 5, device=DEVICE)
    before = pool.clone()
    a = torch.rand(2, 5, device=DEVICE)
    b = torch.randn(2, 5, device=DEVICE)
    new = diagonal_step_triton(a, b, pool, torch.tensor([7, 1], device=DEVICE))
    assert torch.equal(new[0], b[0]) and rel_err(new[1], a[1] * before[1] + b[1]) < 1e-6
    assert torch.equal(pool[[0, 2, 3]], before[[0, 2, 3]])


# ---- scratch_step ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn,device", [pytest.param(scratch_step_ref, "cpu", id="torch")]
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
    assert out.dtype == dtype and out.shape == torch.Size(shape)
    want = a.detach().double() * s.detach().double() + b.detach().double()
    tol = 1e-6 if dtype == torch.float32 else 2e-3
    assert rel_err(out, want) < tol
    assert all(torch.equal(x.detach(), c) for x, c in zip((a, b, s), copies))  # nothing written
    go = torch.randn(shape, generator=g).to(device)
    da, db, ds = torch.autograd.grad((out.float() * go).sum(), (a, b, s))
    assert da.dtype == dtype and db.dtype == dtype and ds.dtype == state_dtype
    assert rel_err(da, go * s.detach().double()) < tol
    assert rel_err(db, go) < tol
    assert rel_err(ds, go * a.detach().double()) < tol
    assert all(torch.equal(x.detach(), c) for x, c in zip((a, b, s), copies))


@needs_triton
def test_scratch_step_triton_matches_ref_non_contiguous(poison):
    from kernels.step_triton import scratch_step_triton

    base = torch.randn(3, 9, 4, device=DEVICE)
    a = torch.rand(3, 4, 9, device=DEVICE).transpose(1, 2)
    b = base * 0.5
    s = base.flip(0)
    assert not a.is_contiguous()
    assert rel_err(scratch_step_triton(a, b, s), scratch_step_ref(a, b, s)) < 1e-6


def test_scratch_step_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        scratch_step_ref(x, torch.zeros(3, 2), x)
    with pytest.raises(ValueError, match="states must have shape"):
        scratch_step_ref(x, x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same dtype"):
        scratch_step_ref(x, x.half(), x)
    with pytest.raises(ValueError, match="states must have dtype"):
        scratch_step_ref(x.half(), x.half(), x.double())


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_steps_real_sizes(dtype, poison):
    from kernels.step_triton import diagonal_step_triton, scratch_step_triton

    S, N, D = 256, 64, 2048
    pool = torch.randn(S, D, device="cuda")
    pool_ref = pool.clone()
    slot = torch.randperm(S, device="cuda")[:N]
    a = torch.rand(N, D, device="cuda", dtype=dtype)
    b = torch.randn(N, D, device="cuda", dtype=dtype)
    with torch.no_grad():
        got = diagonal_step_triton(a, b, pool, slot)
        want = diagonal_step_ref(a, b, pool_ref, slot)
    assert rel_err(got, want) < 1e-2 and rel_err(pool, pool_ref) < 1e-6
    s = torch.randn(4, 16, D, device="cuda", dtype=dtype)
    a3, b3 = torch.rand_like(s), torch.randn_like(s)
    assert rel_err(scratch_step_triton(a3, b3, s), scratch_step_ref(a3, b3, s)) < 1e-2
    assert CUDA
