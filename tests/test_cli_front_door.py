"""The `scratchpad` command as a new user meets it: bad input is one `error:` line with exit code 2
(run as a real subprocess), output piped into `head` ends quietly, help is complete."""
import subprocess
import sys

import pytest

from eval.cli import COMMANDS, main as cli
from scratchpad import ModelConfig, build_model, save_model


def scratchpad(*args, **kw):
    return subprocess.run([sys.executable, "-m", "eval.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=180, **kw)


def assert_one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("args", [
    ["generate", "x", "--threads", "-1"],
    ["bench", "generate", "--threads", "-1"],
    ["bench", "kernels", "--threads", "-1"],
    ["generate", "x", "--max-bytes", "many"],                        # an argparse type error
    ["eval", "bpb", "--data", "d", "--out", "o", "--batch-size", "2.5"],
    ["eval"],                                                        # bare group: lists its subcommands
])
def test_bad_input_is_one_error_line(args):
    proc = scratchpad(*args)
    assert_one_error_line(proc)
    if args == ["eval"]:
        assert all(w in proc.stderr for w in ("causality", "bpb", "sweep", "tokenizer"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")), folder)
    return str(folder)


@pytest.mark.parametrize("args", [
    ["generate", "hello", "--max-bytes", "3000", "--no-eos"],
    ["eval", "causality", "--preset", "tiny-byte", "--positions", "1"],
])
def test_reader_closing_the_pipe_is_not_a_traceback(args, tiny_model):
    if args[0] == "generate":
        args = args + ["--model", tiny_model]
    proc = subprocess.Popen([sys.executable, "-m", "eval.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -c 0`: the reader is gone before the first write
    _, err = proc.communicate(timeout=180)
    err = err.decode()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def help_text(capsys, words):
    try:
        code = cli([*words, "--help"])
    except SystemExit as e:
        code = e.code
    assert code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("words", [w for w, _, _ in COMMANDS], ids=lambda w: " ".join(w))
def test_help_names_the_command_and_is_whole(capsys, words):
    text = help_text(capsys, words)
    assert "python -m" not in text and f"usage: scratchpad {' '.join(words)}" in text
    description = " ".join(text.split("\n\n")[1].split())
    assert description.endswith((".", ")", "?")), description  # not cut off mid-sentence


def test_generate_help_shows_every_default(capsys):
    text = " ".join(help_text(capsys, ["generate"]).split())
    for flag, default in (("--max-bytes", "256"), ("--temperature", "0.0"), ("--top-k", "0"), ("--top-p", "1.0"),
                          ("--threshold", "1.5"), ("--threads", "1")):
        assert flag in text and f"default: {default}" in text or f"default {default}" in text, flag
    assert "--seed S sampling seed" in text


def test_temperature_default_is_shared():
    import inspect

    from infer import Engine
    from infer.generate import build_parser
    from infer.sampling import DEFAULT_TEMPERATURE

    assert inspect.signature(Engine.generate).parameters["temperature"].default == DEFAULT_TEMPERATURE
    assert build_parser().get_default("temperature") == DEFAULT_TEMPERATURE


def test_eval_accepts_the_generate_flag_names(capsys):
    text = help_text(capsys, ["eval", "bpb"])
    assert "--entropy-threshold" in text and "--scratchpad-budget" in text
