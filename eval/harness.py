"""An lm-evaluation-harness model for scratchpad models, registered as `scratchpad` on import.

    import eval.harness, lm_eval
    lm_eval.simple_evaluate(model="scratchpad", model_args="entropy_threshold=1.5", tasks=["arc_easy"])

model_args: pretrained=DIR (a model folder or a training --out folder; default: the packaged
model; a loaded model module is accepted too, and keeps its own device and dtype),
entropy_threshold (nats, 'inf' = none; default 1.5), scratch_every (a scratchpad at every k-th
byte of a patch; 0 = none), device (cpu, cuda), dtype (fp32, bf16), batch_size (rows per forward
and per generation batch; 'auto' = 8), max_length (bytes of context a forward holds; default
min(max_seq_len, 1024)).

Strings are UTF-8 bytes and scores are exact sums over bytes (eval/harness_scoring.py):
loglikelihood by the batched parallel forward at the requested tau, loglikelihood_rolling in the
harness's disjoint rolling windows, generate_until greedily through the engine with the request's
stop strings (`until`) and max_gen_toks read as a number of bytes. `stats()` gives the run's
scratchpad rate and FLOPs per byte against the byte baseline (scratchpad/accounting.py).
"""
from __future__ import annotations

import sys

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from eval.harness_scoring import HarnessScorer
from scratchpad import load_model
from scratchpad.errors import UserError
from scratchpad.precision import check_dtype, torch_dtype
from scratchpad.vocab import DOCUMENT_SEPARATOR

DEFAULT_MAX_GEN_BYTES = 256


def model_device(name) -> torch.device:
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise UserError(f"device must be cpu or cuda, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda: CUDA is not available on this machine")
    return device


def as_int(value, name: str, default: int | None):
    """A model_arg that must be a whole number (the harness passes strings, ints or floats)."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number != number or number != int(number):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(number)


@register_model("scratchpad")
class ScratchpadHarnessLM(LM):
    def __init__(self, pretrained=None, entropy_threshold=1.5, scratch_every=0, device="cpu", dtype="fp32",
                 batch_size=8, max_length=None, max_batch_size=None, **unknown):
        """max_batch_size (the harness passes it) is accepted and unused: batch_size is fixed."""
        super().__init__()
        if unknown:
            raise UserError(f"unknown model_args {', '.join(sorted(unknown))}; known: pretrained, entropy_threshold, "
                            "scratch_every, device, dtype, batch_size, max_length")
        dev = model_device(device)
        if isinstance(pretrained, torch.nn.Module):
            model = pretrained.eval()
        else:
            note = check_dtype(str(dtype), dev)
            if note:
                print(note, file=sys.stderr)
            model = load_model(pretrained or None, device=dev, flag="pretrained").to(torch_dtype(str(dtype))).eval()
        self._device = dev
        every = as_int(scratch_every, "scratch_every", 0)
        batch = as_int(batch_size if batch_size != "auto" else None, "batch_size", 8)
        self.scorer = HarnessScorer(model, entropy_threshold, every, batch, as_int(max_length, "max_length", None))

    @property
    def model(self):
        return self.scorer.model

    def stats(self) -> dict:
        """Settings and accounting of everything this adapter ran so far (scratchpad rate, FLOPs per byte, ...)."""
        return self.scorer.stats()

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [(ctx.encode("utf-8"), cont.encode("utf-8")) for ctx, cont in (r.args for r in requests)]
        results = self.scorer.loglikelihood(pairs)
        for r, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", r.args, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Each string scored whole: disjoint windows of max_length bytes, the first conditioned on
        the beginning-of-text byte, each later one on the bytes before it (lm_eval.utils)."""
        pairs, owner = [], []
        for i, r in enumerate(requests):
            text = list(r.args[0].encode("utf-8"))
            for ctx, pred in map(make_disjoint_window, get_rolling_token_windows(
                    text, prefix_token=DOCUMENT_SEPARATOR, max_seq_len=self.scorer.window, context_len=1)):
                pairs.append((bytes(ctx), bytes(pred)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, self.scorer.loglikelihood(pairs)):
            totals[i] += lp
        for r, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy, as the harness's LM interface specifies (sampling settings in the request's
        gen_kwargs are not used); requests with the same stop strings and length form one batch."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            kw = dict(r.args[1] or {})
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_bytes = as_int(kw.get("max_gen_toks"), "max_gen_toks", DEFAULT_MAX_GEN_BYTES)
            groups.setdefault((tuple(until), max_bytes), []).append(i)
        outputs = [""] * len(requests)
        for (until, max_bytes), idx in groups.items():
            prompts = [requests[i].args[0].encode("utf-8") for i in idx]
            gens = self.scorer.generate(prompts, [s.encode("utf-8") for s in until], max_bytes)
            for i, g in zip(idx, gens):
                outputs[i] = g.decode("utf-8", errors="replace")
                self.cache_hook.add_partial("generate_until", requests[i].args, outputs[i])
        return outputs
