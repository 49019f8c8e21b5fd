"""`scratchpad bench generate`: both models at every batch size, one JSON line with the speedup."""
from __future__ import annotations

import json

import pytest
import torch

from eval.bench import generate as bench_generate


def test_rows_and_json_line_carry_both_models_and_the_speedup(capsys):
    assert bench_generate.main(["--max-bytes", "6", "--batch-sizes", "1,2", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [ln.split()[:2] for ln in lines[2:-1]]
    assert rows == [["sp", "1"], ["byte", "1"], ["sp", "2"], ["byte", "2"]]
    summary = json.loads(lines[-1])
    rates = summary["bytes_per_second"]
    assert set(rates) == {"sp_b1", "byte_b1", "sp_b2", "byte_b2"} and all(v > 0 for v in rates.values())
    for key, b in (("speedup_vs_byte", 1), ("speedup_vs_byte_b2", 2)):
        ratio = rates[f"sp_b{b}"] / rates[f"byte_b{b}"]  # of the printed (rounded) rates
        assert abs(summary[key] / ratio - 1) < 1e-3
    assert summary["threads"] == 1 and summary["compiled"] is False
    assert set(summary["decode_step"].values()) == {"eager"} and set(summary["graph_fallback"].values()) == {None}


def test_json_says_when_graph_capture_fell_back(capsys, monkeypatch):
    """On CPU the graph step's stand-in (static=True) takes the capture that fails: an error line
    without --eager-fallback, eager cells that say why with it."""
    import functools

    from eval.cli import main as cli
    from tests.test_engine_graphs import fail_capture

    monkeypatch.setattr(bench_generate, "Engine", functools.partial(bench_generate.Engine, static=True))
    fail_capture(monkeypatch)
    flags = ["bench", "generate", "--max-bytes", "3", "--batch-sizes", "1", "--repeats", "1"]
    assert cli(flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--eager-fallback" in err
    assert cli([*flags, "--eager-fallback"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["decode_step"].values()) == {"eager"}
    assert all("injected capture failure" in why for why in summary["graph_fallback"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    from eval.cli import main as cli

    assert cli(["bench", "generate", "--device", "cuda"]) == 2
    assert capsys.readouterr().err == "error: --device cuda: CUDA is not available on this machine\n"
