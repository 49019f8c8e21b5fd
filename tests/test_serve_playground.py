"""The playground at `/` of `scratchpad serve`, driven in a real headless Chromium: it streams a
generation through the server's own /v1/completions whose text equals the same API request, draws
every byte, colours them with the model's own per-byte marks, and works behind --api-key."""
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
import torch
from serve_client import Server, openai_error

from eval.headless import DevTools, find_browser
from scratchpad import load_model

KEY = "sk-playground-test"
PROMPT = "def add(x, y):\n"
DONE = 'document.getElementById("output").dataset.done === "1"'


class Page(HTMLParser):
    """The byte spans of #output, its data attributes, the #status text and the stats."""

    def __init__(self, html):
        super().__init__()
        self.spans, self.output, self.stats, self.status, self._in_status = [], {}, {}, "", False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "output":
            self.output = a
        if tag == "span" and a.get("class", "").split()[:1] == ["b"]:
            self.spans.append(a)
        if a.get("id", "").startswith("stat-"):
            self.stats[a["id"][5:]] = a.get("data-value")
        self._in_status = a.get("id") == "status"

    def handle_data(self, data):
        if self._in_status:
            self.status += data


@pytest.fixture(scope="module")
def model():
    return load_model(None).float().eval()


@pytest.fixture(scope="module")
def browser():
    if find_browser() is None:
        pytest.skip("needs headless Chromium (.ci/run installs it)")
    with DevTools(timeout=120) as b:
        yield b


def ask(server, browser, **query) -> Page:
    return Page(browser.dom_when(server.url + "/?" + urlencode(dict(query, go=1)), DONE))


HTML = "document.documentElement.outerHTML"
SLIDE_TO_0 = '(() => { const t = document.getElementById("tau"); t.value = 0; t.dispatchEvent(new Event("input")); })()'


def same_request(server, key=None, **body):
    status, got = server.complete(dict(body, prompt=PROMPT, temperature=0, stream=False),
                                  {"Authorization": f"Bearer {key}"} if key else None)
    assert status == 200, got
    return got["choices"][0]


def test_playground_streams_the_api_text_and_marks_every_byte_as_the_model_does(model, browser):
    server = Server(model, max_batch=2)
    try:
        session = browser.open(server.url + "/?" + urlencode(dict(prompt=PROMPT, max_tokens=40, tau=1.5, go=1)))
        page = Page(browser.evaluate_when(session, DONE, HTML))
        browser.evaluate_when(session, "true", SLIDE_TO_0)   # after the generation: re-mark the same bytes at 0
        at_zero = Page(browser.evaluate_when(session, 'document.getElementById("status").textContent.startsWith('
                                             '"marks at τ = 0")', HTML))
        want = same_request(server, max_tokens=40, entropy_threshold=1.5)
    finally:
        server.close()
    assert page.output["data-text"] == want["text"] and page.output["data-finish"] == want["finish_reason"]
    data = (PROMPT + want["text"]).encode()
    assert len(page.spans) == len(data) and page.output.get("data-marked") == "1", page.status
    with torch.no_grad():
        out = model(torch.tensor([list(data)]), threshold=1.5)
    assert [int(s["data-scratch"]) for s in page.spans] == out.scratch[0].int().tolist()
    assert [int(s["data-commit"]) for s in page.spans] == out.ends[0].int().tolist()
    assert int(page.stats["scratchpads"]) == int(out.scratchpads[0])
    assert float(page.stats["engine-rate"]) == pytest.approx(want["scratchpad"]["rate"])
    assert sum("prompt" in s["class"] for s in page.spans) == len(PROMPT.encode())
    assert [int(s["data-scratch"]) for s in at_zero.spans] == [1 - int(s["data-commit"]) for s in at_zero.spans]
    assert at_zero.output["data-text"] == want["text"]                     # the text stays; only the marks move


def test_playground_works_behind_an_api_key_and_says_when_it_is_missing(model, browser):
    server = Server(model, api_key=KEY, max_batch=2)
    try:
        refused = ask(server, browser, prompt=PROMPT, max_tokens=8)
        page = ask(server, browser, prompt=PROMPT, max_tokens=12, tau="inf", every=4, key=KEY)
        want = same_request(server, KEY, max_tokens=12, entropy_threshold="inf", scratch_every=4)
        no_key = server.request("POST", "/v1/playground/bytes", {"text": "abc"})
        too_long = server.request("POST", "/v1/playground/bytes", {"text": "a" * (model.cfg.max_seq_len + 1)},
                                  {"Authorization": f"Bearer {KEY}"})
        budget = server.request("POST", "/v1/playground/bytes", {"text": "abc", "scratchpad_budget": 0.5},
                                {"Authorization": f"Bearer {KEY}"})
    finally:
        server.close()
    assert "error 401" in refused.status and "API key" in refused.status and refused.output.get("data-text") == ""
    assert page.output["data-text"] == want["text"] and page.output.get("data-marked") == "1", page.status
    assert want["scratchpad"]["scratch_every"] == 4 and want["scratchpad"]["entropy_threshold"] == "inf"
    openai_error(*no_key, 401)
    assert openai_error(*too_long, 400)["code"] == "context_length_exceeded"
    assert openai_error(*budget, 400)["param"] == "scratchpad_budget"
