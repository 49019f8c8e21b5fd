"""eval.bench.train.run: the training-throughput bench from Python, without the command."""
from __future__ import annotations

import json

import torch

from eval.bench.train import run, synthetic_text
from eval.bench.train_cli import main


def test_run_works_from_python_quietly(capsys):
    """run parses nothing and prints nothing; each row reaches on_row as it is measured, a
    scratchpad preset gets its tau = inf row after the others, and the numbers add up."""
    data = synthetic_text(1 << 14)
    seen = []
    res = run(["tiny-sp-fixed-p4", "tiny-byte"], data, batch=2, seq_len=32, warmup=0, steps=2,
              device=torch.device("cpu"), on_row=seen.append)
    assert capsys.readouterr() == ("", "")
    assert seen == res.rows
    assert [(r["preset"], r["scratchpads"]) for r in res.rows] == [("tiny-sp-fixed-p4", True), ("tiny-byte", False),
                                                                   ("tiny-sp-fixed-p4", False)]
    for r in res.rows:
        assert (r["batch"], r["seq_len"], len(r["losses"])) == (2, 32, 2)
        assert r["bytes_per_s"] > 0 and r["ms_per_step"] > 0 and r["model_flops_per_step"] > 0
    assert res.rows[0]["scratch_rate"] > 0 and res.rows[1]["scratch_rate"] == res.rows[2]["scratch_rate"] == 0
    assert res.rows[1]["bytes_per_patch"] == 1  # the byte baseline: every byte a patch
    rec = res.json()
    assert rec["bench"] == "train" and rec["results"] is res.rows and rec["threads"] == torch.get_num_threads()
    assert (rec["batch"], rec["seq_len"], rec["warmup"], rec["steps"], rec["device"]) == (2, 32, 0, 2, "cpu")


def test_plain_false_leaves_out_the_tau_inf_rows_and_the_table_labels_them(capsys):
    res = run(["tiny-sp-fixed-p4"], synthetic_text(1 << 14), batch=1, seq_len=16, warmup=0, steps=1,
              device=torch.device("cpu"), plain=False)
    assert [r["scratchpads"] for r in res.rows] == [True]
    assert main(["--presets", "tiny-sp-fixed-p4", "--seq-len", "16", "--batch-size", "1", "--warmup", "0",
                 "--steps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [ln[:26].rstrip() for ln in out[3:-1]] == ["tiny-sp-fixed-p4", "tiny-sp-fixed-p4 tau=inf"]
    assert len(json.loads(out[-1])["results"]) == 2
