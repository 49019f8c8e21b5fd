"""SCRATCHPAD_KERNELS dispatch, lazy triton import, input validation of the public functions."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_testutil import CUDA, needs_triton, rel_err

import kernels
from kernels import backend_for, diagonal_scan, kernel_mode, scratch_step

ROOT = Path(__file__).resolve().parents[2]


def test_public_api():
    for name in ("diagonal_scan", "scratch_step", "diagonal_scan_chunked", "scratch_step_torch", "diagonal_scan_naive",
                 "scratch_step_naive"):
        assert callable(getattr(kernels, name)) and name in kernels.__all__


def test_modes(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("SCRATCHPAD_KERNELS", raising=False)
    assert kernel_mode() == "auto" and backend_for(cpu) == "torch"
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "torch")
    assert backend_for(cpu) == "torch"
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "Triton")
    assert backend_for(cpu) == "triton" and backend_for(cpu.double()) == "torch"  # fp64 stays on torch
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "cuda")
    with pytest.raises(ValueError, match="auto|triton|torch"):
        diagonal_scan(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))


@needs_triton
def test_triton_mode_on_cpu_under_interpreter(monkeypatch):
    if CUDA:
        pytest.skip("CPU interpreter check")
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "triton")
    a = torch.rand(2, 9, 5)
    b = torch.randn(2, 9, 5)
    h, f = diagonal_scan(a, b)
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "torch")
    h2, f2 = diagonal_scan(a, b)
    assert rel_err(h, h2) < 1e-6 and rel_err(f, f2) < 1e-6


def test_import_is_lazy_and_triton_on_cpu_needs_the_interpreter():
    """In a fresh interpreter without TRITON_INTERPRET: importing kernels does not import triton, the
    torch path works, and SCRATCHPAD_KERNELS=triton on CPU tensors raises a clear error."""
    code = (
        "import sys, torch, kernels\n"
        "assert 'triton' not in sys.modules, 'kernels imported triton'\n"
        "a = torch.rand(1, 4, 3)\n"
        "kernels.diagonal_scan(a, a)\n"
        "kernels.scratch_step(a, a, a)\n"
        "assert 'triton' not in sys.modules\n"
        "import os; os.environ['SCRATCHPAD_KERNELS'] = 'triton'\n"
        "try:\n"
        "    kernels.diagonal_scan(a, a)\n"
        "except RuntimeError as e:\n"
        "    print('RAISED', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "SCRATCHPAD_KERNELS")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "RAISED" in out.stdout and "TRITON_INTERPRET=1" in out.stdout


@pytest.mark.parametrize("mode", ["torch", "auto"])
def test_validation(monkeypatch, mode):
    monkeypatch.setenv("SCRATCHPAD_KERNELS", mode)
    x = torch.zeros(2, 3, 4)
    cases = [
        ((x, torch.zeros(2, 3, 5)), "same shape"),
        ((x, x.half()), "same dtype"),
        ((x.int(), x.int()), "fp16/bf16/fp32/fp64"),
        ((x[0], x[0]), "3-D"),
        ((x, x, torch.zeros(2, 5)), r"initial_state must have shape \(2, 4\)"),
        ((x.half(), x.half(), torch.zeros(2, 4, dtype=torch.float64)), "initial_state must have dtype"),
        ((x, x.to("meta")), "same device"),
        ((x, x, torch.zeros(2, 4, device="meta")), "initial_state must be on"),
        (([1.0], x), "must be a torch.Tensor"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            diagonal_scan(*args)
    with pytest.raises(ValueError, match="states must have shape"):
        scratch_step(x, x, x[0])


def test_dispatch_empty_scan_returns_the_initial_state(monkeypatch):
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "auto")
    a = torch.rand(2, 0, 3)
    h0 = torch.randn(2, 3)
    h, f = diagonal_scan(a, a, h0)
    assert h.shape == (2, 0, 3) and torch.equal(f, h0)


def test_check_backend_refuses_only_what_triton_cannot_run(monkeypatch):
    monkeypatch.setenv("SCRATCHPAD_KERNELS", "triton")
    with pytest.raises(kernels.KernelUnavailable, match="needs a CUDA device"):
        kernels.check_backend(torch.device("meta"))
    for mode in ("auto", "torch"):  # these fall back to the torch path, whatever the device
        monkeypatch.setenv("SCRATCHPAD_KERNELS", mode)
        kernels.check_backend(torch.device("meta"))


# the CLI under a fresh interpreter, with `import triton` failing as it does where triton is not installed
NO_TRITON = "import sys; sys.modules['triton'] = None; from eval.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("problem", ["no interpreter", "no triton"])
@pytest.mark.parametrize("command", ["generate", "train"])
def test_cli_says_in_one_line_when_forced_triton_cannot_run(tmp_path, problem, command):
    """SCRATCHPAD_KERNELS=triton on a CPU without the interpreter, or without triton: `scratchpad
    generate` and `scratchpad train` stop before any work with one error line and exit code 2."""
    args = {"generate": ["generate", "hi", "--max-bytes", "2"],
            "train": ["train", "--data", str(tmp_path / "corpus.bin"), "--out", str(tmp_path / "out"), "--device", "cpu"]}[command]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(SCRATCHPAD_KERNELS="triton", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    prog = ["-c", NO_TRITON] if problem == "no triton" else ["-m", "eval.cli"]
    out = subprocess.run([sys.executable, *prog, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    want = "triton cannot be imported" if problem == "no triton" else "TRITON_INTERPRET=1"
    assert lines[0].startswith("error: SCRATCHPAD_KERNELS=triton") and want in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
