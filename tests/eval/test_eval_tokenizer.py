"""Tokenizer baseline: lossless BPE on any bytes, the token LM over the scratchpad trunk, per-byte BPB,
save/load, and the point it adds to a sweep."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eval.experiments.sweep_cli import main as sweep_main
from eval.experiments.tokenizer_baseline import TokenBaseline, Tokenizer
from eval.experiments.tokenizer_baseline_cli import main
from eval.experiments.variants import token_causality
from scratchpad.errors import UserError


@pytest.fixture(scope="module")
def tokenizer():
    sample = b"the cat sat on the mat.\n    def f(x):\n        return x\n" * 40
    return Tokenizer.train(sample, 320)


def test_tokenizer_vocab_too_small_is_a_user_error():
    with pytest.raises(UserError, match="vocab-size"):
        Tokenizer.train(bytes(range(256)) * 4, 300)


def test_tokenizer_is_lossless_on_any_bytes(tokenizer):
    rng = np.random.default_rng(0)
    for data in (b"", b"\x00\r\n\t  \xff\xfe", b"the cat \xc3\xa9t\xc3\xa9\n\n\n", bytes(rng.integers(0, 256, 500, dtype=np.uint8)),
                 "caf\u00e9 \u2581 \u00a0 \U0001f600".encode()):
        ids = tokenizer.encode(data)
        assert tokenizer.decode(ids) == data
    assert len(tokenizer.encode(b"the cat sat on the mat.\n")) < 24  # merges happen


def test_tokenizer_baseline_end_to_end(assets, tmp_path, cli, read_report):
    out = tmp_path / "tok"
    code, stdout, err = cli(main, ["--data", assets["corpus"], "--out", out, "--preset", "tiny-byte", "--steps", 3,
                                   "--vocab-size", 320, "--seq-len", 64, "--batch-size", 2, "--threads", 1,
                                   "--sample-bytes", 4000, "--train-bytes", 8000])
    assert code == 0, err
    r = read_report(out / "tokenizer_baseline.json")
    assert r["eval"]["lossless"] and r["eval"]["bpb"] > 0 and r["steps"] == 3
    tb = TokenBaseline.load(out)
    # the trunk is the scratchpad package's Stack with the preset's mixers
    assert [b.kind for b in tb.model.trunk.blocks] == ["ssm", "attn"]
    val = np.frombuffer((assets["corpus"] / "val.bin").read_bytes(), np.uint8)
    res = tb.evaluate(val)
    assert res["bpb"] == pytest.approx(r["eval"]["bpb"], rel=1e-6)
    assert res["bytes"] <= len(val) - 1 and res["bytes_per_token"] > 1
    # BPB per byte = token NLL / bytes: check against a direct computation on one window
    ids = torch.from_numpy(tb.tok.encode(bytes(val[:200])).astype(np.int64))[: tb.seq_len + 1]
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(tb.model(ids[None, :-1])[0], ids[1:], reduction="sum")
    covered = len(tb.tok.decode(ids[1:].tolist()))
    one = tb.evaluate(np.frombuffer(tb.tok.decode(ids.tolist()), np.uint8))
    assert one["bytes"] == covered and one["bpb"] == pytest.approx(float(nll) / covered / math.log(2), rel=1e-5)
    assert token_causality(tb.model)[0]

    # and it is a point of a sweep
    code, _, err = cli(sweep_main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", 64,
                                    "--thresholds", "1,inf", "--engine-bytes", 0, "--tokenizer-baseline", out,
                                    "--out", tmp_path / "sweep"])
    assert code == 0, err
    s = read_report(tmp_path / "sweep" / "sweep.json")
    assert s["baselines"][-1]["kind"] == "tokenizer" and s["baselines"][-1]["bpb"] > 0


def test_bad_tokenizer_baseline_folder(assets, tmp_path, cli, user_error):
    code, _, err = cli(sweep_main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"],
                                    "--tokenizer-baseline", tmp_path, "--out", tmp_path / "o", "--window", 64, "--engine-bytes", 0])
    user_error(code, err, "--tokenizer-baseline")
