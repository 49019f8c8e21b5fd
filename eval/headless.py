"""Headless Chromium for the project's HTML pages: the DOM once a page is ready (tests) and PNG
screenshots (`scratchpad show --screenshot`, the README pictures), driven over the DevTools
protocol. Uses the system's `chromium` (Debian's package; `.ci/run` installs it), never a
downloaded browser.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratchpad.errors import UserError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# no sandbox (CI runs as root), no GPU, no first-run chatter, a fixed scale so pictures repeat
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--disable-dev-shm-usage")


def find_browser() -> str | None:
    """Path of a Chromium-family browser on PATH (or $CHROMIUM), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def page_url(path: Path, query: str = "") -> str:
    """A file:// URL for a page on disk, with an optional query string (the pages' test hooks)."""
    return Path(path).resolve().as_uri() + (f"?{query}" if query else "")


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor above 4 (so moving it onto 3 or 4 cannot clobber the other)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class DevTools:
    """A headless Chromium driven over --remote-debugging-pipe (the DevTools protocol as NUL-separated
    JSON on fds 3 and 4): for pages that change after load, such as a streamed generation."""

    def __init__(self, timeout: float = 60):
        browser = find_browser()
        if browser is None:
            raise UserError("no headless Chromium found (install Debian's `chromium` package, or set $CHROMIUM)")
        self.profile = tempfile.TemporaryDirectory(prefix="sp-chromium-")
        to_browser, self._send = os.pipe()
        self._recv, from_browser = os.pipe()
        to_browser, from_browser = (_above_4(fd) for fd in (to_browser, from_browser))
        args = [browser, *FLAGS, f"--user-data-dir={self.profile.name}", "--remote-debugging-pipe", "about:blank"]
        # a tiny trampoline puts the pipe ends on the fds the protocol names (3: commands in, 4: answers out)
        move = (f"import os; os.dup2({to_browser}, 3); os.dup2({from_browser}, 4); "
                f"os.execv({args[0]!r}, {args!r})")
        self.proc = subprocess.Popen([sys.executable, "-c", move], pass_fds=(to_browser, from_browser),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser), os.close(from_browser)
        self.timeout, self._next, self._buffer, self.events = timeout, 0, b"", []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._recv], [], [], max(0.0, deadline - time.time()))[0]:
                raise UserError(f"headless Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._recv, 1 << 16)
            if not chunk:
                raise UserError("headless Chromium exited")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and wait for its answer (events seen meanwhile go to self.events)."""
        self._next += 1
        msg = dict(id=self._next, method=method, params=params, **({"sessionId": session} if session else {}))
        try:
            os.write(self._send, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise UserError("headless Chromium exited") from None
        deadline = time.time() + self.timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._next:
                if "error" in m:
                    raise UserError(f"headless Chromium: {method} failed: {m['error'].get('message')}")
                return m.get("result", {})
            self.events.append(m)

    def open(self, url: str, size: tuple[int, int] = (1280, 900)) -> str:
        """Load url in a new tab of size (width, height); its session id once the load event fired."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session, width=size[0], height=size[1], deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.enable", session)
        self.call("Page.navigate", session, url=url)
        deadline = time.time() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session for e in self.events):
            self.events.append(self._message(deadline))
        return session

    def evaluate_when(self, session: str, condition: str, value: str):
        """The JS expression `value` as soon as the JS expression `condition` holds (polled every 50 ms)."""
        wait = (f"new Promise(done => {{ const t = setInterval(() => {{ if ({condition}) {{ clearInterval(t); "
                f"done({value}); }} }}, 50); }})")
        got = self.call("Runtime.evaluate", session, expression=wait, awaitPromise=True, returnByValue=True,
                        timeout=int(self.timeout * 1000))
        if "exceptionDetails" in got:
            raise UserError(f"the page's script failed: {got['exceptionDetails'].get('text')}")
        return got["result"].get("value")

    def dom_when(self, url: str, condition: str) -> str:
        """The page's DOM as soon as `condition` holds."""
        return self.evaluate_when(self.open(url), condition, "document.documentElement.outerHTML")

    def screenshot_when(self, url: str, condition: str, png: Path, size: tuple[int, int] = (1280, 900)) -> Path:
        """A PNG of the page's first `size` pixels as soon as `condition` holds."""
        session = self.open(url, size)
        self.evaluate_when(session, condition, "true")
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        png = Path(png)
        png.write_bytes(base64.b64decode(data))
        return png

    def close(self):
        try:
            self.call("Browser.close")
        except UserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._send), os.close(self._recv)
        self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None) -> int:
    """`python -m eval.headless URL --png OUT [--when JS]`: a screenshot of a page once it is ready
    (the README's playground picture: a streamed generation has ended)."""
    from scratchpad.flags import Parser

    ap = Parser(prog="python -m eval.headless", description="A PNG of a web page once a JS condition holds.")
    ap.add_argument("url")
    ap.add_argument("--png", required=True, help="the PNG to write")
    ap.add_argument("--when", default="true", help="a JS expression; the picture is taken once it is true")
    ap.add_argument("--size", default="1280x900", help="viewport WIDTHxHEIGHT")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for the page and the condition")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        size = tuple(int(v) for v in a.size.lower().split("x"))
        assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
        raise UserError(f"--size {a.size!r}: give WIDTHxHEIGHT, e.g. 1280x900") from None
    with DevTools(a.timeout) as browser:
        print(f"-> {browser.screenshot_when(a.url, a.when, a.png, size)}")
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
