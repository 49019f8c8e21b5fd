"""The playground of `scratchpad serve` at `/`: a page (playground.html) with a prompt box, τ and
scratch_every controls and a generation streamed through the server's own /v1/completions, drawn
byte by byte as it arrives (byte_glyphs.js, the rendering `scratchpad show` uses too), with live
bytes/s and, once it ends, the engine's scratchpad rate, trunk calls and KV from the choice's
extension block.

    POST /v1/playground/bytes  {"text": str, "entropy_threshold": τ | "inf", "scratch_every": k}

answers the model's own per-byte marks of a text (aux entropy, patch ends, scratchpads, bits; the
parallel forward, which incremental decode reproduces) and FLOPs and KV per byte against the byte
baseline; the page colours the finished text with them. Guarded like every /v1 route (API key,
Content-Type, body size). Positions as in `scratchpad show`: entropy, ends and scratch belong to
the position after reading a byte; bits[i] is the cost of byte i (None for byte 0).
"""
import asyncio
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from infer.api_fields import ApiError, triggers, utf8
from scratchpad.accounting import Events, per_byte, row_events
from scratchpad.trigger import Trigger

HERE = Path(__file__).parent
BYTE_GLYPHS_JS = HERE / "byte_glyphs.js"
PAGE = HERE / "playground.html"
LN2 = math.log(2)


def page_html(model_name: str, cfg) -> str:
    """The playground page with the shared byte rendering and the model's settings inlined."""
    settings = dict(model=model_name, max_seq_len=cfg.max_seq_len, longest_patch=cfg.longest_patch,
                    scratchpad=cfg.scratchpad, patch_size=cfg.patch_size, patcher=cfg.patcher)
    page = PAGE.read_text(encoding="utf-8")
    page = page.replace("__SETTINGS__", json.dumps(settings).replace("<", "\\u003c"))
    return page.replace("__BYTE_GLYPHS__", BYTE_GLYPHS_JS.read_text(encoding="utf-8"))


@torch.no_grad()
def byte_marks(model, data: bytes, trigger: Trigger) -> dict:
    """One parallel forward over data [n] at the trigger: per-byte marks and the accounting per
    byte against the byte baseline on the same bytes."""
    cfg = model.cfg
    x = torch.tensor([list(data)], device=next(model.parameters()).device)
    out = model(x, trigger=trigger)
    logp = F.log_softmax(out.logits[0, :-1].float(), -1)
    bits = (-logp.gather(1, x[0, 1:, None])[:, 0] / LN2).tolist()
    commits, scratchpads, keys = (int(v[0]) for v in row_events(out.ends, out.scratch))
    n = len(data)
    events = Events(bytes=n, commits=commits, scratchpads=scratchpads, keys=keys,
                    aux=n if cfg.aux_runs(trigger.entropy) else 0)
    acc = per_byte(cfg, events, n * (n + 1) // 2)
    mask = lambda m: "".join("1" if v else "0" for v in m[0].tolist())  # noqa: E731
    return dict(entropy=[round(v, 4) for v in out.entropy[0].float().tolist()], ends=mask(out.ends),
                scratch=mask(out.scratch), bits=[None] + [round(b, 3) for b in bits],
                bpb=sum(bits) / max(len(bits), 1), scratchpads=scratchpads, **trigger.json(),
                trunk_calls_per_byte=acc["trunk_calls_per_byte"],
                flops_ratio_vs_byte=acc["flops_ratio_vs_byte"], kv_ratio_vs_byte=acc["kv_ratio_vs_byte"])


def parse_marks_request(body: dict, cfg) -> tuple[bytes, Trigger]:
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "'text' is required (a string)", "text")
    data = utf8(text, "text")
    if not 2 <= len(data) <= cfg.max_seq_len:
        raise ApiError(400, f"the text has {len(data)} bytes; marks need 2 to {cfg.max_seq_len} (the model's context)",
                       "text", "context_length_exceeded" if len(data) > cfg.max_seq_len else None)
    trigger, budget = triggers(body, cfg)
    if budget is not None:
        raise ApiError(400, "marks take 'entropy_threshold', not 'scratchpad_budget'", "scratchpad_budget")
    return data, trigger.for_model(cfg)


def add_playground(app, model, model_name: str, read_json):
    """Register GET / (the page) and POST /v1/playground/bytes on a FastAPI app; read_json(request)
    is the app's own guarded body reader (API key, Content-Type, size limit)."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse

    page = page_html(model_name, model.cfg)

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(page)

    @app.post("/v1/playground/bytes")
    async def marks(request: Request):
        data, trigger = parse_marks_request(await read_json(request), model.cfg)
        return await asyncio.get_running_loop().run_in_executor(None, byte_marks, model, data, trigger)
