import pytest
import torch

from scratchpad import ModelConfig

TINY_PRESETS = [n for n in ModelConfig.presets() if n.startswith("tiny-")]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
