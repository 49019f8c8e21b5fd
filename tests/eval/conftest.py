"""Fixtures for the eval command tests: tiny models and tiny corpora written to a temp folder once
per session, and a runner that calls a command's main in-process like the console would."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scratchpad import ModelConfig, build_model, save_model
from scratchpad.errors import run_cli

TEXT = (b"def add(x, y):\n    total = x + y\n    return total\n\x00"
        b"The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!\n\x00")
PY_DOC = b'''import os


def area(w, h):
    """Area of a rectangle."""
    # width times height
    result = w * h
    return result


class Box:
    def volume(self, d):
        v = self.w * self.h * d
        return v
'''


def write_corpus(folder: Path, train: bytes, val: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.bin").write_bytes(train)
    (folder / "val.bin").write_bytes(val)
    return folder


def sharpened(name: str, factor: float = 6.0, seed: int = 0):
    """A random tiny model whose aux head is scaled up so its entropy varies from byte to byte
    (an untrained head is near-uniform everywhere and every tau would behave the same)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig.preset(name))
    with torch.no_grad():
        model.aux_head.weight.mul_(factor)
    return model.eval()


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_assets")
    corpus = write_corpus(root / "corpus", TEXT * 120, TEXT * 12)             # ~1.8 KB val
    code = write_corpus(root / "code", (PY_DOC + b"\x00") * 40, (b"int main(void) { return 0; }\n\x00" + PY_DOC + b"\x00") * 3)
    models = {}
    for name in ("tiny-sp-fixed-p4", "tiny-sp-entropy-p8", "tiny-sp-whitespace-p8"):
        models[name] = save_model(sharpened(name), root / name)
    torch.manual_seed(0)
    models["tiny-byte"] = save_model(build_model(ModelConfig.preset("tiny-byte")), root / "tiny-byte")
    torch.manual_seed(0)
    models["tiny-study-A-fixed-mean"] = save_model(build_model(ModelConfig.preset("tiny-study-A-fixed-mean")), root / "study-A")
    return dict(root=root, corpus=corpus, code=code, models=models)


@pytest.fixture
def cli(capsys):
    """cli(main, argv) -> (exit code, stdout, stderr), in-process through run_cli like the console."""

    def call(main, argv):
        code = run_cli(main, [str(a) for a in argv])
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return call


@pytest.fixture
def user_error():
    """user_error(code, err, *needles): exit code 2 and exactly one 'error: ...' line on stderr."""

    def check(code, err, *needles):
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err
        for n in needles:
            assert n in lines[0], lines[0]

    return check


def strict_json(path: Path) -> dict:
    """Parse a report's JSON refusing NaN/Infinity (the reports promise strict JSON)."""

    def bad(token):
        raise AssertionError(f"{path}: non-strict JSON constant {token}")

    return json.loads(Path(path).read_text(), parse_constant=bad)


@pytest.fixture
def read_report():
    return strict_json
