"""`scratchpad show`: the page rendered by a real headless Chromium (Debian's `chromium`, which
.ci/run installs) must carry the model's own per-byte numbers, and its τ slider must re-mark
scratchpads exactly as the model's trigger would. Bad input is one error line."""
from __future__ import annotations

import dataclasses
import math
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval import show
from eval.headless import DevTools, find_browser, page_url
from eval.headless import main as headless_main
from eval.lag_stats import bytes_since
from eval.scoring import accounting
from eval.show_data import view_text
from scratchpad import load_model, save_model
from tests.eval.conftest import sharpened

# ASCII, two- and three-byte UTF-8, a control byte, an invalid byte, a tab and newlines
TEXT = "def area(w, h):\n\treturn w * h  # café ☕\n".encode() + b"\x07 bad \xff byte\nprint(area(3, 4))\n"


class ByteSpans(HTMLParser):
    """Collects the attributes and text of every byte element (<span class="b ...">)."""

    def __init__(self):
        super().__init__()
        self.spans, self.stats, self._open = [], {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class", "").split()[:1] == ["b"]:
            self.spans.append(dict(a, text=""))
            self._open = self.spans[-1]
        if a.get("id", "").startswith("stat-"):
            self.stats[a["id"][5:]] = a.get("data-value")

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._open = None


def parsed(dom: str) -> ByteSpans:
    p = ByteSpans()
    p.feed(dom)
    return p


def column(spans, key, cast=str):
    return [cast(s[key]) for s in spans]


def model_pass(model, tau, text=TEXT):
    with torch.no_grad():
        return model(torch.tensor([list(text)]), threshold=None if math.isinf(tau) else tau)


LONG = b"The quick brown fox jumps over the lazy dog. " * 3              # 135 bytes: 5 windows of 32
QUERIES = ["all=1", "all=1&tau=inf", "all=1&tau=0", "all=1&tau=2.2", "tau=1.5"]


@pytest.fixture(scope="module")
def default_model():
    return load_model(None).float().eval()


@pytest.fixture(scope="module")
def short_context(tmp_path_factory):
    """A tiny model whose context (32 bytes) is shorter than LONG."""
    model = sharpened("tiny-sp-fixed-p4")
    model.cfg = dataclasses.replace(model.cfg, max_seq_len=32)
    return model, save_model(model, tmp_path_factory.mktemp("short") / "model")


@pytest.fixture(scope="module")
def browser():
    if find_browser() is None:
        pytest.skip("needs headless Chromium (.ci/run installs it)")
    with DevTools() as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory, short_context):
    """The pages: TEXT through the default model at τ = 1.5, LONG through the short-context model at 0.5."""
    tmp = tmp_path_factory.mktemp("show")
    assert show.main([TEXT.decode("utf-8", "surrogateescape"), "--out", str(tmp / "text.html"), "--threshold", "1.5"]) == 0
    (tmp / "long.txt").write_bytes(LONG)
    assert show.main(["--file", str(tmp / "long.txt"), "--model", str(short_context[1]), "--out", str(tmp / "long.html"),
                      "--threshold", "0.5"]) == 0
    return dict(text=tmp / "text.html", long=tmp / "long.html")


@pytest.fixture(scope="module")
def doms(browser, pages):
    """{(page, query): parsed DOM} for TEXT under QUERIES and LONG, a browser tab each."""
    keys = [("text", q) for q in QUERIES] + [("long", "all=1")]
    got = [browser.dom_when(page_url(pages[name], q), "true") for name, q in keys]
    return {k: dict(parsed=parsed(d), raw=d) for k, d in zip(keys, got)}


def test_every_byte_is_an_element_with_the_models_numbers(doms, default_model):
    spans = doms["text", "all=1"]["parsed"].spans
    assert len(spans) == len(TEXT)
    out = model_pass(default_model, 1.5)
    scratch = column(spans, "data-scratch", int)
    assert sum(scratch) == int(out.scratchpads[0]) > 0                      # the model's own count ...
    assert scratch == out.scratch[0].int().tolist()                        # ... at the same bytes
    assert column(spans, "data-commit", int) == out.ends[0].int().tolist()
    assert np.allclose(column(spans, "data-entropy", float), out.entropy[0].numpy(), atol=1e-4)
    assert column(spans, "data-offset", int) == bytes_since(out.ends | out.scratch)[0].tolist()
    # bits of byte i come from position i - 1; byte 0 has none
    logp = F.log_softmax(out.logits[0, :-1], -1)
    bits = (-logp.gather(1, torch.tensor(list(TEXT[1:]))[:, None])[:, 0] / math.log(2)).numpy()
    assert spans[0]["data-bits"] == ""
    assert np.allclose(column(spans[1:], "data-bits", float), bits, atol=2e-3)


def test_non_printing_and_invalid_bytes_are_visible(doms):
    spans = doms["text", "all=1"]["parsed"].spans
    bad = TEXT.index(b"\xff")
    assert spans[bad]["text"] == "\\xFF" and "bad" in spans[bad]["class"]
    bell = TEXT.index(b"\x07")
    assert spans[bell]["text"] == "\u2407" and "ctrl" in spans[bell]["class"]
    e_acute = TEXT.index("é".encode())
    assert spans[e_acute]["text"] == "é" and "cont" in spans[e_acute + 1]["class"]
    assert all(s["text"] or "cont" in s["class"] for s in spans)           # nothing is dropped


