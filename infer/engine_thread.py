"""The server's engine side: one thread steps the scheduler; requests hand their sequences to it
and get bytes and ends back on the web loop; admission counts what is in flight."""
from __future__ import annotations

import asyncio
import sys
import threading
import traceback

from infer.sequence import Sequence


class EngineThread:
    """Runs Scheduler.step in a loop on its own thread; the web loop submits and cancels. The
    scheduler pins an exception to its request; one that escapes a step anyway (a bug in the
    scheduler itself) fails what is in flight, and the thread goes on."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.wake = threading.Event()
        self.stopping = False
        self.aborts = 0
        self.thread = threading.Thread(target=self._loop, name="scratchpad-engine", daemon=True)
        self.thread.start()

    @property
    def errors(self) -> int:
        return self.scheduler.errors + self.aborts

    def submit(self, seq: Sequence):
        self.scheduler.submit(seq)
        self.wake.set()

    def cancel(self, seq: Sequence):
        self.scheduler.cancel(seq)
        self.wake.set()

    def cancel_all(self):
        self.scheduler.cancel_all()
        self.wake.set()

    def stop(self):
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=10)

    def _loop(self):
        while not self.stopping:
            if not self.scheduler.has_work():
                self.wake.wait(0.1)
                self.wake.clear()
                continue
            try:
                self.scheduler.step()
            except Exception:
                self.aborts += 1
                traceback.print_exc(file=sys.stderr)
                self.scheduler.abort_all()


class Pending:
    """One HTTP request's sequences: their bytes (when streaming) and ends, handed from the engine
    thread to the web loop in order; `all_done` is set when the last one ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, on_each_done=None):
        self.loop, self.queue, self.left = loop, asyncio.Queue(), count
        self.all_done = asyncio.Event()
        self.on_each_done = on_each_done

    def on_bytes(self, seq: Sequence, data: bytes):
        self._post(self.queue.put_nowait, ("bytes", seq.index, data))

    def on_done(self, seq: Sequence):
        self._post(self._done, seq)

    def _post(self, fn, arg):
        try:
            self.loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the web loop has closed (shutdown): nobody is waiting
            pass

    def _done(self, seq: Sequence):
        self.queue.put_nowait(("done", seq.index, seq))
        if self.on_each_done is not None:
            self.on_each_done()
        self.left -= 1
        if not self.left:
            self.all_done.set()


class Admission:
    """Requests' sequences in flight (calibrating, waiting or in a slot) against the server's
    capacity (slots + queue). Used on the web loop only, so no lock."""

    def __init__(self, slots: int, queue: int):
        self.slots, self.queue = slots, queue
        self.in_flight = 0
        self.draining = False

    @property
    def capacity(self) -> int:
        return self.slots + self.queue

    def has_room(self, n: int) -> bool:
        return self.in_flight + n <= self.capacity

    def take(self, n: int):
        self.in_flight += n

    def release(self, n: int = 1):
        self.in_flight -= n
