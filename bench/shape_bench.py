"""Istio's usual layout at scale: one Gateway per host, one VirtualService per
Gateway, a ServiceEntry per backend, DestinationRules for half of the hosts
(wildcards that match nothing for the other half). The shape that was quadratic
(issue 14). Compares checkouts side by side, interleaved, on one pinned core.

    .venv/bin/python bench/shape_bench.py [--sizes 500,1000,2000] [--repeat 3] [--checkout DIR]...

Each --checkout is a source tree of envoygen (e.g. a `git worktree` of an older
commit) run with PYTHONPATH=DIR; without one, this checkout. Every round runs
each (size, checkout) once in a fresh process (`envoygen render`), so drift of the
machine's speed hits all of them alike; medians and ratios are printed (time
ratio ≈ size ratio means linear growth).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from test_scale_growth import layout  # noqa: E402 - the same shape the growth test counts


def render_once(checkout: Path, src: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "envoygen", "render", "-q", "-f", str(src), "-o", str(out)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=checkout)
    took = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{checkout}: render failed ({p.returncode}):\n{p.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checkout", action="append", type=Path, default=[])
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    checkouts = [c.resolve() for c in a.checkout] or [HERE]
    work = Path(tempfile.mkdtemp(prefix="envoygen-shape-"))
    try:
        inputs = {}
        for n in sizes:
            inputs[n] = work / f"in-{n}.yaml"
            inputs[n].write_text(layout(n))
        times: dict[tuple[int, Path], list[float]] = {(n, c): [] for n in sizes for c in checkouts}
        for r in range(a.repeat):
            for n in sizes:
                for c in checkouts:
                    times[(n, c)].append(render_once(c, inputs[n], work / "out"))
            print(f"round {r + 1}/{a.repeat} done", file=sys.stderr)
        print(f"{'hosts':>6} " + " ".join(f"{c.name[:18]:>20}" for c in checkouts) + "   (median s; ratio to the smallest size)")
        base = {c: statistics.median(times[(sizes[0], c)]) for c in checkouts}
        for n in sizes:
            cells = []
            for c in checkouts:
                m = statistics.median(times[(n, c)])
                cells.append(f"{m:8.2f} s ({m / base[c]:5.2f}x)")
            print(f"{n:>6} " + " ".join(f"{x:>20}" for x in cells))
        if len(checkouts) > 1:
            for n in sizes:
                ref = statistics.median(times[(n, checkouts[0])])
                print(f"{n:>6} hosts: " + ", ".join(
                    f"{c.name}: {statistics.median(times[(n, c)]) / ref:.2f}x of {checkouts[0].name}" for c in checkouts[1:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
