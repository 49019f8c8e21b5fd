"""The reference itself (kernels/naive.py) against closed forms: every other kernel test trusts it."""
import torch
from kernel_testutil import rel_err

from kernels.naive import diagonal_scan_naive, scratch_step_naive


def test_scan_is_the_geometric_series_for_constant_inputs():
    """a_t = c, b_t = 1: h_t = c^(t+1) h0 + (1 - c^(t+1)) / (1 - c)."""
    B, T, D = 2, 13, 3
    c = torch.tensor([0.5, 0.9, -0.7], dtype=torch.float64)
    a = c.expand(B, T, D).clone()
    h0 = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.5, -1.0]], dtype=torch.float64)
    h, final = diagonal_scan_naive(a, torch.ones(B, T, D, dtype=torch.float64), h0)
    pw = c ** torch.arange(1, T + 1, dtype=torch.float64)[:, None]  # [T, D]: c^(t+1)
    want = pw * h0[:, None] + (1 - pw) / (1 - c)
    assert rel_err(h, want) < 1e-14 and torch.equal(final, h[:, -1])


def test_scan_gradients_are_the_decay_products():
    """d final / d b_t = prod_{s>t} a_s and d final / d h0 = prod_s a_s (one channel, T = 6)."""
    a = torch.tensor([[[0.5], [2.0], [0.25], [3.0], [0.1], [0.6]]], dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 6, 1, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 1, dtype=torch.float64, requires_grad=True)
    _, final = diagonal_scan_naive(a, b, h0)
    db, dh0 = torch.autograd.grad(final.sum(), (b, h0))
    suffix = torch.cat([a[0, 1:, 0].flip(0).cumprod(0).flip(0), a.new_ones(1)]).detach()
    assert torch.allclose(db[0, :, 0], suffix, rtol=1e-14) and torch.allclose(dh0[0, 0], a.detach().prod(), rtol=1e-14)


def test_scan_dtypes_and_empty_sequence():
    a = torch.rand(2, 5, 3, dtype=torch.float16)
    h, final = diagonal_scan_naive(a, a, torch.zeros(2, 3))
    assert h.dtype == torch.float16 and final.dtype == torch.float32
    h, final = diagonal_scan_naive(a[:, :0], a[:, :0], torch.ones(2, 3))
    assert h.shape == (2, 0, 3) and torch.equal(final, torch.ones(2, 3))
    assert torch.equal(diagonal_scan_naive(a[:, :0], a[:, :0])[1], torch.zeros(2, 3, dtype=torch.float16))


def test_scratch_step_is_one_step_of_the_scan():
    """The transient step from state s equals the scan's first output from initial state s."""
    g = torch.Generator().manual_seed(0)
    a, b, s = (torch.randn(3, 7, generator=g, dtype=torch.float64) for _ in range(3))
    h, _ = diagonal_scan_naive(a[:, None], b[:, None], s)
    assert torch.equal(scratch_step_naive(a, b, s), h[:, 0])
    assert scratch_step_naive(a.half(), b.half(), s.float()).dtype == torch.float16
