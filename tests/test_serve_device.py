"""`scratchpad serve` on a device: --device cuda without CUDA and a failed graph capture at start-up
each end in one error line; --eager-fallback serves with eager decode instead."""
import functools

import pytest
import torch

from eval.cli import main as cli
from scratchpad import ModelConfig, build_model, save_model
from tests.test_engine_graphs import fail_capture


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")), folder)
    return str(folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    assert cli(["serve", "--device", "cuda", "--port", "0"]) == 2
    assert capsys.readouterr().err == "error: --device cuda: CUDA is not available on this machine\n"


@pytest.fixture
def graph_step_that_fails(monkeypatch):
    """On CPU the graph step's stand-in (static=True) takes the capture that fails."""
    from infer import engine

    monkeypatch.setattr(engine, "Engine", functools.partial(engine.Engine, static=True))
    fail_capture(monkeypatch)


def test_failed_capture_stops_serve_at_start_up_in_one_line(tiny_model, capsys, graph_step_that_fails):
    pytest.importorskip("fastapi")
    assert cli(["serve", "--model", tiny_model, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "injected capture failure" in err and "--eager-fallback" in err


def test_eager_fallback_serves_eagerly(tiny_model, graph_step_that_fails):
    pytest.importorskip("fastapi")
    from infer.server_app import build_app
    from scratchpad import load_model

    app = build_app(load_model(tiny_model), "tiny", max_batch=2, eager_fallback=True)
    try:
        runner = app.state.engine_thread.scheduler.runner
        assert runner.step_kind == "eager" and "injected capture failure" in runner.fallback
    finally:
        app.state.engine_thread.stop()
