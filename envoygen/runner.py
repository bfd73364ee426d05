"""``envoygen run``'s supervisor: Envoy in the foreground, drained on SIGTERM as the image does.

Stock Envoy stops at once on SIGTERM and cuts in-flight requests. As the image's
PID 1 (``envoygen/assets/envoygen-init.c``), on the first SIGTERM or SIGINT this
supervisor instead

1. POSTs ``/healthcheck/fail`` to Envoy's admin endpoint: readiness turns 503 and
   responses carry ``connection: close``;
2. POSTs ``/drain_listeners``: the listeners stop accepting connections while the
   open ones carry on;
3. waits until no downstream connection is open (admin ``/stats`` every 200 ms),
   at most ``drain_seconds``;
4. sends SIGTERM to Envoy and returns Envoy's exit status.

A second SIGTERM/SIGINT cuts the wait short; ``drain_seconds`` 0 stops at once.
SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to Envoy. Envoy runs in its
own process group, so a Ctrl-C in the terminal reaches the supervisor only (it
would otherwise stop Envoy before the drain), and it is sent SIGTERM if the
supervisor dies.
"""

from __future__ import annotations

import ctypes
import http.client
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import EnvironmentProblem

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PASSED_ON = (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass


def admin_call(port: int, method: str, path: str, timeout: float = 1.0) -> tuple[int, str]:
    """One request to Envoy's admin on 127.0.0.1; (-1, "") when it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"connection": "close", "content-length": "0"})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return -1, ""
    finally:
        conn.close()


def active_connections(admin_port: int) -> int:
    """Downstream connections open on Envoy's listeners (admin's and per-worker copies left out);
    -1 when admin does not answer."""
    status, body = admin_call(admin_port, "GET", "/stats?filter=downstream_cx_active$")
    if status != 200:
        return -1
    total = 0
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if not name.startswith("listener.") or not name.endswith(".downstream_cx_active"):
            continue
        if name.startswith("listener.admin.") or ".worker_" in name or ".main_thread." in name:
            continue
        total += int(value or 0)
    return total


class Supervisor:
    def __init__(self, proc: subprocess.Popen, admin_port: int, drain_seconds: float,
                 say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.proc, self.admin_port, self.drain_seconds = proc, admin_port, drain_seconds
        self.say, self.clock = say, clock
        self.pending: list[int] = []
        self.state = "running"  # running → draining → stopping
        self.stop_at = 0.0
        self.deadline = 0.0

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.pending.append(signum)

    def _stop(self, why: str) -> None:
        self.say(why)
        self.state = "stopping"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def _first_stop_signal(self, name: str) -> None:
        self.stop_at = self.clock()
        if self.drain_seconds <= 0:
            self._stop(f"{name}: stopping Envoy (--drain-seconds 0: no drain)")
            return
        hc, _ = admin_call(self.admin_port, "POST", "/healthcheck/fail")
        dl, _ = admin_call(self.admin_port, "POST", "/drain_listeners")
        if hc != 200 or dl != 200:
            self._stop(f"{name}: admin 127.0.0.1:{self.admin_port} did not answer (healthcheck/fail {hc}, "
                       f"drain_listeners {dl}); stopping Envoy without draining")
            return
        self.say(f"{name}: draining: listeners closed to new connections, "
                 f"waiting up to {self.drain_seconds:g} s for the open ones")
        self.state = "draining"
        self.deadline = self.stop_at + self.drain_seconds

    def _handle(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in PASSED_ON:
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
        elif self.state == "running":
            self._first_stop_signal(name)
        elif self.state == "draining":
            self._stop(f"{name} again: stopping Envoy now")

    def _check_drain(self) -> None:
        open_ = active_connections(self.admin_port)
        if open_ == 0:
            self._stop(f"drained after {self.clock() - self.stop_at:.1f} s; stopping Envoy")
        elif self.clock() >= self.deadline:
            self._stop(f"drain time of {self.drain_seconds:g} s is over with {open_} connection(s) open; stopping Envoy")

    def wait(self) -> int:
        while True:
            try:
                code = self.proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                if self.state != "running":
                    self.say(f"envoy exited {self.clock() - self.stop_at:.1f} s after the stop signal")
                return code
            while self.pending:
                self._handle(self.pending.pop(0))
            if self.state == "draining":
                self._check_drain()


def run_supervised(cmd: Sequence[str], admin_port: int, drain_seconds: float, say: Callable[[str], None]) -> int:
    """Run Envoy (``cmd``) until it exits; drain it on SIGTERM/SIGINT. Returns its exit status."""
    try:
        proc = subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    sup = Supervisor(proc, admin_port, drain_seconds, say)
    previous = {s: signal.signal(s, sup.on_signal) for s in (*STOP_SIGNALS, *PASSED_ON)}
    try:
        return sup.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if proc.poll() is None:  # an exception on the way out: never leave Envoy behind
            proc.kill()
            proc.wait()
