"""Rules the front door keeps: one model-folder rule for every flag that names a model, ModelConfig
documented where it is defined, and the import graph (eval does not reach into train's CLI)."""
import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

from eval.cli import main as cli
from scratchpad import ModelConfig, UserError, build_model, load_model, save_model
from scratchpad.checkpoint import resolve_model_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A training --out folder with different weights in best/ and last/."""
    run = tmp_path_factory.mktemp("run")
    for sub, seed in (("best", 1), ("last", 2)):
        torch.manual_seed(seed)
        save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")), run / sub)
    return run


def test_one_rule_model_folder_or_run_best_then_last(run_folder, tmp_path):
    assert resolve_model_folder(run_folder) == run_folder / "best"
    assert resolve_model_folder(run_folder / "last") == run_folder / "last"
    only_last = tmp_path / "only-last"
    save_model(build_model(ModelConfig.preset("tiny-byte")), only_last / "last")
    assert resolve_model_folder(only_last) == only_last / "last"
    best = load_model(run_folder / "best").state_dict()
    assert all(torch.equal(v, best[k]) for k, v in load_model(run_folder).state_dict().items())
    with pytest.raises(UserError, match="--init-from .*nor a training run"):
        resolve_model_folder(tmp_path, "--init-from")


def test_generate_and_eval_take_a_training_run(run_folder, tmp_path, capsys):
    assert cli(["generate", "x", "--model", str(run_folder), "--max-bytes", "2"]) == 0
    code = cli(["eval", "causality", "--model", str(run_folder), "--positions", "1", "--length", "8", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out.splitlines()[-1])["results"][0]["name"] == str(run_folder)


def test_train_init_from_a_run_uses_its_best(run_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.bin").write_bytes(b"hello world, a tiny corpus for one step. " * 60)
    (corpus / "val.bin").write_bytes(b"hello world, held out bytes for one eval. " * 20)
    out = tmp_path / "ft"
    code = cli(["train", "--init-from", str(run_folder), "--data", str(corpus), "--out", str(out), "--steps", "1",
                "--batch-size", "2", "--seq-len", "32", "--eval-every", "0", "--eval-windows", "1", "--warmup", "0",
                "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    tuned = load_model(out / "last").state_dict()

    def distance(folder):
        ref = load_model(folder).state_dict()
        return sum(float((tuned[k] - v).norm()) for k, v in ref.items())

    assert distance(run_folder / "best") < 0.1 * distance(run_folder / "last")  # one small step away from best/


def test_every_model_config_field_is_documented_where_defined():
    lines = inspect.getsource(ModelConfig).splitlines()
    for f in dataclasses.fields(ModelConfig):
        line = next(x for x in lines if x.strip().startswith(f"{f.name}:"))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 3, f.name


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_eval_and_infer_do_not_import_train_cli():
    for part in ("eval", "infer"):
        for f in (ROOT / part).glob("*.py"):
            assert "train.cli" not in imports_of(f), f
