"""Installing missing corpus sources: apt-get for Debian packages, `pip install --target` into the
cache for PyPI ones. Every command is printed; a failure is a warning and the source is skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys
from shutil import which
from typing import Callable

from train.corpus.sources import Context, Located, Source


class Installer:
    """Installs missing sources, printing each command; failures are warnings, never fatal."""

    def __init__(self, ctx: Context, warn: Callable[[str], None]):
        self.ctx, self.warn = ctx, warn
        self.apt_updated = False
        self.tried: set[str] = set()

    def _run(self, cmd: list[str], env=None) -> subprocess.CompletedProcess | None:
        self.ctx.log("running: " + " ".join(cmd))
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env)
        except OSError as e:
            self.warn(f"could not run {cmd[0]}: {e.strerror or e}")
            return None

    def apt(self, packages: tuple[str, ...]) -> bool:
        if os.name != "posix" or which("apt-get") is None:
            self.warn(f"apt-get not available; install {packages[0]} by hand")
            return False
        if os.geteuid() != 0:
            self.warn(f"not root; run: sudo apt-get install {packages[0]}")
            return False
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for pkg in packages:
            if pkg in self.tried:
                continue
            self.tried.add(pkg)
            for attempt in range(2):
                r = self._run(["apt-get", "install", "-y", "-q", "--no-install-recommends", pkg], env)
                if r is None:
                    return False
                if r.returncode == 0:
                    return True
                if attempt == 0 and not self.apt_updated:
                    self.apt_updated = True
                    self._run(["apt-get", "update", "-q"], env)
                    continue
                break
            self.warn(f"apt-get install {pkg} failed: {_last_line(r.stderr or r.stdout)}")
        return False

    def pip(self, package: str) -> bool:
        if package in self.tried:
            return False
        self.tried.add(package)
        target = self.ctx.pip_target(package)
        r = self._run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                       "--no-deps", "--upgrade", "--target", str(target), package])
        if r is None:
            return False
        if r.returncode != 0:
            self.warn(f"pip install {package} failed: {_last_line(r.stderr or r.stdout)}")
            return False
        return True


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("WARNING: Running pip")]
    return lines[-1] if lines else "(no output)"


def locate_all(
    sources: list[Source], ctx: Context, install: bool, warn: Callable[[str], None]
) -> tuple[dict[str, Located], dict[str, str]]:
    """Locate each source, installing missing ones first when `install`. Returns (found, missing):
    missing maps a source name to a one-line explanation (the caller warns and skips it)."""
    installer = Installer(ctx, warn) if install else None
    found: dict[str, Located] = {}
    missing: dict[str, str] = {}
    for src in sources:
        loc = src.locate(ctx)
        if loc is None and installer is not None:
            if src.apt:
                installer.apt(src.apt)
            elif src.pip:
                installer.pip(src.pip)
            loc = src.locate(ctx)
        if loc is None:
            how = f"apt-get install {src.apt[0]}" if src.apt else f"pip install {src.pip}" if src.pip else "-"
            missing[src.name] = f"source {src.name} not found, skipped ({src.description}; provided by: {how})"
            continue
        found[src.name] = loc
    return found, missing
