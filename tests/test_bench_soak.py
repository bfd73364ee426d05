"""bench/soak.py at its smallest size: it runs, injects what it says, and prints fields that parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def parse(stdout: str) -> dict[str, str]:
    fields = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(": ")
        assert sep, f"not a 'name: value' line: {line!r}"
        fields[name] = value
    return fields


@pytest.mark.slow
def test_soak_smallest_run_prints_parseable_fields() -> None:
    seconds, rate = 7, 15
    p = subprocess.run([sys.executable, "bench/soak.py", "--seconds", str(seconds), "--rate", str(rate),
                        "--rotate-every", "2", "--restart-for", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    f = parse(p.stdout)
    ints = {k: int(f[k]) for k in ("requests_sent", "requests_answered", "certificate_rotations",
                                   "certificates_seen_by_clients", "non_2xx_outside_windows",
                                   "non_2xx_inside_windows", "served_by_a", "served_by_b",
                                   "envoy_rss_start_kib", "envoy_rss_end_kib")}
    growth = float(f["envoy_rss_growth_pct"])
    lo, hi = (float(x) for x in f["injected_window_s"].split("-"))
    assert abs(ints["requests_sent"] - seconds * rate) <= 1, ints  # the fixed rate was kept
    assert ints["requests_answered"] == ints["requests_sent"]
    assert ints["certificate_rotations"] == 3
    assert ints["certificates_seen_by_clients"] >= 3  # rotations were seen by the clients
    assert ints["non_2xx_outside_windows"] == 0, f["first_failures_outside"]
    assert ints["served_by_a"] > 0 and ints["served_by_b"] > 0
    assert 3.0 <= lo < hi <= seconds  # the restart happened inside the run
    assert 10_000 < ints["envoy_rss_start_kib"] < 2_000_000
    expect = 100.0 * (ints["envoy_rss_end_kib"] - ints["envoy_rss_start_kib"]) / ints["envoy_rss_start_kib"]
    assert abs(growth - expect) < 0.1
