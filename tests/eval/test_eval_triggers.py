"""eval triggers: entropy vs stride vs whitespace (vs random) scratchpads at matched count."""
from __future__ import annotations

import pytest
import torch

from eval.experiments.triggers import TRIGGERS, evenly, matched_masks
from eval.experiments.triggers_cli import main
from eval.report import have_matplotlib
from scratchpad import load_model
from scratchpad.accounting import costs


def test_triggers_end_to_end(assets, tmp_path, cli, read_report):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", 64,
                              "--rates", "0.05,0.2", "--every", "1,2", "--threads", 1, "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "triggers.json")
    model_cfg = load_model(assets["models"]["tiny-sp-fixed-p4"]).cfg
    assert r["plain"]["scratchpad_rate"] == 0
    assert [row["trigger"] for row in r["rows"]] == list(TRIGGERS) * 2
    for row in r["rows"]:
        for k in ("threshold", "target_rate", "bpb", "scratchpad_rate", "flops_per_byte", "flops_ratio_vs_byte"):
            assert k in row
    n = len(TRIGGERS)
    for i in (0, 1):
        group = {row["trigger"]: row for row in r["rows"][n * i : n * i + n]}
        ent = group["entropy"]
        assert ent["scratchpad_rate"] == pytest.approx(ent["target_rate"], abs=0.02)
        for kind in ("stride", "random", "stale"):  # matched count in every window
            assert group[kind]["scratchpad_rate"] == ent["scratchpad_rate"]
        assert group["whitespace"]["scratchpad_rate"] <= ent["scratchpad_rate"]
        # a data-blind trigger needs no aux head: same trunk work, fewer FLOPs
        assert group["stride"]["flops_per_byte_split"]["aux"] == 0 < ent["flops_per_byte_split"]["aux"]
        # (attended keys differ a little with where the scratchpads sit)
        assert group["stride"]["flops_per_byte_split"]["trunk"] == pytest.approx(ent["flops_per_byte_split"]["trunk"], rel=0.01)
        # the stale trigger pays one more decoder pass per scratchpad, nothing else
        stale, stride = group["stale"], group["stride"]
        extra = stale["flops_per_byte_split"]["decoder"] - stride["flops_per_byte_split"]["decoder"]
        assert extra > 0 and extra == pytest.approx(2 * costs(model_cfg).decoder_byte * stale["scratchpad_rate"])
        assert stale["flops_per_byte_split"]["aux"] == 0
    above = {e["threshold"]: e for e in r["entropy_above"]}
    assert {1.5, 3.0} <= set(above)
    for t, lo in zip(sorted(above), sorted(above)[1:]):  # fewer bytes above a higher tau
        assert above[lo]["aux_rate"] <= above[t]["aux_rate"] and above[lo]["stale_rate"] <= above[t]["stale_rate"]
    # at a rate's own tau the aux count is the entropy trigger's scratchpads
    for row in r["rows"]:
        if row["trigger"] == "entropy":
            assert above[row["threshold"]]["aux_rate"] == pytest.approx(row["scratchpad_rate"])
    # schedules at their own rates: P = 4, so every 1st byte of a patch = all 3 that do not close it
    sched = {(r["trigger"], r["setting"]): r for r in r["schedules"]}
    assert set(sched) == {("entropy", 1.5), ("entropy", 3.0), ("every", 1), ("every", 2)}
    assert sched[("every", 1)]["scratchpad_rate"] == pytest.approx(0.75, abs=0.005)  # (a short last window)
    assert sched[("every", 2)]["scratchpad_rate"] == pytest.approx(0.25, abs=0.005)
    assert sched[("entropy", 1.5)]["scratchpad_rate"] == pytest.approx(above[1.5]["aux_rate"])
    assert sched[("every", 1)]["flops_per_byte_split"]["aux"] == 0  # this model's decoder does not read the aux stack
    for row in sched.values():
        assert row["diff_vs_none"] == pytest.approx(row["bpb"] - r["plain"]["bpb"], abs=1e-9) and row["diff_vs_none_se"] >= 0
    assert (tmp_path / "triggers.md").is_file()
    assert (tmp_path / "triggers.png").is_file() == have_matplotlib()


def test_matched_masks_count_and_placement():
    x = torch.tensor([list(b"ab cd ef gh ij kl mn op")], dtype=torch.long)
    ends = torch.zeros_like(x, dtype=torch.bool)
    ends[0, 3::4] = True
    ent = torch.zeros_like(ends)
    ent[0, [0, 1, 2, 4]] = True
    stale = torch.arange(x.shape[1], dtype=torch.float).flip(0).unsqueeze(0)  # earlier bytes less certain
    masks = matched_masks(x, ends, ent, torch.Generator().manual_seed(0), stale)
    assert masks["stale"][0].nonzero().flatten().tolist() == [0, 1, 2, 4]  # the 4 most uncertain free bytes
    for kind in ("entropy", "stride", "random", "stale"):
        assert int(masks[kind].sum()) == 4 and not (masks[kind] & ends).any(), kind
    ws = masks["whitespace"]
    assert (x[ws] == ord(" ")).all() and not (ws & ends).any()
    assert evenly(torch.arange(10), 5).tolist() == [1, 3, 5, 7, 9]


@pytest.mark.parametrize("flag,val", [("--rates", "0"), ("--rates", "2"), ("--thresholds", "1,inf"), ("--thresholds", "a"),
                                      ("--every", "0"), ("--every", "x")])
def test_triggers_bad_input(assets, tmp_path, cli, user_error, flag, val):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], flag, val,
                              "--out", tmp_path])
    user_error(code, err, flag)
