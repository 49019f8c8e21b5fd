"""Helpers for the `scratchpad serve` tests: a tiny float64 model, a server on 127.0.0.1 in a
thread with the official openai client, and raw HTTP requests (127.0.0.1 only)."""
import http.client
import json
import urllib.request

import torch

from infer.serve import ServerThread, build_app
from scratchpad import ModelConfig, build_model

NAME = "tiny-sp"


def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig.preset("tiny-sp-fixed-p4")).double().eval()  # float64: no near-tie flips


class Server(ServerThread):
    def __init__(self, model, api_key=None, **kw):
        import openai

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
