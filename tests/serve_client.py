"""Helpers for the `scratchpad serve` tests: a server on 127.0.0.1 in a thread with the official
openai client, raw HTTP requests (127.0.0.1 only), error shapes, a command's exit. Importing it
skips the importing test module without the [serve] extra or the openai client (the model the
tests serve is the `model` fixture of tests/conftest.py)."""
import http.client
import json
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the [serve] extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="the server tests use the official openai client (in the [test] extra)")

from infer.serve import ServerThread, build_app

NAME = "tiny-sp"


class Server(ServerThread):
    def __init__(self, model, api_key=None, **kw):
        super().__init__(build_app(model, NAME, api_key=api_key, **kw))
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key=api_key or "unused", max_retries=0, timeout=60)

    def health(self):
        return json.loads(urllib.request.urlopen(self.url + "/health", timeout=10).read())

    def request(self, method, path, body=None, headers=None):
        """-> (status, parsed JSON or text) over a fresh connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if isinstance(body, dict):
                body = json.dumps(body)
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body, {**hdrs, **(headers or {})})
            resp = conn.getresponse()
            text = resp.read().decode()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def complete(self, body, headers=None):
        return self.request("POST", "/v1/completions", {"model": NAME, **body}, headers)


def openai_error(status, body, want_status):
    """An OpenAI-shaped error with this status -> its error object."""
    assert status == want_status, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    return err


def run_command(main, argv, capsys):
    """A command's main through run_cli, as the console runs it -> (exit code, stderr)."""
    from scratchpad.errors import run_cli

    code = run_cli(main, [str(a) for a in argv])
    return code, capsys.readouterr().err
