"""bench/dataplane.py stays runnable: one round of 1-second wrk runs through the minimal, rendered and
Istio-shaped proxies, HTTP and HTTPS, after the behaviour checks (the script exits non-zero on any
non-2xx response, socket error, or answer that did not come from the backend)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("wrk", "taskset", "unshare")),
                                reason="needs wrk, taskset and unshare")


def test_dataplane_runs_at_its_smallest_setting(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane.py"), "--rounds", "1", "--duration", "1",
                        "--connections", "4", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    names = ["minimal", "rendered", "istio", "istio-log"]
    assert result["configs"] == names
    for name in ("rendered", "istio", "istio-log"):  # Istio's observable behaviour, checked before measuring
        assert {"http unknown host 404", "https unknown host 404", "unknown SNI refused"} <= set(result["checks"][name])
    assert {(r["proto"], r["config"]) for r in result["runs"]} == {(p, n) for p in ("http", "https") for n in names}
    assert all(r["rps"] > 0 and r["requests"] > 0 for r in result["runs"])
    for proto in ("http", "https"):
        rows = result["summary"][proto]
        assert all(rows[n]["rps"] > 0 and rows[n]["cpu_us"] > 0 for n in names)
        for base in names:
            ratio = rows[base]["rendered_rps_ratio"]
            assert ratio == pytest.approx(rows["rendered"]["rps"] / rows[base]["rps"])
            assert rows[base]["rendered_cpu_ratio"] == pytest.approx(rows[base]["cpu_us"] / rows["rendered"]["cpu_us"])
            assert 0.1 < ratio < 10
    saved = tmp_path / "run.json"  # --from-json reprints the table from a saved run
    saved.write_text(p.stdout)
    table = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane.py"), "--from-json", str(saved)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert table.returncode == 0, table.stderr
    assert [line.split(" | ")[1] for line in table.stdout.splitlines()[2:]] == names * 2


def test_dataplane_ablation_configs_load() -> None:
    """--ablate: every 'rendered minus one setting' bootstrap is accepted by Envoy and answers 200."""
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane.py"), "--ablate", "--rounds", "1",
                        "--duration", "1", "--connections", "2", "--json"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert len(result["configs"]) == 2 + 14 and result["configs"][:2] == ["minimal", "rendered"]
    assert {r["config"] for r in result["runs"]} == set(result["configs"])
    assert all(r["rps"] > 0 for r in result["runs"]) and set(result["summary"]) == {"http"}


def test_dataplane_ablation_over_https() -> None:
    """--ablate --protocols https: the TLS-side variants load and answer over HTTPS (one round)."""
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "dataplane.py"), "--ablate", "--protocols", "https",
                        "--variants", "no-tls-inspector,no-xfcc", "--rounds", "1", "--duration", "1",
                        "--connections", "2", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["configs"] == ["minimal", "rendered", "rendered-no-tls-inspector", "rendered-no-xfcc"]
    assert {r["proto"] for r in result["runs"]} == {"https"} and set(result["summary"]) == {"https"}
    assert all(r["rps"] > 0 for r in result["runs"])


def test_a_non_2xx_answer_fails_the_run(tmp_path: Path) -> None:
    """The check behind 'zero non-2xx': wrk against a server answering 404 makes the run fail loudly."""
    import argparse

    from harness import Backend

    sys.path.insert(0, str(ROOT / "bench"))
    import dataplane

    with Backend("not-found", status=404) as server:
        with pytest.raises(SystemExit, match="wrk saw failures"):
            dataplane.wrk(f"http://127.0.0.1:{server.port}/", "0",
                          argparse.Namespace(threads=1, connections=2, duration=1), tmp_path / "hosts")
