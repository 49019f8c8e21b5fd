"""torchrun DDP on CPU (gloo): 2 processes train a few steps; the replicas stay identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    text = b"a stitch in time saves nine; all that glitters is not gold.\x00"
    (folder / "train.bin").write_bytes(text * 400)
    (folder / "val.bin").write_bytes(text * 40)
    return folder


# No preset has a structurally unused parameter now, so DDP runs without find_unused_parameters
# (the trainer's probe would switch it on if one appeared).
@pytest.mark.parametrize("preset,unused", [("tiny-sp-fixed-p4", False), ("tiny-study-F-gru-local-dec", False)])
def test_two_process_ddp_replicas_identical(tmp_path, preset, unused):
    data, out = make_corpus(tmp_path / "data"), tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "train.cli",
           "--preset", preset, "--data", str(data), "--out", str(out), "--steps", "6", "--save-every", "3",
           "--grad-accum", "2", "--seq-len", "64", "--batch-size", "4", "--warmup", "2", "--eval-windows", "4", "--lr", "3e-3"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(e for e in log if e["event"] == "start")
    assert start["world_size"] == 2
    assert bool(start["unused_parameters"]) == unused
    ckpts = [e for e in log if e["event"] == "checkpoint"]
    assert [e["step"] for e in ckpts] == [3, 6]
    end = next(e for e in log if e["event"] == "end")
    for e in ckpts + [end]:
        hashes = e["replica_hashes"]
        assert len(hashes) == 2 and hashes[0] == hashes[1], e
    assert ckpts[0]["replica_hashes"][0] != end["replica_hashes"][0]  # it trained
    steps = [e for e in log if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    assert end["bytes"] == 6 * 2 * 2 * 4 * 64  # steps x ranks x micro-batches x batch x seq
    assert "Traceback" not in r.stderr
