"""The lm-evaluation-harness adapter (eval/harness.py): byte-exact log-likelihoods against a direct
forward, the harness's rolling windows, greedy generation against `scratchpad generate`, and the
accounting it reports."""
from __future__ import annotations

import json
import math

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from eval.harness import ScratchpadHarnessLM
from infer.generate import main as generate_main
from scratchpad import load_model
from scratchpad.errors import UserError

WINDOW = 64
TEXT = ("The committee met on Tuesday to review the budget. After a long discussion about roads, "
        "schools and the new library, the members agreed to")


@pytest.fixture(scope="module")
def model():
    return load_model(None).float().eval()


def requests(kind: str, pairs) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(pairs)]


@torch.no_grad()
def direct_loglikelihood(model, context: str, continuation: str, tau: float, window: int) -> tuple[float, bool]:
    """One unpadded forward over exactly the bytes the model may see: sum of ln p of the
    continuation's bytes (an empty context is the beginning-of-text byte 0)."""
    cont = continuation.encode()
    full = (context.encode() or b"\x00") + cont
    full = full[-(window + 1):]
    x = torch.tensor(list(full), dtype=torch.long)[None]
    logits = model(x[:, :-1], threshold=None if math.isinf(tau) else tau).logits[0].double()
    logp = torch.log_softmax(logits, -1)[-len(cont):]
    target = x[0, -len(cont):]
    return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


def test_registered_under_scratchpad_and_built_from_an_arg_string(model):
    assert get_model("scratchpad") is ScratchpadHarnessLM
    lm = ScratchpadHarnessLM.create_from_arg_string("entropy_threshold=inf,scratch_every=4,batch_size=2,max_length=64")
    s = lm.stats()
    assert (s["threshold"], s["scratch_every"], s["batch_size"], s["window"]) == ("inf", 4, 2, 64)


@pytest.mark.parametrize("tau", [math.inf, 1.5, 0.0])
def test_loglikelihood_equals_a_direct_forward_over_the_same_bytes(model, tau):
    long_context = TEXT * 3                       # far past the 64-byte window: truncated from the left
    pairs = [(long_context, " the plan."),
             ("Prices in Zürich rose by", " 5 € — naïve café 東京"),   # multi-byte UTF-8 continuation
             ("", "The river"),                  # empty context: the beginning-of-text byte
             ("Short", " one")]
    assert len(long_context.encode()) > 3 * WINDOW
    lm = ScratchpadHarnessLM(pretrained=model, entropy_threshold=tau, batch_size=3, max_length=WINDOW)
    got = lm.loglikelihood(requests("loglikelihood", pairs))
    for (ctx, cont), (lp, greedy) in zip(pairs, got):
        ref_lp, ref_greedy = direct_loglikelihood(model, ctx, cont, tau, WINDOW)
        assert lp == pytest.approx(ref_lp, abs=1e-5), (ctx[:20], cont)
        assert greedy == ref_greedy
    # the truncated context really is truncated: the full context scores differently
    untruncated = ScratchpadHarnessLM(pretrained=model, entropy_threshold=tau, max_length=1024)
    assert untruncated.loglikelihood(requests("loglikelihood", pairs[:1]))[0][0] != pytest.approx(got[0][0], abs=1e-3)
    # multi-byte characters are scored byte by byte: 30 bytes, not 20 characters
    assert len(pairs[1][1].encode()) == 30 and len(pairs[1][1]) == 20
    s = lm.stats()
    lengths = [min(len((c.encode() or b"\x00") + d.encode()) - 1, WINDOW) for c, d in pairs]
    assert s["bytes"] == sum(lengths)                 # counted over real bytes, never the batch's padding
    assert s["commits"] == sum(n // model.cfg.patch_size for n in lengths)
    assert (s["scratchpads"] == 0) == math.isinf(tau)


def test_is_greedy_is_true_exactly_for_the_greedy_continuation(model):
    lm = ScratchpadHarnessLM(pretrained=model, entropy_threshold=1.5)
    greedy = lm.scorer.generate([TEXT.encode()], [], 12)[0].decode("utf-8", errors="strict")
    other = greedy[:-1] + ("x" if greedy[-1] != "x" else "y")
    (lp_g, is_g), (lp_o, is_o) = lm.loglikelihood(requests("loglikelihood", [(TEXT, greedy), (TEXT, other)]))
    assert is_g and not is_o and lp_g > lp_o


def test_loglikelihood_rolling_is_the_harness_windows_scored_exactly(model):
    text = TEXT * 2                               # 3+ windows of 64 bytes, the last one short
    raw = text.encode()
    lm = ScratchpadHarnessLM(pretrained=model, entropy_threshold=1.5, max_length=WINDOW)
    (total,) = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [(text,)]))
    # every byte predicted once: the first window from the beginning-of-text byte, each later
    # one with the bytes before it filling the window
    expected = direct_loglikelihood(model, "", raw[:WINDOW].decode(), 1.5, WINDOW)[0]
    for k in range(WINDOW, len(raw), WINDOW):
        expected += direct_loglikelihood(model, raw[:k].decode(), raw[k : k + WINDOW].decode(), 1.5, WINDOW)[0]
    assert total == pytest.approx(expected, abs=1e-4)
    # every window holds a full 64 bytes (the last one re-reads context to fill it)
    assert len(raw) % WINDOW and lm.stats()["bytes"] == math.ceil(len(raw) / WINDOW) * WINDOW


def cli_generate(cli, prompt: str, max_bytes: int, stop: str | None = None) -> dict:
    argv = [prompt, "--temperature", "0", "--max-bytes", max_bytes, "--threshold", "1.5", "--json", "--threads", "1"]
    code, out, err = cli(generate_main, argv + (["--stop", stop] if stop else []))
    assert code == 0, err
    return json.loads(out)


def test_generate_until_stops_at_the_stop_string_and_matches_scratchpad_generate(model, cli):
    prompt = "Once upon a time"
    free = cli_generate(cli, prompt, 48)["outputs"][0]
    lm = ScratchpadHarnessLM(pretrained=model, entropy_threshold=1.5)
    (same,) = lm.generate_until(requests("generate_until", [(prompt, {"until": [], "max_gen_toks": 48})]))
    assert same == free and len(same.encode()) <= 48
    stop = free[10:12]                            # a stop string the greedy output reaches
    cut = free.index(stop)
    stopped = cli_generate(cli, prompt, 48, stop)
    assert stopped["stop_reasons"] == ["stop_string"] and stopped["outputs"][0] == free[: cut + len(stop)]
    outs = lm.generate_until(requests("generate_until", [(prompt, {"until": [stop, "\x01"], "max_gen_toks": 48}),
                                                         (prompt, {"until": "\x01", "max_gen_toks": 5})]))
    # cut before the stop string; max_gen_toks counts bytes
    assert outs == [free[:cut], free.encode()[:5].decode("utf-8", errors="replace")]
    assert lm.stats()["by_request_kind"]["generate_until"]["bytes"] > 0


def test_a_pretrained_folder_that_is_not_a_model_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="pretrained .*not a model folder"):
        ScratchpadHarnessLM.create_from_arg_string(f"pretrained={tmp_path}")
    with pytest.raises(UserError, match="unknown model_args entropy_treshold"):
        ScratchpadHarnessLM(entropy_treshold=1.5)
