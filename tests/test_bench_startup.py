"""bench/startup.py stays runnable: its smallest size, one round, the stock Envoy started on
the rendered YAML and JSON bootstraps and on the lean hand-written one."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("bench_startup", ROOT / "bench" / "startup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_startup_runs_at_its_smallest_size() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--sizes", "10", "--rounds", "1", "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    rows = out["rows"]
    assert [(r["hosts"], r["format"]) for r in rows] == [(10, "yaml"), (10, "json"), (10, "lean")]
    for r in rows:
        assert r["rounds"] == 1
        assert 0 < r["ready_s"] < 60 and 0 < r["cpu_s"] < 60
        assert 10 < r["peak_mib"] < 2048  # VmHWM of a real Envoy
        assert 300 < r["bytes_per_host"] < 100_000
        assert set(r["vs_lean"]) == {"ready_s", "cpu_s", "peak_mib", "bytes"}
        assert all(v > 0 for v in r["vs_lean"].values())
    lean = rows[2]
    assert lean["vs_lean"] == {"ready_s": 1.0, "cpu_s": 1.0, "peak_mib": 1.0, "bytes": 1.0}
    assert rows[0]["bytes"] > lean["bytes"] and rows[1]["bytes"] > lean["bytes"]  # the lean one is leaner
    assert [v.split(":")[0] for v in out["verdicts"]] == ["10 hosts, yaml", "10 hosts, json"]
    assert all("met" in v for v in out["verdicts"])
    assert "Envoy 1." in out["machine"] and ("taskset -c" in out["machine"] or "not pinned" in out["machine"])
    table = _bench().table(rows)
    assert table.count("\n| 10 |") == 3 and "| lean |" in table


def test_lean_routing_check_sees_a_difference() -> None:
    """The guard that keeps the lean bootstrap's routing equal to the rendered one can fail."""
    bench = _bench()
    lean = bench.lean_bootstrap(3, 15000, 8080)
    same = bench.routing(copy.deepcopy(lean), 8080)
    assert same == bench.routing(lean, 8080)
    assert len(same[0]) == 3 + 1 and len(same[1]) == 3 * 3  # 3 virtual hosts (+ the port flag), 3 clusters each
    for change in ("match", "cluster", "endpoint", "domain"):
        other = copy.deepcopy(lean)
        hcm = other["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        vh = hcm["route_config"]["virtual_hosts"][1]
        if change == "match":
            vh["routes"][0]["match"] = {"path": "/r0"}
        elif change == "cluster":
            vh["routes"][0]["route"]["cluster"] = "outbound|80|v2|svc1.example.com"
        elif change == "endpoint":
            ep = other["static_resources"]["clusters"][4]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            ep["endpoint"]["address"]["socket_address"]["port_value"] = 81
        else:
            vh["domains"] = ["h1.example.com", "*"]
        assert bench.routing(other, 8080) != same, change
