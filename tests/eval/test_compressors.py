"""eval bpb --compare-compressors: the compressors' numbers are real, per window is per window, and
a missing or failing tool is reported as skipped."""
from __future__ import annotations

import bz2
import lzma
import os
import re
import shutil
import stat

import numpy as np
import pytest

from eval.compressors import COMPRESSORS, compare, summary_line
from eval.experiments.bpb_cli import main
from eval.windows import window_spans

W = 64
have = {c.name: shutil.which(c.name) for c in COMPRESSORS}
needs = pytest.mark.skipif(not (have["bzip2"] and have["gzip"]), reason="needs gzip and bzip2 installed")


def sample(n: int = 1500) -> np.ndarray:
    text = b"def add(x, y):\n    return x + y\n\nThe quick brown fox jumps over the lazy dog.\n"
    return np.frombuffer((text * (n // len(text) + 1))[:n], np.uint8)


@needs
def test_numbers_are_the_tools_output_sizes():
    arr = sample()
    res = compare(arr, W)
    by = {r["name"]: r for r in res["compressors"]}
    assert res["bytes"] == len(arr) - 1 and res["windows"] == len(window_spans(len(arr), W))
    predicted = arr[1:].tobytes()
    chunks = [arr[s + 1:s + 1 + L].tobytes() for s, L in window_spans(len(arr), W)]
    assert b"".join(chunks) == predicted  # the windows' bytes are exactly the predicted bytes
    # bzip2 -9 and xz -9e write what Python's bz2 / lzma write for the same settings.
    assert by["bzip2"]["whole_bytes"] == len(bz2.compress(predicted, 9))
    assert by["bzip2"]["window_bytes"] == sum(len(bz2.compress(c, 9)) for c in chunks)
    if "xz" in by:
        assert by["xz"]["whole_bytes"] == len(lzma.compress(predicted, preset=9 | lzma.PRESET_EXTREME))
    for r in by.values():
        assert re.fullmatch(r"\d+(\.\d+)+", r["version"]), r["version"]
        assert r["whole_bpb"] == pytest.approx(8 * r["whole_bytes"] / res["bytes"])
        # repetitive text compresses well whole-file; 64-byte windows each pay a header and learn nothing
        assert r["whole_bpb"] < 2.0 < r["window_bpb"]
    # random bytes do not compress: every tool lands above 8 bits per byte
    noise = compare(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8), 1024)
    for r in noise["compressors"]:
        assert 8.0 < r["whole_bpb"] < 9.2, r  # headers; bzip2 expands noise by ~12%


@needs
def test_missing_and_failing_tools_are_skipped(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gzip", "bzip2"):
        os.symlink(have[name], bin_dir / name)
    fake = bin_dir / "xz"
    fake.write_text("#!/bin/sh\necho 'xz: simulated failure' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    res = compare(sample(500), W)
    assert [r["name"] for r in res["compressors"]] == ["gzip", "bzip2"]
    skipped = {s["name"]: s["reason"] for s in res["skipped"]}
    assert skipped["zstd"] == "not installed (not on PATH)"
    assert skipped["xz"].startswith("failed (exit code 3") and "simulated failure" in skipped["xz"]
    line = summary_line(res)
    assert "skipped: xz" in line and "zstd (not installed" in line


@needs
def test_eval_bpb_compare_compressors(assets, tmp_path, cli, read_report, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gzip", "bzip2"):
        os.symlink(have[name], bin_dir / name)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "bpb"
    code, stdout, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"],
                                   "--window", W, "--threads", 1, "--out", out, "--compare-compressors"])
    assert code == 0, err
    r = read_report(out / "bpb.json")
    comp = r["compressors"]
    assert comp["bytes"] == r["bytes"] and comp["window"] == W == r["window"] and comp["windows"] == r["windows"]
    assert [c["name"] for c in comp["compressors"]] == ["gzip", "bzip2"]
    assert {s["name"] for s in comp["skipped"]} == {"xz", "zstd"}
    md = (out / "bpb.md").read_text()
    assert "`bzip2 -9 -c`" in md and f"per {W}-byte window" in md and "Skipped: `xz -9e -T1 -c` not installed" in md
    assert "compressors, bpb whole-file / per 64-byte window: gzip" in stdout and "skipped: xz" in stdout
    # without the flag there is no compressor section
    code, stdout, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"],
                                   "--window", W, "--threads", 1, "--out", out])
    assert code == 0 and "compressors" not in read_report(out / "bpb.json") and "compressors" not in stdout
