"""`make serve` as a subprocess: started on a free port, waited for, stopped with SIGTERM, and
checked to leave no process behind."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.support.processes import alive, children, cmdline
from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 300


class MakeServe:
    """One `make serve` process; ``url`` and ``banner`` once :meth:`start` returns."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.banner = ""
        self.startup_s = 0.0

    def start(self) -> MakeServe:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        began = time.monotonic()
        # -o: the venv exists already (reinstalling would need the network).
        self.proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "serve", f"ARGS=--port {self.port}"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self._queue.put(line) for line in self.proc.stdout], daemon=True).start()
        want = f"epic-serve listening on {self.url}"
        deadline = began + STARTUP_TIMEOUT_S
        while not self.banner:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "no startup line:\n" + self.output()
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            self.lines.append(line)
            if want in line:
                self.banner = line
        self.startup_s = time.monotonic() - began
        return self

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        """SIGTERM to `epic serve`; asserts a clean exit and no process left behind."""
        family = children(self.proc.pid)
        epic = [pid for pid in family if b"bin/epic\0serve" in cmdline(pid)]
        assert len(epic) == 1, self.output()
        os.kill(epic[0], signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        assert code == 0, self.output()
        assert any("epic-serve stopping" in line for line in self.lines), self.output()
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in family if alive(pid)], "processes left behind"