def test_slider_at_inf_removes_every_scratchpad_and_at_0_marks_every_non_final_byte(doms, default_model):
    at_inf = doms["text", "all=1&tau=inf"]["parsed"]
    assert sum(column(at_inf.spans, "data-scratch", int)) == 0 and at_inf.stats["scratchpads"] == "0"
    at_zero = doms["text", "all=1&tau=0"]["parsed"]
    commit = column(at_zero.spans, "data-commit", int)
    assert column(at_zero.spans, "data-scratch", int) == [1 - c for c in commit]
    assert int(at_zero.stats["scratchpads"]) == int(model_pass(default_model, 0.0).scratchpads[0])
    assert column(at_zero.spans, "data-offset", int) == [0] * len(TEXT)     # a fresh trunk output at every byte


def test_slider_prices_a_tau_it_never_ran_and_claims_no_bits_for_it(doms, default_model):
    got = doms["text", "all=1&tau=2.2"]["parsed"]
    out = model_pass(default_model, 2.2)
    assert column(got.spans, "data-scratch", int) == out.scratch[0].int().tolist()
    assert got.stats["bpb"] == ""                                          # 2.2 was not run: no BPB
    # the page's JS accounting against scratchpad/accounting.py on the same events
    acc = accounting(default_model.cfg, view_text(default_model, TEXT, [2.2]).runs[0].score)
    assert float(got.stats["flops"]) == pytest.approx(acc["flops_ratio_vs_byte"], rel=1e-9)
    assert float(got.stats["trunk"]) == pytest.approx(acc["trunk_calls_per_byte"], rel=1e-12)
    assert float(got.stats["kv"]) == pytest.approx(acc["kv_ratio_vs_byte"], rel=1e-12)
    at_run = doms["text", "tau=1.5"]["parsed"]
    assert float(at_run.stats["bpb"]) == pytest.approx(view_text(default_model, TEXT, [1.5]).runs[0].bpb, rel=1e-6)


def test_hovering_a_byte_says_why_a_scratchpad_fired_or_not(browser, pages, default_model):
    out = model_pass(default_model, 1.5)
    fired = int(out.scratch[0].int().argmax())
    quiet = next(i for i in range(len(TEXT)) if not out.scratch[0, i] and not out.ends[0, i])
    session = browser.open(page_url(pages["text"]))
    hover = ('(() => {{ document.querySelector(\'.b[data-i="{}"]\').dispatchEvent(new MouseEvent("mouseover", '
             '{{bubbles: true}})); return document.getElementById("info").textContent; }})()')
    said = browser.evaluate_when(session, "true", hover.format(fired))
    assert f"byte {fired}:" in said and "scratchpad after it (entropy > τ = 1.5" in said
    assert f"fresh trunk context for byte {fired + 1}" in said
    assert "no scratchpad (entropy ≤ τ = 1.5)" in browser.evaluate_when(session, "true", hover.format(quiet))


def test_text_longer_than_the_context_slides_windows_and_says_so(doms, short_context):
    model = short_context[0]
    page = doms["long", "all=1"]
    assert "5 non-overlapping windows of up to 32 bytes" in page["raw"]
    spans = page["parsed"].spans
    assert len(spans) == len(LONG)
    expected = sum(int(model_pass(model, 0.5, LONG[s:s + 32]).scratchpads[0]) for s in range(0, len(LONG), 32))
    assert sum(column(spans, "data-scratch", int)) == expected > 0
    assert all(s["data-bits"] != "" for s in spans[1:])                    # a window's first byte is still predicted


def test_bad_input_is_one_error_line(tmp_path, cli, user_error):
    out = tmp_path / "p.html"

    def refused(argv, *needles):
        code, _, err = cli(show.main, argv)
        user_error(code, err, *needles)

    refused(["", "--out", out], "empty")
    (tmp_path / "blob.bin").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    refused(["--file", tmp_path / "blob.bin", "--out", out], "looks binary", "--binary")
    (tmp_path / "long.txt").write_bytes(b"a" * (show.MAX_BYTES + 1))
    refused(["--file", tmp_path / "long.txt", "--out", out], "longer than 65,536 bytes")
    refused(["--file", tmp_path / "missing.txt", "--out", out], "no such file")
    refused(["text", "--file", tmp_path / "long.txt", "--out", out], "exactly one")
    refused(["text", "--out", tmp_path / "no-folder" / "p.html"], "no such folder")
    refused(["text", "--out", "/proc/p.html"], "not writable")
    refused(["text", "--out", out, "--threshold", "-1"], "--threshold")
    out.write_text("keep me")
    refused(["text", "--out", out], "exists", "--force")
    assert out.read_text() == "keep me"
    assert not list(tmp_path.glob(".p.html.*"))                             # no temp files left behind


def test_binary_input_is_shown_with_binary_and_force_replaces(tmp_path, cli):
    folder = save_model(sharpened("tiny-sp-fixed-p4"), tmp_path / "m")
    blob = bytes(range(256))
    (tmp_path / "blob.bin").write_bytes(blob)
    out = tmp_path / "p.html"
    out.write_text("old")
    code, stdout, err = cli(show.main, ["--file", tmp_path / "blob.bin", "--binary", "--force", "--model", folder,
                                        "--out", out])
    assert code == 0, err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "not UTF-8 text" in page and "</html>" in page
    assert "http://" not in page and "https://" not in page                # self-contained: no network


def test_screenshot_is_a_png_of_the_page(tmp_path, cli, user_error):
    if find_browser() is None:
        pytest.skip("needs headless Chromium (.ci/run installs it)")
    folder = save_model(sharpened("tiny-sp-fixed-p4"), tmp_path / "m")
    png = tmp_path / "page.png"
    code, _, err = cli(show.main, ["hello, bytes", "--model", folder, "--out", tmp_path / "p.html", "--screenshot", png])
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    code, _, err = cli(headless_main, [page_url(tmp_path / "p.html"), "--png", png, "--size", "wide"])
    user_error(code, err, "--size")
