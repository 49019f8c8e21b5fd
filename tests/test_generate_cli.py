"""`scratchpad generate`: streaming, stats, and one clear error line for each bad input."""
import json
import subprocess
import sys

import pytest

from eval.cli import main as cli
from scratchpad import ModelConfig, build_model, save_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")), folder)
    return str(folder)


def run(capsys, *args):
    code = cli(["generate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generates_and_reports_stats(tiny_model, capsys):
    code, out, err = run(capsys, "hello", "--model", tiny_model, "--max-bytes", "12", "--seed", "1", "--no-eos", "--stats")
    assert code == 0 and out.endswith("\n")
    assert "scratchpad rate" in err and "byte baseline" in err


def test_json_batch_and_budget(tiny_model, capsys):
    code, out, _ = run(capsys, "some prompt text", "--model", tiny_model, "--max-bytes", "6", "--batch", "3",
                       "--json", "--no-eos", "--seed", "0", "--scratchpad-budget", "0.25")
    assert code == 0
    data = json.loads(out)
    assert len(data["outputs"]) == 3 and data["stats"]["generated_bytes"] == 18
    assert 0 <= data["stats"]["scratchpad_rate"] <= 1


def test_empty_binary_and_overlong_prompts(tiny_model, tmp_path, capsys):
    assert run(capsys, "", "--model", tiny_model, "--max-bytes", "4", "--no-eos")[0] == 0
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)))
    assert run(capsys, "--prompt-file", str(binary), "--model", tiny_model, "--max-bytes", "4")[0] == 0
    raw = subprocess.run([sys.executable, "-m", "infer.generate", "--prompt-file", str(binary), "--model", tiny_model,
                          "--max-bytes", "5", "--raw", "--no-eos"], capture_output=True)
    assert raw.returncode == 0 and len(raw.stdout) == 5 + 1  # raw bytes plus the final newline
    long = tmp_path / "long.txt"
    long.write_bytes(b"a" * 2000)
    code, _, err = run(capsys, "--prompt-file", str(long), "--model", tiny_model, "--max-bytes", "4")
    assert code == 0 and "keeping its last" in err


@pytest.mark.parametrize("flags, message", [
    (["-t", "-1"], "entropy-threshold"),
    (["-t", "nan"], "entropy-threshold"),
    (["-t", "abc"], "entropy-threshold"),
    (["--max-bytes", "0"], "max-bytes"),
    (["--temperature", "-2"], "temperature"),
    (["--top-p", "0"], "top-p"),
    (["--prompt-file", "/no/such/file"], "prompt file"),
])
def test_bad_flags_give_one_line(tiny_model, capsys, flags, message):
    code, _, err = run(capsys, *(["x"] if "--prompt-file" not in flags else []), "--model", tiny_model, *flags)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_bad_model_folders(tiny_model, tmp_path, capsys):
    code, _, err = run(capsys, "x", "--model", str(tmp_path / "missing"))
    assert code == 2 and "no such model folder" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(open(f"{tiny_model}/config.json").read())
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    code, _, err = run(capsys, "x", "--model", str(broken))
    assert code == 2 and "model.safetensors" in err and err.count("\n") == 1


def test_module_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "infer.generate", "x", "--model", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_packaged_default_model_generates(capsys):
    from scratchpad import load_model

    model = load_model(None)
    assert model.cfg.scratchpad and model.cfg.patcher == "fixed"
    code, out, _ = run(capsys, "def main(", "--max-bytes", "8", "--seed", "0", "--no-eos")
    assert code == 0 and len(out) > 1
