"""eval variants: trains presets through the trainer for the same budget, audits causality on the
trained weights, puts the study's numbers beside ours, adds the tokenizer baseline row."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from eval.experiments.variants import DEFAULT_PRESETS, PUBLISHED, paired_gaps
from eval.experiments.variants_cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--steps", 2, "--seq-len", 64, "--batch-size", 2, "--warmup", 1, "--eval-every", 0, "--eval-windows", 2,
        "--eval-bytes", 600, "--threads", 1, "--vocab-size", 320, "--tokenizer-sample-bytes", 4000,
        "--tokenizer-train-bytes", 8000]


def test_variants_end_to_end(assets, tmp_path, cli, read_report):
    out = tmp_path / "variants"
    argv = ["--data", assets["corpus"], "--presets", "tiny-study-A-fixed-mean,tiny-sp-fixed-p16", "--out", out, *FAST]
    code, stdout, err = cli(main, argv)
    assert code == 0, err
    r = read_report(out / "variants.json")
    rows = r["rows"]
    assert [row["preset"] for row in rows][:2] == ["tiny-study-A-fixed-mean", "tiny-sp-fixed-p16"]
    assert rows[2]["preset"].startswith("tokenizer-bpe")
    for row in rows:
        for k in ("params", "steps", "ms_per_step", "val_bpb", "causality", "causality_passed", "published"):
            assert k in row, (row["preset"], k)
        assert row["steps"] == 2 and row["params"] > 0 and row["ms_per_step"] > 0
        assert row["causality"] == "PASS"
        assert 0.5 < row["val_bpb"] < 12
    assert rows[0]["published"]["bpb"] == 1.132 and rows[0]["published"]["ms_per_step"] == 55.6
    assert rows[0]["ms_per_step_vs_A"] == 1.0
    assert rows[1]["val_bpb_sp"] is not None and rows[1]["kv_ratio_vs_byte_sp"] == pytest.approx(1 / 16, abs=0.01)
    assert rows[2]["lossless"] is True
    for row in rows[:2]:  # the load each variant trained under, from its training log
        assert row["cores"] == sorted(os.sched_getaffinity(0)) and row["load_start"] >= 0 and row["load_end"] >= 0
        assert len(row["val_window_bpb"]) == -(-row["val_bytes"] // row["val_window"])  # the last window may be short
    md = (out / "variants.md").read_text()
    assert "1.132" in md and "PASS" in md
    assert (out / "runs" / "tiny-study-A-fixed-mean" / "last" / "model.safetensors").is_file()

    # a second call reuses the finished runs instead of training again
    code, stdout, err = cli(main, argv)
    assert code == 0, err
    assert all(row["reused"] for row in read_report(out / "variants.json")["rows"])


def test_paired_gaps_answer_the_studys_questions_on_the_same_windows():
    def row(preset, windows, window=1024):
        return dict(preset=preset, val_window=window, val_window_bpb=windows)

    rows = [row("tiny-study-A-fixed-mean", [2.0, 2.5, 3.0]), row("tiny-study-E-full-bytes", [2.1, 2.4, 3.3]),
            row("tiny-byte", [2.5, 2.5, 3.5], window=512),
            dict(row("tiny-sp-fixed-p16", [2.6, 2.6, 3.6], window=512), val_window_bpb_sp=[2.4, 2.5, 3.5])]
    gaps = {(g["variant"], g["tau"], g["against"]): g for g in paired_gaps(rows)}
    e_a = gaps[("tiny-study-E-full-bytes", "inf", "tiny-study-A-fixed-mean")]
    assert e_a["bpb_diff"] == pytest.approx(0.1) and e_a["se"] == pytest.approx(0.2 / 3 ** 0.5)  # std of (0.1, -0.1, 0.3) is 0.2
    assert gaps[("tiny-sp-fixed-p16", "inf", "tiny-byte")]["bpb_diff"] == pytest.approx(0.1)
    assert gaps[("tiny-sp-fixed-p16", "inf", "tiny-byte")]["se"] == pytest.approx(0.0, abs=1e-12)
    assert gaps[("tiny-sp-fixed-p16", 1.5, "tiny-byte")]["bpb_diff"] == pytest.approx(-0.1 / 3)  # its τ = 1.5 windows
    assert ("tiny-byte", "inf", "tiny-study-A-fixed-mean") not in gaps  # other windows: not paired


def numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}


def test_published_numbers_are_the_design_docs():
    """Every number of the study's table is in the study's paragraph of docs/ARCHITECTURE.md §10 and
    in the text the report shows for that variant; every study preset has its row."""
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    study = doc[doc.index("* Residual byte patching study"):]
    study = numbers(" ".join(study[:study.index("\n\n")].split()))
    assert {p for p in DEFAULT_PRESETS if p.startswith("study-")} == {p for p in PUBLISHED if p.startswith("study-")}
    for preset, row in PUBLISHED.items():
        values = [row[k] for k in ("bpb", "ms_per_step", "bpb_masked") if k in row] + row.get("bpb_leaked", [])
        assert bool(values) == preset.startswith("study-"), preset
        for v in values:
            assert v in study, (preset, v, "not in docs/ARCHITECTURE.md §10")
            assert v in numbers(row["text"]), (preset, v, row["text"])


@pytest.mark.parametrize("extra,needles", [
    (["--presets", "tiny-byte,nope"], ["unknown preset", "nope"]),
    (["--presets", "tiny-byte", "--seq-len", "100000"], ["--seq-len"]),
    (["--presets", "tiny-byte", "--time-budget", "soon"], ["--time-budget"]),
    (["--presets", "tiny-byte", "--tokenizer-baseline", "/nonexistent/tok"], ["--tokenizer-baseline"]),
])
def test_variants_bad_input(assets, tmp_path, cli, user_error, extra, needles):
    code, _, err = cli(main, ["--data", assets["corpus"], "--out", tmp_path, "--steps", 1, *extra])
    user_error(code, err, *needles)


def test_variants_needs_budget_and_corpus(assets, tmp_path, cli, user_error):
    code, _, err = cli(main, ["--data", assets["corpus"], "--out", tmp_path, "--presets", "tiny-byte"])
    user_error(code, err, "--time-budget")
    code, _, err = cli(main, ["--data", tmp_path / "nothing", "--out", tmp_path, "--presets", "tiny-byte", "--steps", 1])
    user_error(code, err, "nothing")
