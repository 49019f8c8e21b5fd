"""`scratchpad bench generate`: both models at every batch size, one JSON line with the speedup."""
from __future__ import annotations

import json

from eval import bench_generate


def test_rows_and_json_line_carry_both_models_and_the_speedup(capsys):
    assert bench_generate.main(["--max-bytes", "6", "--batch-sizes", "1,2", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [ln.split()[:2] for ln in lines[2:-1]]
    assert rows == [["sp", "1"], ["byte", "1"], ["sp", "2"], ["byte", "2"]]
    summary = json.loads(lines[-1])
    rates = summary["bytes_per_second"]
    assert set(rates) == {"sp_b1", "byte_b1", "sp_b2", "byte_b2"} and all(v > 0 for v in rates.values())
    for key, b in (("speedup_vs_byte", 1), ("speedup_vs_byte_b2", 2)):
        ratio = rates[f"sp_b{b}"] / rates[f"byte_b{b}"]  # of the printed (rounded) rates
        assert abs(summary[key] / ratio - 1) < 1e-3
    assert summary["threads"] == 1 and summary["compiled"] is False
