"""eval bpb: end to end, the windowing is exact, and bad input is one clear line with exit code 2."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.experiments.bpb_cli import main
from eval.windows import window_spans
from scratchpad import load_model

W = 64


def test_bpb_writes_report_and_matches_direct_computation(assets, tmp_path, cli, read_report):
    out = tmp_path / "bpb"
    model_dir = assets["models"]["tiny-sp-fixed-p4"]
    code, stdout, err = cli(main, ["--model", model_dir, "--data", assets["corpus"], "--window", W, "--threshold", "1.5",
                                   "--threads", 1, "--out", out])
    assert code == 0, err
    assert (out / "bpb.md").is_file() and "bpb" in stdout
    r = read_report(out / "bpb.json")
    for key in ("bpb", "scratchpad_rate", "trunk_calls_per_byte", "flops_per_byte", "flops_ratio_vs_byte", "kv_bytes_per_byte",
                "kv_ratio_vs_byte", "window", "method", "bytes", "windows", "threshold", "model", "data"):
        assert key in r, key
    assert "non-overlapping" in r["method"] and "non-overlapping" in (out / "bpb.md").read_text()

    # the same number by hand: every byte after the first predicted once, windows of W from an empty context
    val = np.frombuffer((assets["corpus"] / "val.bin").read_bytes(), np.uint8).astype(np.int64)
    model = load_model(model_dir).eval()
    nats, n, scratch, commits = 0.0, 0, 0, 0
    with torch.no_grad():
        for s, L in window_spans(len(val), W):
            x = torch.from_numpy(val[s : s + L + 1]).view(1, -1)
            o = model(x[:, :-1], threshold=1.5)
            nats += float(F.cross_entropy(o.logits[0], x[0, 1:], reduction="sum"))
            n += L
            scratch += int(o.scratch.sum())
            commits += int(o.ends.sum())
    assert r["bytes"] == n == len(val) - 1
    assert r["bpb"] == pytest.approx(nats / n / math.log(2), rel=1e-5)
    assert r["scratchpad_rate"] == pytest.approx(scratch / n)
    assert r["trunk_calls_per_byte"] == pytest.approx((scratch + commits) / n)
    assert 0 < r["scratchpad_rate"] < 0.75  # the sharpened aux head fires on some bytes only


def test_window_spans_cover_every_byte_once():
    for n, w in ((10, 3), (9, 4), (2, 5), (65, 64), (129, 64)):
        spans = window_spans(n, w)
        predicted = [t for s, L in spans for t in range(s + 1, s + L + 1)]
        assert predicted == list(range(1, n)), (n, w)
        assert all(L <= w for _, L in spans)


def test_bpb_ignores_threshold_for_a_model_without_scratchpads(assets, tmp_path, cli, read_report):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-byte"], "--data", assets["corpus"], "--window", W,
                              "--threshold", "0", "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "bpb.json")
    assert r["threshold"] == "inf" and r["scratchpad_rate"] == 0 and r["kv_ratio_vs_byte"] == 1
    assert r["flops_ratio_vs_byte"] == pytest.approx(1.0)  # it is the byte-level baseline


@pytest.mark.parametrize("bad,needles", [
    (["--threshold", "abc"], ["--threshold", "abc"]),
    (["--threshold", "-1"], ["--threshold", "[0, 100]"]),
    (["--threshold", "nan"], ["--threshold"]),
    (["--window", "100000"], ["--window", "max_seq_len"]),
    (["--window", "0"], ["--window"]),
    (["--max-bytes", "50"], ["smaller than one window"]),
    (["--split", "test"], ["test.bin"]),
])
def test_bpb_bad_arguments(assets, tmp_path, cli, user_error, bad, needles):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W,
                              "--out", tmp_path, *bad])
    user_error(code, err, *needles)


def test_bpb_bad_data_and_model(assets, tmp_path, cli, user_error):
    model = assets["models"]["tiny-sp-fixed-p4"]
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"short")
    out = ["--out", tmp_path / "o"]
    cases = [
        (["--model", model, "--data", empty, *out], ["val.bin"]),                      # not a corpus
        (["--model", model, "--data", tmp_path / "nope", *out], ["no such"]),          # missing
        (["--model", model, "--data", tiny, *out], ["smaller than one window"]),       # smaller than a window
        (["--model", tmp_path / "nomodel", "--data", assets["corpus"], *out], ["--model", "no such"]),
        (["--model", empty, "--data", assets["corpus"], *out], ["not a model folder"]),
        (["--model", model, "--data", assets["corpus"]], ["--out"]),                  # --out missing
    ]
    for argv, needles in cases:
        code, _, err = cli(main, [*argv, "--window", W])
        user_error(code, err, *needles)


def test_bpb_console_command_one_line_error(tmp_path):
    """Through the real console entry point: exit code 2 and one stderr line, no traceback."""
    p = subprocess.run([sys.executable, "-m", "eval.cli", "eval", "bpb", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_bpb_rate_picks_tau_for_a_compute_budget(assets, tmp_path, cli, user_error, read_report):
    argv = ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W, "--out", tmp_path]
    code, _, err = cli(main, [*argv, "--rate", "0.2"])
    assert code == 0, err
    r = read_report(tmp_path / "bpb.json")
    assert r["target_rate"] == 0.2 and r["scratchpad_rate"] == pytest.approx(0.2, abs=0.02)
    code, _, err = cli(main, [*argv, "--rate", "0.2", "--threshold", "1"])
    user_error(code, err, "--rate")
    code, _, err = cli(main, [*argv, "--rate", "-1"])
    user_error(code, err, "--rate")


@pytest.mark.slow
def test_bpb_compiled_matches_eager(assets, tmp_path, cli, read_report):
    args = ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W, "--threshold", "1.5",
            "--threads", 1]
    assert cli(main, [*args, "--out", tmp_path / "e"])[0] == 0
    code, _, err = cli(main, [*args, "--compile", "--out", tmp_path / "c"])
    assert code == 0, err
    assert "compile:" in err
    e, c = read_report(tmp_path / "e" / "bpb.json"), read_report(tmp_path / "c" / "bpb.json")
    assert c["compile_s"] > 0 and "compile_s" not in e
    assert c["bpb"] == pytest.approx(e["bpb"], rel=1e-4) and c["scratchpads"] == e["scratchpads"]
