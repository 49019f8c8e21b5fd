"""Every preset passes the causality audit; the study's unmasked soft assignment fails it."""
import pytest
import torch

from eval.causality import audit_bytes, audit_model, calibrate_entropy_patcher
from eval.cli import main as cli
from scratchpad import ModelConfig, build_model
from scratchpad.model import ScratchpadLM


class LeakySoftAssignment(ScratchpadLM):
    """Leak fixture, kept only here: the study's original dense soft assignment. Patch j pools
    every byte of the sequence by its Gaussian weight, so bytes after the patch flow into it."""

    def pool_spans(self, h, start, end, patch_index, coord):
        centre = patch_index.to(h.dtype) + 0.5
        logw = -((coord.unsqueeze(1) - centre.unsqueeze(-1)) ** 2) / (2 * self.cfg.soft_sigma**2)
        pooled = torch.softmax(logw, dim=-1) @ h
        return self.pooling.proj(pooled)


@pytest.mark.parametrize("name", ModelConfig.tiny_presets())
def test_every_preset_passes_the_audit(name):
    model = build_model(ModelConfig.preset(name)).double()
    calibrate_entropy_patcher(model, audit_bytes(40, torch.Generator().manual_seed(1)))
    result = audit_model(model, name, length=40, positions=4, seed=1)
    assert result.passed, result.line()


def test_leak_fixture_fails_the_audit():
    model = LeakySoftAssignment(ModelConfig.preset("tiny-study-C-soft-boundary"))
    result = audit_model(model, "leaky", length=40, positions=4, seed=1)
    assert not result.passed
    assert result.first_leak is not None and result.first_leak < 39


def test_cli_reports_and_rejects_unknown_preset(capsys):
    assert cli(["eval", "causality", "--preset", "tiny-sp-fixed-p4", "--length", "16"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert cli(["eval", "causality", "--preset", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset" in err
