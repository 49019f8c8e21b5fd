"""Strict reading of OpenAI request fields for `scratchpad serve`: JSON with exact types (a
string "false" is not a boolean, NaN/Infinity are not numbers), every setting range-checked
where it enters and converted once, OpenAI-shaped errors. No web framework here."""
from __future__ import annotations

import json
import math

from scratchpad.trigger import DEFAULT_TAU, OFF_WORDS, Trigger, TriggerError, check_rate

INT64 = 2**63


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _no_constant(token):
    raise ValueError(f"{token} is not valid JSON")


def parse_json(raw: bytes) -> dict:
    """A request body -> a JSON object; NaN, Infinity and invalid UTF-8 are refused."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def number(body: dict, key: str, default, lo=None, hi=None, integer: bool = False):
    """body[key] as an int (integer) or a finite number in [lo, hi]; absent or null -> default."""
    v = body.get(key)
    if v is None:
        return default
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (not integer and not math.isfinite(v)):
        raise ApiError(400, f"'{key}' must be {'an integer' if integer else 'a finite number'}, got {v!r}", key)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ApiError(400, f"'{key}' must be {bound}, got {v!r}", key)
    return int(v) if integer else float(v)


def boolean(body: dict, key: str, default: bool = False) -> bool:
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ApiError(400, f"'{key}' must be true or false (a JSON boolean), got {v!r}", key)
    return v


def utf8(text: str, param: str) -> bytes:
    """A JSON string -> UTF-8 bytes; a lone UTF-16 surrogate ("\\ud800") is a 400."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"'{param}' contains a lone UTF-16 surrogate (not valid Unicode text)", param) from None


def refuse(body: dict, fields: dict):
    """Fields this server does not implement: a 400 unless absent or equal to the default that
    means "off" (never silently ignored). fields: name -> (off values, why)."""
    for key, (off, why) in fields.items():
        if key in body and body[key] not in off:
            raise ApiError(400, f"'{key}' is not supported by this server ({why})", key, "unsupported_parameter")


def sampling(body: dict, max_tokens_keys: tuple, max_tokens_limit: int) -> dict:
    """max_tokens (bytes), temperature, top_p, seed, n and stop, checked -> Request keyword args."""
    if number(body, "n", 1, 1, 1, integer=True) != 1 or body.get("best_of") not in (None, 1):
        raise ApiError(400, "only n = 1 and best_of = 1 are supported", "n")
    key = next((k for k in max_tokens_keys if body.get(k) is not None), max_tokens_keys[0])
    max_tokens = number(body, key, 16, 1, max_tokens_limit, integer=True)
    temperature = number(body, "temperature", 1.0, 0, 2)
    top_p = number(body, "top_p", 1.0, 0, 1)
    if top_p == 0:
        raise ApiError(400, "'top_p' must be > 0", "top_p")
    seed = number(body, "seed", None, -INT64, INT64 - 1, integer=True)
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    return dict(max_bytes=max_tokens, temperature=temperature, top_k=0, top_p=top_p, seed=seed,
                stop=[utf8(s, "stop") for s in stops])


API_PARAMS = {"tau": "entropy_threshold", "every": "scratch_every", "rate": "scratchpad_budget"}


def checked(check, *args):
    """check(*args), a bad trigger value (TriggerError) becoming a 400 that names the JSON field."""
    try:
        return check(*args)
    except TriggerError as e:
        raise ApiError(400, f"'{API_PARAMS[e.field]}' {e.reason}", API_PARAMS[e.field]) from None


def triggers(body: dict, cfg) -> tuple[Trigger, float | None]:
    """(the trigger, a budget or None) from the extension fields: `entropy_threshold` a number or
    "inf" (default 1.5), or `scratchpad_budget` a fraction of the bytes (then tau stays inf until
    a calibration on the prompt picks it), and `scratch_every` an integer (0: none). JSON types
    are checked here; the values by Trigger (and Trigger.for_model: a stride within this model's
    longest patch)."""
    tau, budget = body.get("entropy_threshold"), body.get("scratchpad_budget")
    if tau is not None and budget is not None:
        raise ApiError(400, "give 'entropy_threshold' or 'scratchpad_budget', not both", "entropy_threshold")
    if not (isinstance(tau, str) and tau.strip().lower() in OFF_WORDS):
        tau = number(body, "entropy_threshold", DEFAULT_TAU if budget is None else math.inf)
    if budget is not None:
        budget = number(body, "scratchpad_budget", None)
    every = number(body, "scratch_every", 0, integer=True)
    if budget is not None:
        checked(check_rate, budget)
    trigger = checked(Trigger, tau, every)
    checked(trigger.for_model, cfg)
    return trigger, budget
