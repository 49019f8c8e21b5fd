"""infer/compiled_step.py: a piece compiled once and replayed on the tensors it was traced against,
and the small-product decompositions it hands Inductor."""
import pytest
import torch

from infer import compiled_step
from infer.compiled_step import SMALL_ROWS, compile_replay, row_products

aten = torch.ops.aten


def as_traced(gm, example_inputs):
    return gm


def test_small_products_become_sums_and_large_ones_stay_matmuls():
    table = row_products()
    torch.manual_seed(0)
    w, bias = torch.randn(37, 23, dtype=torch.float64), torch.randn(23, dtype=torch.float64)
    for rows in (1, 3, SMALL_ROWS):
        a = torch.randn(rows, 37, dtype=torch.float64)
        assert torch.allclose(table[aten.mm.default](a, w), a @ w)
        assert torch.allclose(table[aten.addmm.default](bias, a, w), torch.addmm(bias, a, w))
    big = torch.randn(SMALL_ROWS + 1, 37, dtype=torch.float64)
    assert table[aten.mm.default](big, w) is NotImplemented
    assert table[aten.addmm.default](bias, big, w) is NotImplemented
    assert table[aten.addmm.default](bias, big[:2], w, beta=2) is NotImplemented


def test_replay_repeats_the_piece_on_its_own_tensors():
    """Each replay applies the piece's in-place update to the very tensors it was traced on; two
    pieces of one code over different tensors (two runners over one model) keep their own."""
    w = torch.randn(4, 4, dtype=torch.float64)

    def make(acc):
        def piece():
            acc.add_(acc @ w)
        return piece

    accs = [torch.randn(2, 4, dtype=torch.float64) for _ in range(2)]
    expected = [a.clone() for a in accs]
    replays = [compile_replay(make(a), as_traced) for a in accs]  # each runs once while compiling
    for e in expected:
        e.add_(e @ w)
    for _ in range(3):
        for replay, e in zip(replays, expected):
            replay()
            e.add_(e @ w)
    for a, e in zip(accs, expected):
        assert torch.allclose(a, e)


def test_a_piece_that_breaks_the_graph_is_refused():
    acc = torch.zeros(3)

    def piece():
        acc.add_(1.0)
        torch._dynamo.graph_break()  # two graphs
        acc.mul_(2.0)

    with pytest.raises(torch._dynamo.exc.Unsupported):
        compile_replay(piece, as_traced)


def test_inductor_replay_equals_eager_on_a_small_layer():
    """Inductor (the C++ wrapper and the small-product decompositions) replays a norm-linear-
    activation update like eager."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 96)
    x, out = torch.randn(1, 64), torch.zeros(1, 96)

    def piece():
        out.copy_(torch.nn.functional.gelu(lin(torch.nn.functional.rms_norm(x, (64,)))))

    with torch.no_grad():
        replay = compile_replay(piece, compiled_step.inductor)
        x.copy_(torch.randn(1, 64))
        replay()
        assert torch.allclose(out, torch.nn.functional.gelu(lin(torch.nn.functional.rms_norm(x, (64,)))), atol=1e-5)
