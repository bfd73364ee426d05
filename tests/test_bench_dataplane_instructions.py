"""bench/dataplane_instructions.py stays runnable (its smallest runs: two configs, under valgrind,
and with --syscalls under strace), and its traffic check fails loudly on an answer that is not
a 200. The runs are skipped without valgrind / strace, except under CI=true (.ci/run installs
them), where that fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Backend
from image_fixtures import require_tool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_dataplane_instructions_runs_at_its_smallest_size() -> None:
    require_tool("valgrind", "valgrind")
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
    require_tool("strace", "strace")
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

    with Backend("not-found", status=404) as server:
        with pytest.raises(SystemExit, match="404"):
            traffic(server.port, None, 4, 2)
