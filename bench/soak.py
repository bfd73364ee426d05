#!/usr/bin/env python3
"""A bounded soak: fixed-rate HTTPS load through a rendered coolstore-like gateway
while its certificate rotates and one backend restarts.

    .venv/bin/python bench/soak.py [--seconds 180] [--rate 40] [--rotate-every 10]
                                   [--restart-at 0.5] [--restart-for 5]

The input is the coolstore shape (Gateway with an HTTPS server for
webapp.istioinaction.io, credential ``webapp-credential`` from a copy of
``certs/``, VirtualService, STATIC ServiceEntry ``webapp``) with **two** backend
endpoints on 127.0.0.1, rendered by the real CLI and run on the stock Envoy
(tests/harness.py). Every request is a new TLS connection (so each one sees the
certificate in force), sent at a fixed rate by a small pool of client threads.

Injected faults:
- every ``--rotate-every`` s a new certificate is minted and moved into the
  watched directory (docs/rotation.md): rotation is *not* an excused window,
  a request failing across it counts;
- at ``--restart-at`` (fraction of the run) backend ``b`` stops for
  ``--restart-for`` s, then starts again on its port: that window (requests sent
  from 0.5 s before the stop to 1 s after the start) is the injected window;
  non-2xx answers to requests sent inside it are
  printed apart (Istio's default LEAST_REQUEST lets a few through,
  tests/test_faults.py).

Envoy's resident memory is read from /proc after a warm-up (the first 10 % of the
run, at least 3 s) and at the end. Prints ``name: value`` lines (parsed by
tests/test_bench_soak.py). Bounded: the load stops at ``--seconds``; every request
has a 5 s timeout; everything started is stopped.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from cryptography import x509  # noqa: E402

from envoygen.certs import Minted, mint_server  # noqa: E402
from harness import Backend, Gateway, https_get  # noqa: E402

HOST = "webapp.istioinaction.io"
CERTS = REPO / "certs"
ROOT_CA = CERTS / "_ca" / "root.crt"
TIMEOUT_S = 5.0
CLIENTS = 8


def inputs(ports: list[int]) -> str:
    endpoints = "\n".join(f"  - {{address: 127.0.0.1, ports: {{http: {p}}}}}" for p in ports)
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: coolstore-gateway, namespace: istioinaction}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: webapp-credential}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: webapp-vs-from-gw, namespace: istioinaction}}
spec:
  hosts: [{HOST}]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {{host: webapp, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{endpoints}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Results:
    started: float
    outcomes: list[tuple[float, int, str]] = field(default_factory=list)  # (sent at, status or 0, detail)
    serials: set[int] = field(default_factory=set)  # certificates the clients were shown
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, t: float, status: int, detail: str, serial: int | None = None) -> None:
        with self.lock:
            self.outcomes.append((t, status, detail))
            if serial is not None:
                self.serials.add(serial)


def client(gw: Gateway, ticks: "queue.Queue[float | None]", res: Results) -> None:
    for _ in range(10_000_000):  # bounded by the ticks the scheduler puts
        if ticks.get() is None:
            return
        sent = time.monotonic() - res.started
        try:
            r = https_get(gw, 443, "/soak", host=HOST, ca=ROOT_CA, timeout=TIMEOUT_S)
            res.add(sent, r.status, r.headers.get("x-backend", r.text[:100]), r.tls.serial if r.tls else None)
        except (ssl.SSLError, OSError) as e:
            res.add(sent, 0, repr(e))


def rotate(live: Path, staging: Path, intermediate: Minted) -> int:
    new = mint_server([HOST], intermediate)
    (staging / "tls.crt").write_bytes(new.cert)
    (staging / "tls.key").write_bytes(new.key)
    os.chmod(staging / "tls.key", 0o600)
    os.rename(staging / "tls.key", live / "tls.key")
    os.rename(staging / "tls.crt", live / "tls.crt")
    return x509.load_pem_x509_certificate(new.cert).serial_number


def soak(args: argparse.Namespace, work: Path) -> dict[str, object]:
    a, b = Backend("a").start(), Backend("b").start()
    creds = work / "creds"
    shutil.copytree(CERTS / "webapp-credential", creds / "webapp-credential")
    gw = Gateway([inputs([a.port, b.port])], ports=(443,), args=["--credentials-dir", str(creds)],
                 workdir=work / "gw", name="soak")
    intermediate = Minted((CERTS / "_ca" / "intermediate.crt").read_bytes(),
                          (CERTS / "_ca" / "intermediate.key").read_bytes())
    try:
        gw.start()
        assert gw.proc is not None
        live, staging = gw.out_dir / "certs" / "webapp-credential", work / "staging"
        staging.mkdir()
        ticks: queue.Queue[float | None] = queue.Queue()
        res = Results(time.monotonic())
        threads = [threading.Thread(target=client, args=(gw, ticks, res), daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        warmup = max(3.0, 0.1 * args.seconds)
        down_at = max(warmup + 1, args.restart_at * args.seconds)
        up_at = down_at + args.restart_for
        rss_start, rotations = rss_kib(gw.proc.pid), 0  # replaced after the warm-up
        down = warmed = False
        next_rotation = args.rotate_every
        n = 0
        while True:
            now = time.monotonic() - res.started
            if now >= args.seconds:
                break
            if not warmed and now >= warmup:
                rss_start, warmed = rss_kib(gw.proc.pid), True
            if not down and down_at <= now < up_at:
                b.stop()
                down = True
            if down and now >= up_at and not b.running:
                b.start()
            if now >= next_rotation:
                rotate(live, staging, intermediate)
                rotations += 1
                next_rotation += args.rotate_every
            due = n / args.rate
            if due <= now:
                ticks.put(due)
                n += 1
            else:
                time.sleep(min(due - now, 0.05))
        for _ in threads:
            ticks.put(None)
        for t in threads:
            t.join(timeout=TIMEOUT_S + 5)
        rss_end = rss_kib(gw.proc.pid)
        window = (down_at - 0.5, up_at + 1.0)  # refused connections fail at once; 1 s of slack
        outside = [o for o in res.outcomes if not 200 <= o[1] < 300 and not window[0] <= o[0] <= window[1]]
        inside = [o for o in res.outcomes if not 200 <= o[1] < 300 and window[0] <= o[0] <= window[1]]
        return {
            "seconds": args.seconds,
            "rate_per_s": args.rate,
            "requests_sent": n,
            "requests_answered": len(res.outcomes),
            "achieved_rate_per_s": round(len(res.outcomes) / args.seconds, 1),
            "certificate_rotations": rotations,
            "certificates_seen_by_clients": len(res.serials),
            "injected_window_s": f"{window[0]:.1f}-{window[1]:.1f}",
            "non_2xx_outside_windows": len(outside),
            "non_2xx_inside_windows": len(inside),
            "served_by_a": a.count,
            "served_by_b": b.count,
            "envoy_rss_start_kib": rss_start,
            "envoy_rss_end_kib": rss_end,
            "envoy_rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 1),
            "first_failures_outside": [o[2][:120] for o in outside[:3]],
        }
    finally:
        gw.stop()
        a.stop()
        b.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=180.0, help="length of the load (default 180)")
    p.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    p.add_argument("--rotate-every", type=float, default=10.0, help="seconds between certificate rotations")
    p.add_argument("--restart-at", type=float, default=0.5, help="backend b stops at this fraction of the run")
    p.add_argument("--restart-for", type=float, default=5.0, help="seconds backend b stays down")
    args = p.parse_args(argv)
    if not (1 <= args.seconds <= 3600 and 0 < args.rate <= 500):
        p.error("--seconds must be 1..3600 and --rate 0..500")
    with tempfile.TemporaryDirectory(prefix="envoygen-soak-") as tmp:
        out = soak(args, Path(tmp))
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
