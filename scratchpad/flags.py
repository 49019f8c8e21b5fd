"""Command-line plumbing shared by every part's CLI (train, infer, eval): an argparse whose
mistakes are one `error:` line (exit code 2 through `run_cli`), help that shows each default,
and the parsers of flag values (integers, durations, thread counts).

It sits in the library package because that is the lowest place every CLI may import
(kernels <- scratchpad <- train, infer <- eval); the model code never uses it.
"""
from __future__ import annotations

import argparse
import math
import re

from scratchpad.errors import UserError
from scratchpad.trigger import Trigger, TriggerError


# One name each for the flags several commands share (the later spellings are aliases).
THRESHOLD_FLAGS = ("--threshold", "-t", "--entropy-threshold")   # tau in nats, 'inf' = no scratchpads
RATE_FLAGS = ("--rate", "--scratchpad-budget")                    # a target scratchpad rate instead of tau


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help unless the help already names its default or
    there is none to show (None, False, or a suppressed default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == [] or default is argparse.SUPPRESS
                or not action.option_strings or "default" in text or text is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes raise one-line UserErrors (run_cli prints `error: ...`, exit 2)
    instead of printing the usage block, and whose help shows defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def describe(doc: str) -> str:
    """A module docstring's first paragraph as one line (a leading "`scratchpad x`: " dropped):
    the description a parser shows, never cut mid-sentence."""
    first = " ".join(line.strip() for line in (doc or "").strip().split("\n\n")[0].splitlines())
    first = re.sub(r"^`[^`]*`:\s*", "", first)
    return first[:1].upper() + first[1:]


def parse_int_flag(name: str, text, lo: int) -> int:
    """An integer flag value >= lo, or one UserError line naming --name."""
    name = name.lstrip("-")
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise UserError(f"--{name} {text!r}: not an integer") from None
    if v < lo:
        raise UserError(f"--{name} {v}: must be >= {lo}")
    return v


def int_flag(flag: str, lo: int = 1):
    """An argparse `type`: an integer >= lo for `flag`, with parse_int_flag's one-line error."""
    return lambda text: parse_int_flag(flag, text, lo)


_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """'20m', '90s', '1h30m', '1.5h', '45' (seconds) -> seconds (> 0)."""
    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        total = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(sec|min|s|m|h|d)", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise UserError(f"{flag} {text!r}: not a duration (examples: 20m, 90s, 1h30m, 1.5h)")
        total = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(total) or total <= 0:
        raise UserError(f"{flag} {text!r}: must be positive")
    return total


def add_threads_flag(ap: argparse.ArgumentParser, default: int | None = None, why: str = ""):
    """--threads N (an integer >= 1): torch CPU threads."""
    shown = f"default {default}{': ' + why if why else ''}" if default else "default: torch's choice"
    ap.add_argument("--threads", type=int_flag("--threads"), default=default, metavar="N",
                    help=f"torch CPU threads ({shown})")


def parse_every(text) -> int:
    """A --scratch-every value, checked by Trigger: one UserError line naming the flag."""
    try:
        value = int(text)
    except ValueError:
        value = text  # Trigger says what an integer stride must be
    try:
        return Trigger(every=value).every
    except TriggerError as e:
        raise UserError(f"--scratch-every {e.reason}") from None


def add_scratch_every_flag(ap: argparse.ArgumentParser):
    """--scratch-every K (an integer >= 0): also a scratchpad at every K-th byte of a patch."""
    ap.add_argument("--scratch-every", type=parse_every, default=0, metavar="K",
                    help="also a scratchpad at every K-th byte of a patch, whatever the entropy (0 = none, the "
                         "default; with --threshold inf the only trigger)")


def set_threads(n: int | None):
    """Apply a --threads value (None keeps torch's default)."""
    if n is not None:
        import torch

        torch.set_num_threads(parse_int_flag("threads", n, 1))
