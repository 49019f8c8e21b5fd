"""The pictures: every eval report that promises a PNG writes one; points and series can be told
apart; the byte-baseline line is named in the legend; the sweep shows its spread; no titles carry
absolute paths."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eval.experiments import bpb_cli, code_cli, sweep_cli, tokenizer_baseline, tokenizer_baseline_cli
from eval.report import bar_figure, short_path, xy_figure
from eval.scoring import paired_difference, standard_error


def test_points_have_distinct_styles_and_vlines_are_in_the_legend():
    points = [dict(label=f"variant {i}", x=float(i + 1), y=1.0 + i / 10) for i in range(12)]
    fig = xy_figure([], "x", "y", "t", points=points, vlines=[dict(label="byte-level baseline FLOPs", x=3.0)])
    ax = fig.axes[0]
    styles = {(c.lines[0].get_marker(), c.lines[0].get_color()) for c in ax.containers if c.get_label().startswith("variant")}
    assert len(styles) == 12
    assert "byte-level baseline FLOPs" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_series_error_bars_are_drawn():
    fig = xy_figure([dict(label="s", x=[1, 2, 3], y=[2.16, 2.165, 2.168], err=[0.02, 0.02, 0.02])], "x", "y", "t")
    ax = fig.axes[0]
    assert len(ax.containers) == 1 and ax.containers[0].has_yerr
    lo, hi = ax.get_ylim()
    assert lo <= 2.16 - 0.02 and hi >= 2.168 + 0.02  # the spread is on the picture, not clipped away


def test_stacked_bars_total_is_labelled():
    fig = bar_figure(["a", "b"], [dict(label="p", values=[1.0, 2.0]), dict(label="q", values=[3.0, 4.0])], "y", "t",
                     stacked=True)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "4" in texts and "6" in texts


def test_one_number_format():
    from eval.report import fmt

    assert [fmt(2.3e6), fmt(3.755e6), fmt(56000.0), fmt(2.1318562030792236)] == ["2.300e+06", "3.755e+06", "5.600e+04", "2.132"]


def test_tokenizer_scores_the_byte_models_windows():
    """One windowing: the token LM's windows are eval.windows' window_spans over its token ids."""
    import inspect

    from eval.windows import window_spans

    assert not hasattr(tokenizer_baseline, "windows")
    assert "batches(" in inspect.getsource(tokenizer_baseline.TokenBaseline.evaluate)
    assert window_spans(10, 4) == [(0, 4), (4, 4), (8, 1)]


def test_spread_helpers():
    assert standard_error([1.0]) is None
    assert standard_error([1.0, 3.0]) == pytest.approx(1.0)
    d, se = paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.5])
    assert d == pytest.approx(0.8333333) and se == pytest.approx(np.std([1, 1, 0.5], ddof=1) / math.sqrt(3))
    assert short_path("/work/data/text/val.bin") == "text/val.bin"


def test_bpb_and_code_write_pngs(assets, tmp_path, cli, read_report):
    m = assets["models"]["tiny-sp-fixed-p4"]
    rc, out, err = cli(bpb_cli.main, ["--model", m, "--data", assets["corpus"], "--window", 64, "--out", tmp_path / "b"])
    assert rc == 0, err
    r = read_report(tmp_path / "b" / "bpb.json")
    assert (tmp_path / "b" / "bpb.png").stat().st_size > 0 and r["png"] == "bpb.png"
    assert r["bpb_se"] > 0 and len(r["window_bpb"]) == r["windows"]
    assert np.average(r["window_bpb"], weights=[64] * (r["windows"] - 1) + [r["bytes"] - 64 * (r["windows"] - 1)]) \
        == pytest.approx(r["bpb"], rel=1e-5)
    rc, out, err = cli(code_cli.main, ["--model", m, "--data", assets["code"], "--lines", 2, "--max-line-bytes", 40,
                                   "--window", 64, "--out", tmp_path / "c"])
    assert rc == 0, err
    assert (tmp_path / "c" / "code.png").stat().st_size > 0 and read_report(tmp_path / "c" / "code.json")["png"] == "code.png"


def test_sweep_shows_spread_and_a_relative_title(assets, tmp_path, cli, read_report, monkeypatch):
    seen = {}
    real = sweep_cli.plot_xy
    monkeypatch.setattr(sweep_cli, "plot_xy", lambda *a, **kw: seen.update(args=a, kw=kw) or real(*a, **kw))
    rc, _, err = cli(sweep_cli.main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"],
                                  "--window", 64, "--thresholds", "0,inf", "--engine-bytes", 0, "--out", tmp_path])
    assert rc == 0, err
    r = read_report(tmp_path / "sweep.json")
    assert all(row["bpb_se"] > 0 for row in r["rows"]) and "standard error" in r["spread"]["text"]
    assert r["spread"]["best_threshold"] == 0 and r["spread"]["diff_vs_plain_se"] > 0
    assert r["spread"]["diff_vs_plain"] == pytest.approx(r["rows"][1]["bpb"] - r["rows"][0]["bpb"], abs=1e-3)
    series = seen["args"][1]
    assert series[0]["err"] == [row["bpb_se"] for row in r["rows"]]
    assert str(assets["root"]) not in seen["args"][4]  # the title
    assert "Noise:" in (tmp_path / "sweep.md").read_text()


def test_tokenizer_baseline_writes_png_and_saves_atomically(assets, tmp_path, cli, read_report):
    rc, _, err = cli(tokenizer_baseline_cli.main, ["--data", assets["corpus"], "--out", tmp_path, "--preset", "tiny-byte",
                                               "--steps", 3, "--vocab-size", 320, "--sample-bytes", 1000,
                                               "--train-bytes", 2000, "--seq-len", 64, "--batch-size", 2, "--eval-bytes", 600])
    assert rc == 0, err
    assert (tmp_path / "tokenizer_baseline.png").stat().st_size > 0
    assert (tmp_path / "baseline" / "token_lm.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    tb = tokenizer_baseline.TokenBaseline.load(tmp_path)  # the --out folder stands for its baseline/
    assert tb.meta["loss_curve"][-1][0] == 3
    from eval.windows import window_spans

    ids = tb.tok.encode(bytes(np.fromfile(assets["corpus"] / "val.bin", np.uint8)[:600]))
    assert tb.meta["eval"]["windows"] == len(window_spans(len(ids), tb.seq_len))
