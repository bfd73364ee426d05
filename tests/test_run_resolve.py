"""``envoygen run`` on the host (issue 12): --resolve serves the coolstore sample
with local backends; unresolvable cluster names are warned about; "listening"
comes only once Envoy is ready; a port in use exits 3."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness import free_ports, http_get, wait_until

REPO = Path(__file__).resolve().parent.parent
WEBAPP = "webapp.istioinaction.svc.cluster.local"


def start_run(*args: str) -> tuple[subprocess.Popen, list[str]]:
    err_lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-m", "envoygen", "run", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            err_lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, err_lines


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def test_resolve_serves_coolstore_with_local_backends(backend_factory) -> None:
    webapp = backend_factory("webapp")
    http, admin, ready, stats = free_ports(4)
    proc, err = start_run("-f", "samples/coolstore", "--port-map", f"80={http}", "--admin-port", str(admin),
                          "--readiness-port", str(ready), "--stats-port", str(stats), "--drain-seconds", "0",
                          "--resolve", f"{WEBAPP}:8080=127.0.0.1:{webapp.port}")
    try:
        wait_until(lambda: any(ln.startswith("listening on") for ln in err) or proc.poll() is not None,
                   timeout=60, message="envoygen run never said listening")
        assert proc.poll() is None, err
        # "listening" is printed only once Envoy is ready: the first request works at once
        r = http_get(None, http, "/api/catalog", host="webapp.istioinaction.io")
        assert r.status == 200 and r.headers["x-backend"] == "webapp", r
        # catalog was not given: its name does not resolve here, and run said so before serving
        warn = [ln for ln in err if "does not resolve on this host" in ln]
        assert len(warn) == 1 and "catalog.istioinaction.svc.cluster.local" in warn[0] and "--resolve" in warn[0], err
        assert err.index(warn[0]) < next(i for i, ln in enumerate(err) if ln.startswith("listening on"))
        assert not any(WEBAPP in ln for ln in warn)
    finally:
        code = stop(proc)
    assert code == 0, err


def test_resolve_of_a_name_no_endpoint_has_is_a_usage_error() -> None:
    p = subprocess.run([sys.executable, "-m", "envoygen", "run", "-f", "samples/coolstore",
                        "--resolve", "nothing.example.com=127.0.0.1"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "no cluster endpoint is named nothing.example.com" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "envoygen", "run", "-f", "samples/coolstore",
                        "--resolve", f"{WEBAPP}=not-an-ip"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "IP address" in p.stderr, p.stderr


def test_port_in_use_exits_3_before_starting_envoy() -> None:
    http, admin, ready, stats = free_ports(4)
    holder = socket.socket()
    holder.bind(("0.0.0.0", http))
    holder.listen(1)
    try:
        start = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "envoygen", "run", "-f", "samples/coolstore", "--port-map",
                            f"80={http}", "--admin-port", str(admin), "--readiness-port", str(ready),
                            "--stats-port", str(stats)], cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert p.returncode == 3, p.stderr
    assert f"cannot listen on 0.0.0.0:{http}" in p.stderr and "listening on" not in p.stderr, p.stderr
    assert time.monotonic() - start < 60
