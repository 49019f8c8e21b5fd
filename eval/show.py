"""`scratchpad show`: one self-contained HTML page that shows a text as the model sees it.

    scratchpad show "def add(x, y): return x + y" --out page.html
    scratchpad show --file notes.md --threshold 1.5 --out page.html --screenshot page.png

Each byte is an element carrying data-entropy (aux entropy after it, nats), data-bits (the model's
bits for that byte at the page's τ), data-scratch ("1": a scratchpad after this byte refreshed the
context that predicts the next one), data-commit ("1": the byte closes a patch) and data-offset
(bytes since the latest usable trunk output at this position). A τ slider re-marks scratchpads
from the stored entropies and prices them (trunk calls, FLOPs and KV against the byte baseline,
with scratchpad/accounting.py's numbers); bits come only from the τ the model ran (∞, 3, 1.5, 0
and the chosen one). An entropy strip chart and the lag profile of the text. CSS, JS and data are
inline: the file opens from disk with no network. See eval/show_data.py for the exact positions.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from eval.headless import DevTools, find_browser, page_url
from eval.loading import load_eval_model
from eval.report import jsonable
from eval.show_data import RUN_TAUS, cost_numbers, lag_profile, run_summary, view_text
from infer.options import parse_threshold
from infer.playground import BYTE_GLYPHS_JS
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe
from scratchpad.trigger import DEFAULT_TAU, tau_json

MAX_BYTES = 1 << 16          # the largest text a page holds (about 2 MB of HTML)
BINARY_FRACTION = 0.10       # more non-text bytes than this: refused unless --binary
HERE = Path(__file__).parent


def parse_args(argv):
    ap = Parser(prog="scratchpad show", description=describe(__doc__))
    ap.add_argument("text", nargs="?", help="the text to show ('-' = read stdin); or use --file")
    ap.add_argument("--file", metavar="F", help="read the text from a file ('-' = stdin)")
    ap.add_argument("--model", help="model folder or training --out folder (default: the packaged default model)")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", metavar="TAU", default=str(DEFAULT_TAU),
                    help="the page's entropy threshold in nats ('inf' = none); the slider starts here")
    add_scratch_every_flag(ap)
    ap.add_argument("--out", required=True, help="the HTML page to write")
    ap.add_argument("--force", action="store_true", help="replace --out (and --screenshot) if it exists")
    ap.add_argument("--binary", action="store_true",
                    help="show input that is mostly not UTF-8 text (every byte is legal model input)")
    ap.add_argument("--screenshot", metavar="PNG", help="also save a 1280x900 PNG of the page (headless Chromium)")
    add_threads_flag(ap)
    return ap.parse_args(argv)


def read_input(text: str | None, file: str | None) -> tuple[bytes, str]:
    """(the bytes, where they came from); at most MAX_BYTES + 1 are read."""
    if (text is None) == (file is None):
        raise UserError("give the text as an argument or with --file F ('-' = stdin), exactly one of them")
    if file is None and text != "-":
        return os.fsencode(text), "the command line"   # the argument's bytes as the shell passed them
    if (file or "-") == "-":
        return sys.stdin.buffer.read(MAX_BYTES + 1), "stdin"
    try:
        with open(file, "rb") as f:
            return f.read(MAX_BYTES + 1), file
    except FileNotFoundError:
        raise UserError(f"--file {file}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--file {file}: is a folder, not a file") from None
    except OSError as e:
        raise UserError(f"--file {file}: unreadable ({e.strerror or e})") from None


def non_text_bytes(data: bytes) -> int:
    """Bytes that are not UTF-8 text: invalid UTF-8, or control bytes other than tab, newline, CR, FF."""
    s = data.decode("utf-8", "surrogateescape")   # each invalid byte becomes one lone surrogate
    return sum(1 for c in s if "\udc80" <= c <= "\udcff" or (c < " " and c not in "\t\n\r\f") or c == "\x7f")


def check_text(data: bytes, origin: str, binary: bool) -> int:
    """Refuse what a page cannot show well; returns the count of non-text bytes."""
    if len(data) == 0:
        raise UserError(f"the text from {origin} is empty: nothing to show")
    if len(data) < 2:
        raise UserError(f"the text from {origin} is one byte: nothing predicts anything; give at least 2 bytes")
    if len(data) > MAX_BYTES:
        raise UserError(f"the text from {origin} is longer than {MAX_BYTES:,} bytes, the most a page shows; "
                        f"cut it (e.g. head -c {MAX_BYTES} FILE)")
    bad = non_text_bytes(data)
    if bad > BINARY_FRACTION * len(data) and not binary:
        raise UserError(f"the input from {origin} looks binary ({bad:,} of {len(data):,} bytes are not UTF-8 text); "
                        "pass --binary to show it anyway (every byte is legal model input)")
    return bad


def check_target(path: str, flag: str, force: bool) -> Path:
    """An output file that can be written (and may be replaced only with --force)."""
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{flag} {out}: is a folder; give a file name")
    if out.exists() and not force:
        raise UserError(f"{flag} {out}: exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"{flag} {out}: no such folder {out.parent}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{flag} {out}: not writable ({e.strerror or e})") from None
    return out


def b64(a: np.ndarray) -> str:
    return base64.b64encode(a.tobytes()).decode("ascii")


def mask_text(m: np.ndarray) -> str:
    """bool [n] -> '0101...'."""
    return (m.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def quantised_bits(bits: np.ndarray) -> np.ndarray:
    """bits [n] float -> uint16 thousandths of a bit, 65535 where there is no prediction (NaN)."""
    q = np.clip(np.round(np.nan_to_num(bits, nan=0.0) * 1000), 0, 65534)
    return np.where(np.isnan(bits), 65535, q).astype("<u2")


def page_data(view, model, label: str, tau: float, notes: list[str]) -> dict:
    cfg = model.cfg
    runs = [dict(run_summary(cfg, r), bits=b64(quantised_bits(r.bits)), scratch=mask_text(r.scratch))
            for r in view.runs]
    return dict(
        model=dict(name=cfg.name, label=label, patcher=cfg.patcher, patch_size=cfg.patch_size,
                   max_seq_len=cfg.max_seq_len, scratchpad=cfg.scratchpad),
        tau=tau_json(tau), every=view.every, windows=[list(w) for w in view.windows], notes=notes,
        bytes=b64(np.frombuffer(view.data, np.uint8)), entropy=b64(view.entropy.astype("<f4")),
        ends=mask_text(view.ends), runs=runs, chosen=[r.tau for r in view.runs].index(tau),
        baseline_keys=view.runs[0].score.baseline_keys, costs=cost_numbers(cfg),
        lag=[dict(tau=tau_json(r.tau), rows=lag_profile(view, r)) for r in view.runs],
    )


def render_page(data: dict, title: str) -> str:
    """The template with its title, script and data filled in (JSON made safe inside <script>)."""
    payload = json.dumps(jsonable(data), separators=(",", ":")).replace("<", "\\u003c")
    script = "\n".join(p.read_text(encoding="utf-8") for p in (BYTE_GLYPHS_JS, HERE / "show_page.js"))
    parts = dict(__TITLE__=html.escape(title), __SCRIPT__=script, __DATA__=payload)
    template = (HERE / "show_page.html").read_text(encoding="utf-8")
    return re.sub("|".join(parts), lambda m: parts[m.group(0)], template)


def write_atomically(out: Path, text: str):
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp's 0600 would hide the page from other users
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"--out {out}: could not write ({e.strerror or e})") from None


def notes_for(view, cfg, bad: int) -> list[str]:
    n, W = len(view.data), cfg.max_seq_len
    notes = []
    if len(view.windows) > 1:
        notes.append(f"The text ({n:,} bytes) is longer than the model's context of {W:,} bytes: it is read in "
                     f"{len(view.windows)} non-overlapping windows of up to {W:,} bytes, each from an empty context "
                     "(a dashed purple line marks where a window starts).")
    if not cfg.scratchpad:
        notes.append(f"{cfg.name} was trained without scratchpads: τ has no effect and only τ = ∞ was run.")
    if bad:
        notes.append(f"{bad:,} of {n:,} bytes are not UTF-8 text: invalid bytes show as \\xNN, control bytes as pictures.")
    return notes


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    tau = parse_threshold(a.threshold, "--threshold")
    data, origin = read_input(a.text, a.file)
    bad = check_text(data, origin, a.binary)
    out = check_target(a.out, "--out", a.force)
    png = check_target(a.screenshot, "--screenshot", a.force) if a.screenshot else None
    if png is not None and find_browser() is None:
        raise UserError("--screenshot needs headless Chromium (install Debian's `chromium` package, or set $CHROMIUM)")
    model, label = load_eval_model(a.model, a.threads)
    cfg = model.cfg
    if not cfg.scratchpad:
        tau = math.inf
    taus = sorted(set(RUN_TAUS) | {tau}, reverse=True) if cfg.scratchpad else [math.inf]

    def progress(done, total):
        if total > len(taus):
            print(f"\rshow: forward {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    view = view_text(model, data, taus, a.scratch_every if cfg.scratchpad else 0, progress)
    title = f"scratchpad show: {origin if origin != 'the command line' else 'text'} through {cfg.name}"
    page = render_page(page_data(view, model, label, tau, notes_for(view, cfg, bad)), title)
    write_atomically(out, page)
    chosen = view.run(tau)
    print(f"-> {out} ({len(data):,} bytes in {len(view.windows)} window(s), {int(chosen.scratch.sum()):,} scratchpads at "
          f"τ = {tau_json(tau)}, BPB {chosen.bpb:.4f}; page {len(page.encode()) / 1e6:.2f} MB)")
    if png is not None:
        with DevTools() as browser:
            browser.screenshot_when(page_url(out), "true", png)
        print(f"-> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
