"""A warm worker process that runs one function under a hard deadline per call.

Some computations cannot be bounded from inside (SymPy may spend tens of seconds in one operation), so
the calculator runs them in a child process: one JSON request per line on its stdin, one JSON reply per
line on its stdout. The parent waits for a reply at most the call's deadline; past it, it kills the
child and starts a fresh one at once, which warms up while the agent does other work. The child limits
its own memory, ignores Ctrl-C (the parent handles it) and exits when its stdin closes (the parent ended).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable

STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to import its function (busy machines start Python slowly)."""


class WorkerError(Exception):
    """The worker could not start or stopped while answering; its text says why."""


class Worker:
    """A child process running ``target`` ("module:function", called with a request's keyword arguments).

    ``call`` is thread-safe and serialised; each process (also a forked one) starts its own child.
    """

    def __init__(self, target: str, *, memory_mb: int = 2048) -> None:
        self.target = target
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._ready = False
        self._buffer = b""
        atexit.register(self.close)

    def call(self, request: dict[str, Any], timeout: float) -> Any | None:
        """The function's result for ``request``, or None when it took longer than ``timeout`` seconds
        (the worker is then replaced). Raises WorkerError when the worker fails to start or dies."""
        with self._lock:
            self._wait_ready()
            process = self._process
            assert process is not None and process.stdin is not None
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
                reply = self._read_line(time.monotonic() + timeout)
            except OSError:
                self._replace()
                raise WorkerError("the worker process stopped; it is restarted") from None
            except BaseException:  # e.g. Ctrl-C while waiting: the reply would answer the next request
                self._stop()
                raise
            if reply is None:
                self._replace()
                return None
            return reply["result"]

    def start(self) -> None:
        """Start the worker now (if none is running) without waiting for it, so it is warm when needed."""
        with self._lock:
            self._spawn_if_needed()

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it; it is killed if it does not end at once)."""
        process, self._process = self._process, None
        if process is None or self._owner != os.getpid():
            return
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    # --- the child process -------------------------------------------------------------------------

    def _spawn_if_needed(self) -> None:
        if self._process is not None and self._owner == os.getpid() and self._process.poll() is None:
            return
        if self._owner == os.getpid():
            self.close()  # a dead worker: reap it
        self._process = None  # a process inherited through fork belongs to the parent: leave it alone
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "misstep_tools.worker", self.target, str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment,
            start_new_session=True,  # Ctrl-C in the terminal goes to the parent only
        )
        self._owner = os.getpid()
        self._ready = False
        self._buffer = b""

    def _wait_ready(self) -> None:
        self._spawn_if_needed()
        if self._ready:
            return
        hello = self._read_line(time.monotonic() + STARTUP_TIMEOUT)
        if hello is None or "error" in hello:
            reason = "it did not start in time" if hello is None else hello["error"]
            self.close()
            raise WorkerError(f"the worker process for {self.target} could not start: {reason}")
        self._ready = True

    def _stop(self) -> None:
        """Kill the worker: it may be stuck in C code."""
        if self._process is not None and self._owner == os.getpid():
            self._process.kill()
            self.close()

    def _replace(self) -> None:
        """Kill the worker and start a fresh one at once, to be warm by the next call."""
        self._stop()
        self._spawn_if_needed()

    def _read_line(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line from the worker, or None at the deadline. WorkerError if it stopped."""
        process = self._process
        assert process is not None and process.stdout is not None
        descriptor = process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(descriptor, 1 << 16)
            if not chunk:
                code = process.wait()
                self._replace()
                raise WorkerError(f"the worker process stopped (exit code {code}); it is restarted")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)


def _limit_memory(megabytes: int) -> None:
    try:
        import resource
    except ImportError:  # not on this platform: the deadline still holds
        return
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve(target: str, memory_mb: int) -> None:
    """The child's loop: import ``target``, say ready, then answer one request per line until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol

    def send(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        module, _, name = target.partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        _limit_memory(memory_mb)
    except Exception as error:
        send({"error": f"{type(error).__name__}: {error}"})
        return
    send({"ready": True})
    for line in sys.stdin:
        send({"result": function(**json.loads(line))})


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
