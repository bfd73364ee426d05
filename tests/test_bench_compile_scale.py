"""bench/compile_scale.py stays runnable: its smallest size, one round, both shapes,
with Envoy's own validation of what was rendered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compile_scale_runs_at_its_smallest_size() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "compile_scale.py"), "--sizes", "10", "--rounds", "1", "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(p.stdout)
    assert [(r["shape"], r["hosts"]) for r in rows] == [("per-host", 10), ("shared", 10)]
    for r in rows:
        assert r["render_s"] > 0 and r["bare_s"] > 0 and r["rss_mib"] > 10
        assert r["validate_s"] is not None and r["validate_s"] > 0  # Envoy accepted the bundle (else the bench exits 1)
        assert 100 < r["bytes_per_route"] < 100_000
        assert set(r["inproc"]) == {"imports", "load", "model", "translate", "render", "total"}
        assert r["json_cpu_s"] > 0 and len(r["json_over_yaml"]) == 1
