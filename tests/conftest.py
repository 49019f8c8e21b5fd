"""Fixtures every test folder shares: a fixed torch seed per test, and the tiny model the engine
and server tests (tests/test_serve*.py) serve."""
import pytest
import torch

from scratchpad import ModelConfig, build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def model():
    """tiny-sp-fixed-p4 in float64 (no near-tie flips between batched and lone decodes), seed 0,
    eval mode; one per test module. A module that serves another model defines its own `model`."""
    torch.manual_seed(0)
    return build_model(ModelConfig.preset("tiny-sp-fixed-p4")).double().eval()
