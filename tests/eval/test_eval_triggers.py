"""eval triggers: entropy vs stride vs whitespace (vs random) scratchpads at matched count."""
from __future__ import annotations

import pytest
import torch

from eval.report import have_matplotlib
from eval.triggers import TRIGGERS, evenly, main, matched_masks


def test_triggers_end_to_end(assets, tmp_path, cli, read_report):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", 64,
                              "--rates", "0.05,0.2", "--threads", 1, "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "triggers.json")
    assert r["plain"]["scratchpad_rate"] == 0
    assert [row["trigger"] for row in r["rows"]] == list(TRIGGERS) * 2
    for row in r["rows"]:
        for k in ("threshold", "target_rate", "bpb", "scratchpad_rate", "flops_per_byte", "flops_ratio_vs_byte"):
            assert k in row
    for i in (0, 1):
        group = {row["trigger"]: row for row in r["rows"][4 * i : 4 * i + 4]}
        ent = group["entropy"]
        assert ent["scratchpad_rate"] == pytest.approx(ent["target_rate"], abs=0.02)
        for kind in ("stride", "random"):  # matched count in every window
            assert group[kind]["scratchpad_rate"] == ent["scratchpad_rate"]
        assert group["whitespace"]["scratchpad_rate"] <= ent["scratchpad_rate"]
        # a data-blind trigger needs no aux head: same trunk work, fewer FLOPs
        assert group["stride"]["flops_per_byte_split"]["aux"] == 0 < ent["flops_per_byte_split"]["aux"]
        # (attended keys differ a little with where the scratchpads sit)
        assert group["stride"]["flops_per_byte_split"]["trunk"] == pytest.approx(ent["flops_per_byte_split"]["trunk"], rel=0.01)
    assert (tmp_path / "triggers.md").is_file()
    assert (tmp_path / "triggers.png").is_file() == have_matplotlib()


def test_matched_masks_count_and_placement():
    x = torch.tensor([list(b"ab cd ef gh ij kl mn op")], dtype=torch.long)
    ends = torch.zeros_like(x, dtype=torch.bool)
    ends[0, 3::4] = True
    ent = torch.zeros_like(ends)
    ent[0, [0, 1, 2, 4]] = True
    masks = matched_masks(x, ends, ent, torch.Generator().manual_seed(0))
    for kind in ("entropy", "stride", "random"):
        assert int(masks[kind].sum()) == 4 and not (masks[kind] & ends).any(), kind
    ws = masks["whitespace"]
    assert (x[ws] == ord(" ")).all() and not (ws & ends).any()
    assert evenly(torch.arange(10), 5).tolist() == [1, 3, 5, 7, 9]


@pytest.mark.parametrize("flag,val", [("--rates", "0"), ("--rates", "2"), ("--thresholds", "1,inf"), ("--thresholds", "a")])
def test_triggers_bad_input(assets, tmp_path, cli, user_error, flag, val):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], flag, val,
                              "--out", tmp_path])
    user_error(code, err, flag)
