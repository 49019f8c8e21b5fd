"""The harness of `scratchpad bench gpu`: runs each step as a child process so that nothing it
measured can be lost.

A child runs as `python -X faulthandler -u ...` with PYTHONUNBUFFERED=1, in its own process group,
its stdout and stderr going straight to OUT/<step>.txt: every line is on disk the moment it is
printed. At `limit - grace` seconds the group gets SIGINT (KeyboardInterrupt: pytest still prints
what it ran), at `limit` SIGABRT (faulthandler writes every thread's stack into the file), and
KILL_WAIT_S later SIGKILL; if this process dies, the child gets SIGKILL (Linux). Each step's row
is written to OUT/summary.json and OUT/README.md (temporary file, then rename) when the step
starts (status "running") and again when it ends, so a kill of this process at any moment leaves
every finished step on disk.

Statuses: passed, failed (non-zero exit), timeout, skipped (the run's budget was spent),
interrupted (this process was stopped mid-step), running (this process died mid-step).
"""
from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]  # children run here (pytest finds tests/)
GRACE_S = 10.0      # SIGINT this long before the limit (at most a fifth of the limit)
KILL_WAIT_S = 2.0   # SIGKILL this long after SIGABRT
MIN_STEP_S = 5.0    # a step is skipped when less than this is left of the budget
TAIL_BYTES = 1 << 16


@dataclass
class Step:
    name: str
    argv: list[str]     # arguments after `python -X faulthandler -u`; "{out}" becomes the report folder
    timeout_s: float
    headline: Callable[[dict], str] | None = None  # the step's last JSON line -> one README line
    # (without one, or without a JSON line, the README shows the output's last line)
    extra_files: tuple[str, ...] = ()  # files the step writes under OUT besides its output

    @property
    def output(self) -> str:
        return f"{self.name}.txt"

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-X", "faulthandler", "-u", *(a.replace("{out}", str(out)) for a in self.argv)]


def last_json(path: Path) -> dict | None:
    """The last line of the file that parses as a JSON object (read from its last 64 KiB)."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Report:
    """summary.json and README.md, rewritten whole (atomically) on every change of a row."""

    def __init__(self, out: Path, title: str, budget_s: float, order: list[str]):
        self.out, self.title, self.budget_s, self.order = out, title, budget_s, order
        self.rows: list[dict] = []
        self.headlines: dict[str, str] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.t0 = time.monotonic()
        self.complete = False  # True once every step has its final row

    def put(self, row: dict, headline: str | None = None):
        """Add the row, or replace the row of the same step (rows stay in plan order)."""
        self.rows = sorted([r for r in self.rows if r["step"] != row["step"]] + [row],
                           key=lambda r: self.order.index(r["step"]))
        self.headlines.pop(row["step"], None)
        if headline:
            self.headlines[row["step"]] = headline
        self.write()

    def write(self):
        wall = round(time.monotonic() - self.t0, 1)
        write_atomic(self.out / "summary.json", json.dumps(
            dict(title=self.title, started=self.started, budget_s=self.budget_s, wall_s=wall, complete=self.complete,
                 steps=self.rows), indent=2) + "\n")
        state = f"finished in {wall:.0f} s" if self.complete else f"not finished: written at {wall:.0f} s"
        lines = [f"# {self.title}", "", f"Started {self.started}, {state} (budget {self.budget_s:g} s). "
                 "Each step's full output is in the file named beside it; its numbers are in summary.json.", "",
                 "| step | status | seconds | limit | output | command |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['step']} | {r['status']} | {r.get('seconds', '-')} | {r.get('limit_s', '-')} | "
                         f"{r['output']} | `{r['command']}` |")
        if self.headlines:
            lines += ["", "## Results", ""] + [f"- **{r['step']}**: {self.headlines[r['step']]}" for r in self.rows
                                               if r["step"] in self.headlines]
        write_atomic(self.out / "README.md", "\n".join(lines) + "\n")


def _signal_group(p: subprocess.Popen, sig: int):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(p: subprocess.Popen, until: float) -> int | None:
    try:
        return p.wait(timeout=max(0.0, until - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def _die_with_parent(parent: int):
    """In the child before exec (Linux): SIGKILL when the harness dies, so a harness killed with
    SIGKILL leaves no step running on."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the harness died before prctl took effect
            os._exit(1)


