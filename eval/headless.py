"""Headless Chromium for the project's HTML pages: the rendered DOM (tests) and PNG screenshots
(`scratchpad show --screenshot`, the README picture). Uses the system's `chromium` (Debian's
package; `.ci/run` installs it), never a downloaded browser.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
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


def _run(url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise UserError("no headless Chromium found (install Debian's `chromium` package, or set $CHROMIUM)")
    # a throwaway profile: parallel runs never share (or lock) one
    with tempfile.TemporaryDirectory(prefix="sp-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"headless Chromium did not finish {url} within {timeout:g} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"headless Chromium failed on {url} (exit {done.returncode}): {tail[0]}")
    return done


def dump_dom(url: str, budget_ms: int = 3000, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (virtual time `budget_ms`), serialised as HTML."""
    return _run(url, ["--dump-dom", f"--virtual-time-budget={budget_ms}"], timeout).stdout.decode("utf-8")


HARNESS = """<!DOCTYPE html><meta charset="utf-8"><body><script>
const urls = %s;
urls.forEach((url, k) => {
  const f = document.createElement("iframe");
  f.onload = () => {
    const out = document.createElement("div");
    out.id = "page-" + k;
    out.innerHTML = f.contentDocument.body.innerHTML;
    document.body.appendChild(out);
    f.remove();
  };
  f.src = url;
  document.body.appendChild(f);
});
</script></body>"""


def dump_pages(urls: list[str], budget_ms: int = 5000, timeout: float = 120) -> list[str]:
    """Each file:// page's <body> after its scripts ran, from ONE browser launch (a harness page
    loads them in iframes and copies their DOMs out): much faster than a launch per page."""
    with tempfile.TemporaryDirectory(prefix="sp-harness-") as tmp:
        harness = Path(tmp) / "harness.html"
        harness.write_text(HARNESS % json.dumps(urls), encoding="utf-8")
        dom = _run(page_url(harness), ["--allow-file-access-from-files", "--dump-dom",
                                       f"--virtual-time-budget={budget_ms}"], timeout).stdout.decode("utf-8")
    parts = {}
    for k in range(len(urls)):
        start = dom.find(f'<div id="page-{k}">')
        if start < 0:
            raise UserError(f"headless Chromium did not render {urls[k]}")
        parts[k] = start
    bounds = sorted(parts.values()) + [len(dom)]
    return [dom[parts[k]:bounds[bounds.index(parts[k]) + 1]] for k in range(len(urls))]


def screenshot(url: str, png: Path, size: tuple[int, int] = (1280, 900), budget_ms: int = 3000,
               timeout: float = 60) -> Path:
    """A PNG of the page's first `size` pixels (width, height)."""
    png = Path(png).resolve()
    _run(url, [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}"],
         timeout)
    if not png.is_file():
        raise UserError(f"headless Chromium wrote no screenshot to {png}")
    return png
