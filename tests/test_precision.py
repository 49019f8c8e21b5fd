"""Low-precision numerics: RoPE under bf16 and the SSM decode state over long sequences."""
from __future__ import annotations

import copy
import math

import torch

from infer.engine import Engine
from scratchpad.layers import rotary
from scratchpad.mixers.ssm import DiagonalSSM
from test_engine import model_for, text_bytes


def _rel(a: torch.Tensor, b: torch.Tensor, dim=None) -> torch.Tensor:
    a, b = a.double(), b.double()
    if dim is None:
        return (a - b).norm() / b.norm()
    return (a - b).norm(dim=dim) / b.norm(dim=dim)


def _rotary_bf16_angles(x, pos, base=10000.0):
    """The previous implementation: angles cast to the input dtype before cos/sin."""
    half = x.shape[-1] // 2
    freq = base ** (-torch.arange(half, dtype=torch.float64) / half)
    ang = (pos.to(torch.float64).unsqueeze(-1) * freq).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * ang.cos() - x2 * ang.sin(), x1 * ang.sin() + x2 * ang.cos()], -1)


def test_rotary_bf16_matches_fp32_up_to_position_4096():
    g = torch.Generator().manual_seed(0)
    pos = torch.arange(0, 4097)
    x = torch.randn(2, 4, pos.numel(), 32, generator=g).bfloat16()  # the same bf16 values for both
    ref = rotary(x.double(), pos)
    out = rotary(x, pos)
    assert out.dtype == torch.bfloat16
    err = _rel(out, ref, dim=-1)  # per vector
    assert float(err.max()) < 0.01, float(err.max())
    # the test can fail: the bf16-angle version is far off at long positions
    old = _rel(_rotary_bf16_angles(x, pos), ref, dim=-1)
    assert float(old[..., 1024:].max()) > 0.1


def test_rotary_odd_head_dim_keeps_the_last_channel():
    x = torch.randn(1, 5, 7)
    out = rotary(x, torch.arange(5))
    assert torch.equal(out[..., 6], x[..., 6])
    assert torch.allclose(out[:, 0], x[:, 0])  # position 0 is the identity


def test_ssm_decode_state_is_fp32_and_tracks_fp32_over_10000_steps():
    torch.manual_seed(0)
    d, steps = 16, 10_000
    m32 = DiagonalSSM(d).eval()
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    s32 = m32.allocate(1, 0, "cpu", torch.float32)
    s16 = m16.allocate(1, 0, "cpu", torch.bfloat16)
    assert s16.h.dtype == torch.float32
    assert m16.allocate(1, 0, "cpu", torch.float64).h.dtype == torch.float64
    old = torch.zeros(1, m16.inner, dtype=torch.bfloat16)  # a bf16 state, for contrast
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(1, d, generator=g) + 0.5  # a mean drives the slow channels (a ~ 0.998) up
            m32.decode(x, s32)
            y16 = m16.decode(x.bfloat16(), s16)
            a, b, _ = m16.coefficients(x.bfloat16())
            old.copy_(torch.addcmul(b.bfloat16().float(), a.bfloat16().float(), old.float()))  # fp32 math, bf16 store
    assert y16.dtype == torch.bfloat16
    err = float(_rel(s16.h, s32.h))
    assert err < 0.01, err
    assert float(_rel(old, s32.h)) > 3 * max(err, 1e-3)  # a bf16 state drifts: the check can fail
    assert math.isfinite(err)


def test_bf16_decode_tracks_the_fp32_forward():
    # generate --dtype bf16: bf16 weights through the engine, fp32 SSM state and RoPE tables
    model = model_for("tiny-sp-fixed-p4", torch.float32)
    x = text_bytes(2, 40, seed=5)
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    for tau in (0.0, math.inf):  # decisions that bf16 entropies cannot flip
        with torch.no_grad():
            ref = model(x, threshold=tau).logits
            got = Engine(m16).teacher_force(x, tau, prefill=[0, 13])
            forward_err = float(_rel(m16(x, threshold=tau).logits, ref))  # bf16 rounding alone
        err = float(_rel(got, ref))
        assert got.dtype == torch.bfloat16
        assert err < 0.02 and err <= 1.5 * forward_err, (tau, err, forward_err)
