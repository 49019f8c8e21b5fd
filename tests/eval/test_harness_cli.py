"""`scratchpad eval harness` end to end on the committed local task, its bad-input errors, and the
task builder (eval/harness_tasks/build.py)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from eval.cli import main as console
from eval.harness import ScratchpadHarnessLM
from eval.harness_tasks.build import CHOICES, build
from scratchpad import load_model

TASKS = Path(__file__).resolve().parents[2] / "eval" / "harness_tasks"
ITEMS = [json.loads(line) for line in (TASKS / "sp_completion" / "sp_completion.jsonl").read_text().splitlines()]


def test_harness_runs_the_local_task_per_tau_and_its_accuracy_is_the_adapters_choice(cli, read_report, tmp_path):
    out = tmp_path / "report"
    code, stdout, err = cli(console, ["eval", "harness", "--tasks", "sp_completion", "--include-path", TASKS,
                                      "--limit", 6, "--threshold", "inf,0", "--batch-size", 4, "--out", out])
    assert code == 0, err
    report = read_report(out / "harness.json")
    runs = report["runs"]
    assert [r["threshold"] for r in runs] == ["inf", 0.0]
    # the harness's accuracy is the fraction of items whose gold choice the adapter scores highest
    model = load_model(None).float().eval()
    for run in runs:
        lm = ScratchpadHarnessLM(pretrained=model, entropy_threshold=run["threshold"])
        hits, gold_nats, gold_bytes = 0, 0.0, 0
        for item in ITEMS[:6]:
            scores = [lp for lp, _ in lm.scorer.loglikelihood([(item["context"].encode(), c.encode())
                                                               for c in item["choices"]])]
            hits += max(range(CHOICES), key=scores.__getitem__) == item["label"]
            gold_nats -= scores[item["label"]]
            gold_bytes += len(item["choices"][item["label"]].encode())
        assert run["harness"]["results"]["sp_completion"]["acc,none"] == pytest.approx(hits / 6)
        assert run["gold_bpb"]["sp_completion"] == pytest.approx(gold_nats / gold_bytes / math.log(2), rel=1e-9)
        assert run["harness"]["n-samples"]["sp_completion"]["effective"] == 6
    acc = [r["harness"]["results"]["sp_completion"]["acc,none"] for r in runs]
    paired = runs[1]["paired_vs_first"]["sp_completion Δacc"]
    assert paired["mean"] == pytest.approx(acc[1] - acc[0]) and paired["documents"] == 6
    inf, zero = (r["scratchpad"] for r in runs)
    assert inf["scratchpad_rate"] == 0 < zero["scratchpad_rate"]
    assert inf["bytes"] == zero["bytes"] > 0          # the same bytes scored at both taus
    assert inf["trunk_calls_per_byte"] < zero["trunk_calls_per_byte"] <= 1
    assert inf["flops_ratio_vs_byte"] < zero["flops_ratio_vs_byte"]
    md = (out / "harness.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ∞ ") or line.startswith("| 0 ")]
    assert len(rows) == 2 and "sp_completion acc" in md and "× byte baseline" in md
    assert "harness.md" in stdout


@pytest.mark.parametrize("argv, needle", [
    (["--tasks", "sp_completoin", "--include-path", TASKS], "unknown task 'sp_completoin'"),
    (["--tasks", "sp_completion", "--include-path", "/no/such/tasks"], "--include-path /no/such/tasks: no such folder"),
    (["--tasks", "sp_completion", "--include-path", TASKS, "--model", TASKS], "not a model folder"),
    (["--tasks", "sp_completion", "--include-path", TASKS, "--threshold", "1.5,-1"], "--threshold"),
    (["--tasks", "sp_completion", "--include-path", TASKS, "--limit", "2.5"], "--limit"),
    (["--tasks", "sp_completion", "--include-path", TASKS, "--limit", "inf"], "--limit"),
])
def test_bad_input_is_one_clear_line(cli, user_error, tmp_path, argv, needle):
    code, _, err = cli(console, ["eval", "harness", *argv, "--out", tmp_path / "r"])
    user_error(code, err, needle)


def test_without_lm_eval_the_command_says_how_to_install_it(cli, user_error, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)     # import lm_eval now raises ModuleNotFoundError
    code, _, err = cli(console, ["eval", "harness", "--tasks", "sp_completion", "--out", tmp_path / "r"])
    user_error(code, err, "needs lm-eval", "[harness]")


def test_the_task_builder_cuts_documents_into_a_context_and_four_real_choices():
    docs = [f"Document {i} says that the weather in town number {i} was rather pleasant and mild "
            f"for most of the week, with light winds from the west near {i} hills." for i in range(12)]
    val = "\x00".join(docs).encode() + b"\x00"
    rows = build(val, 8, seed=3)
    assert rows == build(val, 8, seed=3) and len(rows) == 8
    for r in rows:
        gold = r["choices"][r["label"]]
        assert len(r["choices"]) == CHOICES == len(set(r["choices"]))
        assert gold.startswith(" ") and any((r["context"] + gold) in d for d in docs)
        assert len(r["context"].encode()) >= 48
