"""`scratchpad bench kernels` runs on CPU and ends with one JSON line."""
import json

from eval.bench.kernels import main


def test_bench_smoke(capsys):
    assert main(["--quick", "--no-compile", "--shapes", "2x33x5", "--reps", "1", "--warmup", "0", "--step-d", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(lines[-1])
    assert rec["bench"] == "kernels" and rec["copy_bandwidth_Bps"] > 0
    impls = {r["impl"] for r in rec["scan"]}
    assert {"torch", "hillis-steele"} <= impls and "torch.compile" not in impls
    assert all(r["ms"] > 0 and r["frac_of_copy"] > 0 for r in rec["scan"])
    assert {r["N"] for r in rec["steps"]} == {1, 2, 4, 8, 16, 32, 64}
    assert any("scan fwd+bwd" in line for line in lines[:-1])


def test_bench_bad_shapes():
    import pytest

    from scratchpad.errors import UserError

    with pytest.raises(UserError, match="BxTxD"):
        main(["--shapes", "8x1024"])


def test_kernels_import_nothing_of_the_project():
    """kernels <- scratchpad <- train, infer <- eval: no module in kernels/ imports another part."""
    import ast
    from pathlib import Path

    import kernels

    for f in Path(kernels.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert n.split(".")[0] not in ("scratchpad", "train", "infer", "eval"), f"{f.name} imports {n}"


def test_bench_runs_the_models_dtype_by_default(capsys):
    """The model's SSM layers launch fp32 scans: that is what the benchmark times unless told otherwise."""
    main(["--quick", "--no-compile", "--no-steps", "--shapes", "1x8x4", "--reps", "1", "--warmup", "0"])
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["dtype"] == "float32" and {r["dtype"] for r in rec["scan"]} == {"float32"}
    main(["--quick", "--no-compile", "--no-steps", "--shapes", "1x8x4", "--reps", "1", "--warmup", "0", "--dtype", "bf16"])
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {r["dtype"] for r in rec["scan"]} == {"bfloat16"}
    n = 1 * 8 * 4
    assert all(r["min_bytes"] == (3 if r["op"] == "scan fwd" else 8) * n * 2 for r in rec["scan"])  # 2-byte elements


def test_sweep_picks_the_fastest_plan_and_emits_a_loadable_table():
    """sweep() with a stand-in timer: per shape the fastest candidate, written as a plan-table entry
    that kernels/scan_plan.py reads back to the same plans."""
    from kernels.bench import sweep, sweep_candidates
    from kernels.scan_plan import Plan, Row, Table, format_table, plan_from_rows

    def fake_time(shape, plan):  # fastest: block 64, 2 warps, chunks of 256 (where T allows)
        if plan.block_d == 32 and plan.num_warps == 1 and plan.chunk == 64:
            raise RuntimeError("out of resources")  # a failing candidate is skipped
        return 1.0 + abs(plan.block_d - 64) + abs(plan.num_warps - 2) + abs(plan.chunk - 256) / 1e3

    logged = []
    shapes = [(8, 1024, 512), (1, 128, 40)]
    rows = sweep(shapes, fake_time, log=logged.append)
    assert rows[0] == Row(8, 1024, 512, 256, 64, 2, 1.0e3)
    assert rows[1][:6] == (1, 128, 40, 128, 64, 2)  # T = 128: one chunk is nearest to 256 rows
    assert any("out of resources" in line for line in logged)
    for B, T, D in shapes:
        cands = list(sweep_candidates(T, D))
        assert len(set(cands)) == len(cands) and Plan(T, 32, 1) in cands
        assert all(p.num_warps * 32 <= max(p.block_d, 32) and p.chunk <= T for p in cands)
    ns = {"Table": Table, "Row": Row}
    exec("tables = {\n" + format_table("GPU", 132, "measured", rows) + "\n}", ns)
    loaded = ns["tables"]["GPU"].rows
    assert [plan_from_rows(loaded, B, T, D) for B, T, D in shapes] == [Plan(*r[3:6]) for r in rows]


def test_sweep_needs_cuda():
    import pytest
    import torch

    from scratchpad.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("checks the CPU refusal")
    with pytest.raises(UserError, match="needs a CUDA device"):
        main(["--sweep"])


def test_run_works_from_python_quietly(capsys):
    """kernels.bench.run is the bench without the command: it prints nothing; the head reaches
    on_ready before any cell and every scan cell reaches on_scan_row as it is timed."""
    import torch

    from kernels.bench import STEP_BATCHES, run

    heads, cells = [], []
    rec = run([(1, 8, 4)], None, torch.device("cpu"), quick=True, reps=1, warmup=0, step_d=8, compile_torch=False,
              on_ready=heads.append, on_scan_row=lambda r: cells.append((len(heads), r)))
    assert capsys.readouterr() == ("", "")
    assert len(heads) == 1 and heads[0]["cuda"] is False and heads[0]["copy_bandwidth_Bps"] == rec["copy_bandwidth_Bps"]
    assert [r for _, r in cells] == rec["scan"] and all(n == 1 for n, _ in cells)
    assert [(r["op"], r["impl"]) for r in rec["scan"]] == [("scan fwd", "torch"), ("scan fwd+bwd", "torch"),
                                                           ("scan fwd", "hillis-steele"), ("scan fwd+bwd", "hillis-steele")]
    assert [r["N"] for r in rec["steps"]] == STEP_BATCHES and all(r["us"] > 0 and r["D"] == 8 for r in rec["steps"])


def test_sweep_record_prints_a_plan_table_that_loads_back(capsys):
    """The command renders a sweep's record (kernels.bench.run_sweep, CUDA only) as the winners and
    a kernels/scan_plan.py TABLES entry that reads back to the same plans."""
    from eval.bench.kernels import print_sweep
    from kernels.scan_plan import Plan, Row, Table, plan_from_rows

    rows = [dict(B=8, T=1024, D=512, chunk=256, block_d=64, num_warps=2, ms=0.5, gbps=100.0, frac_of_copy=0.5)]
    print_sweep({"device": "GPU", "n_sm": 132, "dtype": "float32", "rows": rows})
    out = capsys.readouterr().out
    head, entry = out.split("kernels/scan_plan.py TABLES entry for this device:\n")
    assert "chunk   256  block_d  64  warps 2" in head and "50.0% of copy" in head
    ns = {"Table": Table, "Row": Row}
    exec("tables = {\n" + entry + "\n}", ns)
    assert plan_from_rows(ns["tables"]["GPU"].rows, 8, 1024, 512) == Plan(256, 64, 2)
