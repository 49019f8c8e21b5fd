"""`scratchpad serve` starting and stopping: a bad port, a busy port or an address it cannot
bind end in one line and exit 2; the log names the port really bound (--port 0); SIGTERM stops
admitting, ends what still runs after --shutdown-timeout with finish_reason "cancelled" and
exits 0; a second signal exits at once. The server runs as a subprocess on 127.0.0.1."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from serve_client import run_command

from infer.serve import main
from scratchpad import ModelConfig, build_model, save_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")).eval(), tmp_path_factory.mktemp("m") / "m")


@pytest.mark.parametrize("argv, needle", [(["--port", "70000"], "--port 70000"), (["--port", "-1"], "--port"),
                                          (["--host", "203.0.113.7", "--port", "0"], "cannot listen on 203.0.113.7")])
def test_bad_addresses_end_in_one_line(capsys, argv, needle):
    code, err = run_command(main, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


def test_a_busy_port_ends_in_one_line(capsys, model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run_command(main, ["--model", model_dir, "--port", port], capsys)
    assert code == 2 and err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def start(model_dir, *flags, env=None):
    """The server in a subprocess on a free port -> (process, port read from its log line)."""
    proc = subprocess.Popen([sys.executable, "-m", "infer.serve", "--model", str(model_dir), "--port", "0",
                             "--threads", "1", *flags], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    line = proc.stderr.readline()
    m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
    assert m and int(m.group(1)) != 0, line
    return proc, int(m.group(1))


def stream_request(port, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"model": "tiny-sp-fixed-p4", "prompt": "go", "max_tokens": 60000, "temperature": 0,
                       "stream": True})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")
    return resp


def test_sigterm_drains_then_cancels_and_exits_0(model_dir):
    proc, port = start(model_dir, "--shutdown-timeout", "1", env={"SCRATCHPAD_API_KEY": "k"})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/models")
        assert conn.getresponse().status == 401  # the key from the environment is required
        resp = stream_request(port, {"Authorization": "Bearer k"})
        proc.send_signal(signal.SIGTERM)
        start_t = time.perf_counter()
        events = [line[6:].strip() for line in resp.read().split(b"\n") if line.startswith(b"data: ")]
        took = time.perf_counter() - start_t
        assert events[-1] == b"[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "cancelled"
        assert 0.5 < took < 5, took  # ran on until the shutdown timeout, then was cancelled
        with pytest.raises(OSError):  # no longer admitting
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_second_signal_exits_at_once(model_dir):
    proc, port = start(model_dir, "--shutdown-timeout", "60")
    try:
        resp = stream_request(port, {})
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # draining: the stream still runs
        proc.send_signal(signal.SIGTERM)
        start_t = time.perf_counter()
        assert proc.wait(timeout=5) == 1 and time.perf_counter() - start_t < 2
        resp.close()
    finally:
        proc.kill()
        proc.wait()
