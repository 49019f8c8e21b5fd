"""Launch plans of the Triton scan (kernels/scan_plan.py): the derived H100 table, the occupancy
rule it comes from, and the lookup between rows. Pure Python: no kernel runs."""
import pytest
import torch

from kernels.scan_plan import (MIN_CHUNK, PROGRAMS_PER_SM, TABLES, Plan, Row, Table, format_table, launch_plan,
                               occupancy_plan, plan_from_rows)


def programs(B, T, D, plan: Plan) -> int:
    return B * -(-D // plan.block_d) * -(-T // plan.chunk)


def test_table_rows_are_derived_or_measured():
    """A row without a time is derived: it must be exactly what the occupancy rule gives for the
    table's SM count (until a sweep replaces it with a measured row, which has its time)."""
    for name, table in TABLES.items():
        assert table.rows and table.n_sm > 0, name
        for r in table.rows:
            if r.ms is None:
                assert "NOT measured" in table.source, name
                assert Plan(r.chunk, r.block_d, r.num_warps) == occupancy_plan(r.B, r.T, r.D, table.n_sm), r
            else:
                assert r.ms > 0, r


@pytest.mark.parametrize("B,T,D", [(8, 1024, 512), (8, 4096, 1024), (1, 16384, 2048), (8, 256, 256)])
def test_occupancy_plan_fills_an_h100(B, T, D):
    """~8 programs per SM wherever chunks of MIN_CHUNK rows allow it (the old plan ran 128
    single-warp programs at 8x1024x512 on 132 SMs)."""
    plan = occupancy_plan(B, T, D, 132)
    assert plan.chunk == T or (plan.chunk >= MIN_CHUNK and plan.chunk % 16 == 0)
    most = B * -(-D // 32) * -(-T // MIN_CHUNK)
    assert programs(B, T, D, plan) >= min(PROGRAMS_PER_SM * 132, most)
    assert plan.block_d & (plan.block_d - 1) == 0 and 32 <= plan.block_d <= 128 and plan.num_warps == 1


def test_occupancy_plan_prefers_one_chunk():
    """One chunk (3 passes over memory, no carry) whenever the channel blocks alone fill the GPU."""
    assert occupancy_plan(160, 4096, 1024, 132) == Plan(4096, 128, 1)  # 1280 blocks of 128 >= 8 x 132
    assert occupancy_plan(96, 4096, 1024, 132) == Plan(4096, 64, 1)    # 768 of 128, 1536 of 64
    assert occupancy_plan(64, 4096, 1024, 132) == Plan(4096, 32, 1)
    assert occupancy_plan(32, 4096, 1024, 132).chunk < 4096           # 1024 blocks of 32: chunked


def test_nearest_row_keeps_its_number_of_chunks():
    rows = (Row(8, 1024, 512, 128, 64, 2, 0.5), Row(8, 16384, 2048, 1024, 128, 4, 9.0))
    assert plan_from_rows(rows, 8, 1024, 512) == Plan(128, 64, 2)  # a row's own shape: its plan
    assert plan_from_rows(rows, 8, 2048, 512) == Plan(256, 64, 2)  # 8 chunks of the nearer row
    assert plan_from_rows(rows, 16, 16384, 2048) == Plan(1024, 128, 4)


def test_format_table_round_trips():
    rows = (Row(1, 256, 256, 64, 32, 1, None), Row(8, 4096, 1024, 256, 128, 4, 1.25))
    text = format_table("NVIDIA X", 99, 'measured "now"', rows)
    ns = {"Table": Table, "Row": Row}
    exec("tables = {\n" + text + "\n}", ns)
    assert ns["tables"] == {"NVIDIA X": Table(99, 'measured "now"', rows)}


def test_cpu_plan_is_one_chunk():
    """The interpreter runs programs one after another: the fewest, one chunk of the widest block."""
    assert launch_plan(2, 500, 37, torch.device("cpu")) == Plan(500, 64, 1)
    assert launch_plan(2, 5, 300, torch.device("cpu")) == Plan(5, 128, 1)
