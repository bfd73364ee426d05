"""``envoygen run`` drains on SIGTERM as the image does (envoygen/runner.py): an in-flight request
completes with 200, new connections are refused from about the moment the signal arrives,
readiness fails, and Envoy stops as soon as the request is answered; ``--drain-seconds`` bounds
the wait (a longer request is cut), 0 stops at once, and a second SIGTERM cuts the drain short.
Before, ``run`` passed SIGTERM straight to Envoy and the request was cut after 0.07 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness import free_ports, http_get, wait_until
from test_run import YAML, _ready


class Run:
    """``envoygen run`` on the test YAML, with its ports and stderr."""

    def __init__(self, src: Path, *extra: str) -> None:
        self.http, self.admin, self.ready, self.stats = free_ports(4)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "envoygen", "run", "-f", str(src), "--port-map", f"80={self.http}",
             "--admin-port", str(self.admin), "--readiness-port", str(self.ready), "--stats-port", str(self.stats),
             "--log-level", "warn", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group, as a shell gives a foreground job
        wait_until(lambda: _ready(self.ready) or self.proc.poll() is not None, timeout=30,
                   message="envoygen run never got ready")
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        return self.proc.returncode, self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def started(backend_factory, tmp_path):  # noqa: ANN001, ANN201
    app = backend_factory("app")
    src = tmp_path / "in.yaml"
    src.write_text(YAML.format(port=app.port))
    runs: list[Run] = []

    def start(*extra: str) -> Run:
        runs.append(Run(src, *extra))
        return runs[-1]

    yield app, start
    for r in runs:
        r.stop()


def _in_flight(run: Run, app: Any, delay: float) -> tuple[threading.Thread, dict]:
    """A request the backend holds for ``delay`` s, started in a thread; returns once the backend has it."""
    result: dict[str, Any] = {}

    def go() -> None:
        t0 = time.monotonic()
        try:
            r = http_get(None, run.http, "/slow", host="run.example.com", headers={"x-harness-delay": str(delay)},
                         timeout=delay + 10)
            result.update(status=r.status, headers=r.headers)
        except Exception as exc:  # noqa: BLE001 - the cut request is what some tests expect
            result["error"] = repr(exc)
        result["elapsed"] = time.monotonic() - t0

    before = app.count
    t = threading.Thread(target=go, daemon=True)
    t.start()
    wait_until(lambda: app.count > before, timeout=5, message="the slow request never reached the backend")
    return t, result


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_in_flight_request_completes_across_sigterm(started) -> None:  # noqa: ANN001
    app, start = started
    run = start()
    t, result = _in_flight(run, app, 3.0)
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: _refused(run.http), timeout=2, message="new connections still accepted after SIGTERM")
    refused_after = time.monotonic() - sent
    assert not _ready(run.ready)
    code = run.proc.wait(timeout=15)
    stopped_after = time.monotonic() - sent
    t.join(timeout=10)
    _, err = run.stop()
    assert result.get("status") == 200, (result, err)
    assert result["headers"].get("connection") == "close", result["headers"]
    assert code == 0, err
    assert refused_after < 1.5, refused_after
    assert 1.5 < stopped_after < 4.5, (stopped_after, err)  # when the 3 s request was answered, not at 5 s
    assert "draining: listeners closed to new connections, waiting up to 5 s" in err, err
    assert "drained after" in err and "envoy exited" in err, err
    assert Path(err.split("bundle ", 1)[1].split()[0]).exists() is False


def test_drain_seconds_bounds_the_wait(started) -> None:  # noqa: ANN001
    app, start = started
    run = start("--drain-seconds", "1")
    t, result = _in_flight(run, app, 8.0)
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code = run.proc.wait(timeout=15)
    stopped_after = time.monotonic() - sent
    t.join(timeout=10)
    _, err = run.stop()
    assert code == 0, err
    assert 0.8 < stopped_after < 3.0, (stopped_after, err)
    assert "drain time of 1 s is over with 1 connection(s) open" in err, err
    assert result.get("status") != 200 and result["elapsed"] < 6, result


def test_no_drain_and_second_signal(started) -> None:  # noqa: ANN001
    app, start = started
    run = start("--drain-seconds", "0")
    t, result = _in_flight(run, app, 8.0)
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(timeout=15)
    assert time.monotonic() - sent < 2.0
    t.join(timeout=10)
    _, err = run.stop()
    assert "no drain" in err and result.get("status") != 200, (err, result)

    run = start("--drain-seconds", "30")
    t, result = _in_flight(run, app, 8.0)
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: _refused(run.http), timeout=2, message="not draining")
    run.proc.send_signal(signal.SIGTERM)
    code = run.proc.wait(timeout=15)
    assert time.monotonic() - sent < 3.0
    t.join(timeout=10)
    _, err = run.stop()
    assert code == 0 and "SIGTERM again: stopping Envoy now" in err, err


def test_ctrl_c_in_a_terminal_drains_too(started) -> None:  # noqa: ANN001
    """Ctrl-C signals the whole foreground process group: Envoy, in its own group, does not get it
    directly, so the in-flight request still completes."""
    app, start = started
    run = start()
    t, result = _in_flight(run, app, 2.0)
    os.killpg(run.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    code = run.proc.wait(timeout=15)
    t.join(timeout=10)
    _, err = run.stop()
    assert code == 0 and result.get("status") == 200, (result, err)
    assert "SIGINT: draining" in err, err