def run_child(argv: list[str], output: Path, limit: float, grace: float) -> tuple[str, int | None]:
    """Run argv with stdout + stderr into `output`; stop it at its limit (SIGINT, SIGABRT, SIGKILL).
    -> (status, return code). A KeyboardInterrupt here stops the child's group and propagates."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    start = time.monotonic()
    with open(output, "wb", buffering=0) as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                             start_new_session=True, preexec_fn=functools.partial(_die_with_parent, os.getpid()))
        try:
            rc = _wait(p, start + limit - grace)
            if rc is None:
                _signal_group(p, signal.SIGINT)
                rc = _wait(p, start + limit)
                if rc is None:
                    _signal_group(p, signal.SIGABRT)
                    if _wait(p, start + limit + KILL_WAIT_S) is None:
                        _signal_group(p, signal.SIGKILL)
                        p.wait()
                rc = p.returncode
                status = "timeout"
            else:
                status = "passed" if rc == 0 else "failed"
        except BaseException:  # this process is being stopped: take the child's group down with it
            _signal_group(p, signal.SIGKILL)
            p.wait()
            raise
        finally:
            _signal_group(p, signal.SIGKILL)  # anything the child left running (compile workers)
    return status, rc


def log_line(text: str):
    print(text, flush=True)  # a pipe would hold the lines back from whoever watches the run


def run_plan(steps: list[Step], out: Path, budget_s: float, title: str, log=log_line,
             plan: list[Step] | None = None) -> list[dict]:
    """Run the steps in order, each within its limit and what is left of the budget; the report is
    rewritten at every step's start and end. plan: the whole plan `steps` come from, whose other
    steps keep their rows from OUT/summary.json (a rerun of some steps). SIGTERM, like Ctrl-C,
    stops the running step, records it as interrupted and raises KeyboardInterrupt. -> the rows."""
    plan = plan or steps
    report = Report(out, title, budget_s, [s.name for s in plan])
    for row, headline in earlier_rows(out, [s for s in plan if s not in steps]):
        report.put(row, headline)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _run_steps(steps, out, report, log)
    finally:
        signal.signal(signal.SIGTERM, previous)


def earlier_rows(out: Path, keep: list[Step]) -> list[tuple[dict, str | None]]:
    """The rows of an earlier run (OUT/summary.json) for the steps in `keep`, with their README lines."""
    try:
        rows = json.loads((out / "summary.json").read_text())["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    by_name = {s.name: s for s in keep}
    return [(r, row_headline(by_name[r["step"]], r)) for r in rows if isinstance(r, dict) and r.get("step") in by_name]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_steps(steps: list[Step], out: Path, report: Report, log) -> list[dict]:
    budget_s = report.budget_s
    for st in steps:
        left = budget_s - (time.monotonic() - report.t0) - KILL_WAIT_S
        argv = st.command(out)
        row = dict(step=st.name, command=shlex.join(argv), output=st.output)
        if left < MIN_STEP_S:
            report.put(dict(row, status="skipped", reason=f"budget of {budget_s:g} s spent"))
            log(f"[{st.name}] skipped: the budget is spent")
            continue
        limit = round(min(st.timeout_s, left), 1)
        grace = min(GRACE_S, limit / 5)
        row["limit_s"] = limit
        report.put(dict(row, status="running"))
        log(f"[{st.name}] {row['command']}  (limit {limit:g} s)")
        t0 = time.monotonic()
        try:
            status, rc = run_child(argv, out / st.output, limit, grace)
        except KeyboardInterrupt:
            report.put(dict(row, status="interrupted", seconds=round(time.monotonic() - t0, 1)))
            raise
        result = last_json(out / st.output)
        row.update(status=status, returncode=rc, seconds=round(time.monotonic() - t0, 1),
                   last_line=tail(out / st.output, 1).strip()[:300])
        if result is not None:
            row["result"] = result
        headline = row_headline(st, row)
        report.put(row, headline)
        log(f"[{st.name}] {status} in {row['seconds']} s -> {out / st.output}" + (f": {headline}" if headline else ""))
        if status != "passed":
            log(tail(out / st.output))
    report.complete = True
    report.write()
    return report.rows


def row_headline(st: Step, row: dict) -> str | None:
    """The README line of a finished row: the step's line from its JSON result, else the output's
    last line. A JSON line of an unexpected shape says so instead of stopping the run."""
    result, ending = row.get("result"), row.get("last_line", "")
    if st.headline is not None and result is not None:
        try:
            return st.headline(result)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            return f"(its JSON line has an unexpected shape: {type(e).__name__} {e}; see summary.json)"
    return f"`{ending[:200]}`" if ending and not ending.startswith("{") else None


def tail(path: Path, lines: int = 12) -> str:
    """The last non-empty lines of a step's output, indented (printed when a step did not pass)."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        text = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in text)
