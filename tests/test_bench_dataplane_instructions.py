"""bench/dataplane_instructions.py stays runnable (its smallest runs: two configs, under valgrind,
and with --syscalls under strace), and its traffic check fails loudly on an answer that is not
a 200. The runs are skipped without valgrind / strace, except under CI=true (.ci/run installs
them), where that fails."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_dataplane_instructions_runs_at_its_smallest_size() -> None:
    if shutil.which("valgrind") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("valgrind is missing (Debian: apt-get install valgrind; .ci/run installs it)")
        pytest.skip("needs valgrind")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane_instructions.py"), "--requests", "40",
                        "--connections", "2", "--repeats", "1", "--protocols", "http", "--configs", "minimal,rendered",
                        "--json"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["config"]: r for r in json.loads(p.stdout)}
    assert set(rows) == {"minimal", "rendered"} and {r["proto"] for r in rows.values()} == {"http"}
    assert all(10**4 < r["median"] < 10**8 for r in rows.values())  # an HTTP request through Envoy: ~10^5
    assert rows["rendered"]["rendered_over_this"] == 1.0
    assert rows["minimal"]["rendered_over_this"] == rows["rendered"]["median"] / rows["minimal"]["median"]
    assert "http 200" in rows["rendered"]["checks"] and "http unknown host 404" in rows["rendered"]["checks"]


def test_dataplane_syscalls_runs_at_its_smallest_size() -> None:
    if shutil.which("strace") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is missing (Debian: apt-get install strace; .ci/run installs it)")
        pytest.skip("needs strace")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane_instructions.py"), "--syscalls", "--requests",
                        "40", "--connections", "2", "--repeats", "1", "--protocols", "https",
                        "--configs", "minimal,rendered", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["config"]: r for r in json.loads(p.stdout)}
    assert set(rows) == {"minimal", "rendered"} and {r["proto"] for r in rows.values()} == {"https"}
    # a keep-alive request costs a proxy ~10 system calls (epoll_wait, reads, sends); two handshakes add some
    assert all(3 < r["median"] < 100 for r in rows.values()), rows


def test_traffic_refuses_an_answer_that_is_not_200() -> None:
    from dataplane_instructions import traffic

    class NotFound(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SystemExit, match="404"):
            traffic(server.server_address[1], None, 4, 2)
    finally:
        server.shutdown()
        server.server_close()
