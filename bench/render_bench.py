"""Render benchmark: time and peak memory of `envoygen render` as the input grows.

    .venv/bin/python bench/render_bench.py [--sizes 10,100,1000] [--repeat 3]

For N hosts it generates one Gateway (port 80, N hosts), N VirtualServices with
three routes each, N ServiceEntries (STATIC) and N DestinationRules with two
subsets, renders them in a child process (so ru_maxrss is that render's peak),
and prints wall time, peak RSS, rendered bytes, and the ratio of each size to
the smallest one (linear growth shows as time ratio ≈ size ratio). It also
times Envoy's own `--mode validate` on the largest bundle.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_input(n: int) -> str:
    docs = [f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{", ".join(f'"h{i}.example.com"' for i in range(n))}]
"""]
    for i in range(n):
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs{i}, namespace: istio-system}}
spec:
  hosts: ["h{i}.example.com"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /api}}, headers: {{x-canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: svc{i}.example.com, subset: v2}}}}]
  - match: [{{uri: {{prefix: /api}}}}]
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "5xx,503"}}
    timeout: 5s
    route:
    - {{destination: {{host: svc{i}.example.com, subset: v1}}, weight: 90}}
    - {{destination: {{host: svc{i}.example.com, subset: v2}}, weight: 10}}
  - route: [{{destination: {{host: svc{i}.example.com}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc{i}, namespace: istio-system}}
spec:
  hosts: [svc{i}.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 8080}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.{i // 250}.{i % 250 + 1}, labels: {{version: v1}}}}
  - {{address: 10.1.{i // 250}.{i % 250 + 1}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}, namespace: istio-system}}
spec:
  host: svc{i}.example.com
  trafficPolicy: {{connectionPool: {{http: {{http1MaxPendingRequests: 100}}}}, outlierDetection: {{consecutive5xxErrors: 5}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")
    return "---\n".join(docs)


def render_once(src: Path, out: Path) -> tuple[float, int]:
    if out.exists():
        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "envoygen", "render", "-q", "-f", str(src), "-o", str(out)],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-bench-"))
    rows = []
    try:
        for n in sizes:
            src = tmp / f"in{n}.yaml"
            src.write_text(make_input(n))
            times, rss = [], 0
            for _ in range(args.repeat):
                t, r = render_once(src, tmp / f"out{n}")
                times.append(t)
                rss = max(rss, r)
            size = (tmp / f"out{n}" / "envoy.yaml").stat().st_size
            rows.append((n, statistics.median(times), rss, src.stat().st_size, size))
        base = rows[0]
        print(f"{'hosts':>6} {'input KB':>9} {'envoy.yaml KB':>14} {'render s (median)':>18} {'peak RSS MB':>12} "
              f"{'time ratio':>11} {'size ratio':>11}")
        for n, t, rss, isz, osz in rows:
            print(f"{n:>6} {isz / 1024:>9.0f} {osz / 1024:>14.0f} {t:>18.3f} {rss / 1024:>12.1f} "
                  f"{t / base[1]:>11.2f} {n / base[0]:>11.1f}")
        from envoygen.envoy import find_envoy

        largest = rows[-1][0]
        # validate needs the bundle's own paths: the default install dir is fine (no credentials here)
        t0 = time.perf_counter()
        proc = subprocess.run([str(find_envoy()), "--mode", "validate", "-c", str(tmp / f"out{largest}" / "envoy.yaml"),
                               "--log-level", "error", "--disable-hot-restart"], capture_output=True, text=True)
        print(f"envoy --mode validate on {largest} hosts: {time.perf_counter() - t0:.3f} s, "
              f"{'OK' if proc.returncode == 0 else 'REJECTED: ' + proc.stderr[-300:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
