"""Request options shared by the engine, the CLI commands and the server: prompts, a tau from
the command line, and the trigger a scratchpad budget picks on a prompt. The trigger's checks
are scratchpad/trigger.py's; here a door only says them in its own words."""
from __future__ import annotations

import torch

from scratchpad.errors import UserError
from scratchpad.trigger import Trigger, TriggerError, check_rate

CLI_FLAGS = {"tau": "--threshold", "every": "--scratch-every", "rate": "--rate"}  # a TriggerError's field -> flag


def cli_error(e: TriggerError, flags: dict = CLI_FLAGS) -> UserError:
    """A bad trigger value as the command line says it: one line that names the flag."""
    return UserError(f"{flags[e.field]} {e.reason}")


def parse_threshold(text, flag: str = "--entropy-threshold") -> float:
    """A tau from the command line: a number in [0, TAU_MAX], or inf / none / off (no scratchpads)."""
    try:
        return Trigger(tau=text).tau
    except TriggerError as e:
        raise cli_error(e, {"tau": flag}) from None


def check_calibration(prompt: bytes, rate) -> float:
    """A rate that a prompt can calibrate: in [0, 1], and a prompt of 2 bytes or more unless 0."""
    if check_rate(rate) and len(prompt) < 2:
        raise TriggerError("rate", "calibrates on the prompt; give a prompt of at least 2 bytes")
    return rate


def prompt_trigger(model, prompt: bytes, rate, base: Trigger | None = None) -> Trigger:
    """`base` (default: off) with the entropy threshold at which about a fraction `rate` of the
    prompt's bytes (all of them, the model's last max_seq_len) would fire (Trigger.from_rate,
    scratchpad.rate defines the rate)."""
    check_calibration(prompt, rate)
    x = torch.tensor(list(prompt[-model.cfg.max_seq_len:]), dtype=torch.long)
    return Trigger.from_rate(model, [x.unsqueeze(0)], rate, base)


def as_prompt(p) -> bytes:
    """bytes, bytearray or str (UTF-8) -> bytes."""
    if isinstance(p, str):
        return p.encode("utf-8")
    if isinstance(p, (bytes, bytearray, memoryview)):
        return bytes(p)
    raise TypeError(f"a prompt is bytes or str, got {type(p).__name__}")


def as_prompts(prompts) -> list[bytes]:
    """One prompt (bytes or str) or a list/tuple of them -> list of bytes."""
    if isinstance(prompts, (str, bytes, bytearray, memoryview)):
        return [as_prompt(prompts)]
    if isinstance(prompts, (list, tuple)):
        return [as_prompt(p) for p in prompts]
    raise TypeError(f"prompts: give bytes, str or a list of them, got {type(prompts).__name__}")
