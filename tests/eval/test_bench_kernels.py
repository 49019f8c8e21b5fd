"""`scratchpad bench kernels` runs on CPU and ends with one JSON line."""
import json

from eval.bench_kernels import main


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
