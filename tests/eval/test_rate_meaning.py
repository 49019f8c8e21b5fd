"""`--rate R` means one thing everywhere: generate (and serve) calibrating on a prompt and eval
calibrating on scored windows pick the same tau from the same bytes, and that tau fires
scratchpads at a fraction R of ALL the bytes (the rate every report prints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.scoring import entropy_quantile_thresholds
from infer.options import prompt_trigger
from tests.eval.conftest import TEXT, sharpened


@pytest.mark.parametrize("preset", ["tiny-sp-fixed-p4", "tiny-sp-entropy-p8"])
@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_generate_and_eval_pick_one_tau_that_fires_at_the_rate(preset, rate):
    model = sharpened(preset)
    prompt = (TEXT * 4)[: model.cfg.max_seq_len]
    arr = np.frombuffer(prompt + b"\n", dtype=np.uint8)  # one eval window whose inputs are the prompt
    tau_generate = prompt_trigger(model, prompt, rate).tau
    tau_eval = entropy_quantile_thresholds(model, arr, len(prompt), [rate])[0]
    assert tau_generate == tau_eval

    x = torch.tensor(list(prompt), dtype=torch.long).unsqueeze(0)
    with torch.no_grad():
        out = model(x, threshold=tau_generate)
    fired, n = int(out.scratch.sum()), x.numel()
    assert 0 < tau_generate < float("inf") and not bool((out.scratch & out.ends).any())
    assert abs(fired - rate * n) <= 1.5, f"{fired} scratchpads in {n} bytes at rate {rate}"


def test_a_rate_beyond_the_non_closing_bytes_fires_at_all_of_them():
    model = sharpened("tiny-sp-fixed-p4")
    prompt = (TEXT * 4)[: model.cfg.max_seq_len]
    assert prompt_trigger(model, prompt, 0.9).tau == 0.0  # P = 4: at most 3/4 of the bytes can scratch
    assert prompt_trigger(model, prompt, 0.0).tau == float("inf")
