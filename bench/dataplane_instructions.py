"""Data plane (issue 14), counted in instructions: what one request costs the proxy for the
rendered gateway against the hand-written configs, immune to this machine's drift.

    .venv/bin/python bench/dataplane_instructions.py [--requests 2000] [--connections 20]
                                                     [--protocols http,https] [--repeats 2]
                                                     [--configs minimal,rendered,istio,istio-log]
                                                     [--syscalls] [--json]

The proxies, their input and the behaviour check are bench/dataplane.py's (``minimal``,
``rendered``, ``istio``, ``istio-log``; stock Envoy, ``--concurrency 1``). Each proxy runs
under ``valgrind --tool=callgrind``; after its behaviour check and a warm-up, for each
protocol, its counters are zeroed (``callgrind_control -z``), ``--requests`` GETs are sent
over ``--connections`` keep-alive connections (so HTTPS includes that many handshakes), and
the counters are dumped (``callgrind_control -d``): instructions per request, every thread
of the proxy, for the same traffic through every config. Each answer must be a 200 from the
backend (an Envoy outside valgrind), which must have served every request counted.

``--syscalls`` counts the kernel side instead: each proxy runs natively and
``strace -c -f -p`` is attached around the same traffic (system calls per request, every
thread; the work inside the kernel is not counted, only the calls).

Printed: instructions (or system calls) per request per config and protocol (the median of ``--repeats``
measurements, with their spread) and rendered / each other config. Requests/s go roughly as
the inverse (issue 14's "≥ 0.95× minimal" is about rendered / minimal ≤ 1.05 here, "≥ 1.05×
Istio-shaped" about rendered / istio ≤ 0.95); an instruction is not a unit of time (cache
misses, system calls and the kernel's network stack are not counted), so this is a steady
proxy beside dataplane.py's wrk runs, not a replacement for them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from dataplane import Envoy, _write, check_behaviour, envoy_binary, proxy_config, webapp_credential  # noqa: E402
from dataplane_configs import HOST, backend_bootstrap  # noqa: E402
from harness import free_ports, wait_until  # noqa: E402 - the tests' helpers

CONFIGS = ("minimal", "rendered", "istio", "istio-log")
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"  # not pinned: counts do not depend on the core


class Counted(Envoy):
    """One proxy under callgrind (or, with ``syscalls``, natively); ``count(fn)`` returns the instructions
    (or system calls) ``fn()`` made it execute."""

    ready_seconds = 600  # Envoy under valgrind starts ~50x slower
    stop_seconds = 120  # and writes its last dump on the way out

    def __init__(self, name: str, binary: str, config: Path, admin: int, work: Path, syscalls: bool = False) -> None:
        out = work / f"{name}.callgrind"
        super().__init__(name, binary, config, admin, ALL_CPUS, work,
                         wrapper=[] if syscalls else ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
        self.work, self.out, self.syscalls, self.dumps = work, out, syscalls, 0

    def _control(self, flag: str) -> None:
        assert self.proc is not None
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True, capture_output=True, timeout=120)

    def count(self, fn) -> int:  # noqa: ANN001 - fn() drives the traffic
        if self.syscalls:
            return self._count_syscalls(fn)
        self._control("-z")
        fn()
        self._control("-d")
        self.dumps += 1
        dump = Path(f"{self.out}.{self.dumps}")
        wait_until(lambda: dump.is_file() and "\ntotals:" in dump.read_text(errors="replace"), 120,
                   message=f"{self.name}: no callgrind dump {dump}")
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
        raise SystemExit(f"{self.name}: no summary line in {dump}")

    def _count_syscalls(self, fn) -> int:  # noqa: ANN001
        assert self.proc is not None
        self.dumps += 1
        out = self.work / f"{self.name}.strace.{self.dumps}"
        st = subprocess.Popen(["strace", "-c", "-f", "-p", str(self.proc.pid), "-o", str(out)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert st.stderr is not None
            line = st.stderr.readline()  # "strace: Process N attached" once it holds the first thread
            if "attached" not in line:
                raise SystemExit(f"{self.name}: strace did not attach: {line}{st.stderr.read()[-2000:]}")
            time.sleep(0.5)  # and the others
            fn()
        finally:
            st.send_signal(signal.SIGINT)
            st.wait(timeout=60)
        total = [ln.split() for ln in out.read_text().splitlines() if ln.rstrip().endswith(" total")]
        if not total:
            raise SystemExit(f"{self.name}: no total in strace's summary {out}")
        return int(total[-1][3])  # % time, seconds, usecs/call, calls, [errors,] total


def traffic(port: int, tls: ssl.SSLContext | None, requests: int, connections: int) -> None:
    """``requests`` GETs over ``connections`` keep-alive connections; every answer must be 200."""
    per = requests // connections
    for _ in range(connections):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if tls is not None:
            conn.sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60), server_hostname=HOST)
        try:
            for _ in range(per):
                conn.request("GET", "/", headers={"Host": HOST})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"127.0.0.1:{port}: {r.status} (want 200 from the backend)")
        finally:
            conn.close()


def configs(work: Path, backend: int, names: list[str]) -> dict[str, tuple[dict, Path, bool]]:
    """Each named proxy's ports, config file and whether it must behave as Istio does."""
    return {name: proxy_config(name, work, backend) for name in names}


def measure(a: argparse.Namespace, work: Path, binary: str, tls: ssl.SSLContext, backend: Envoy,
            backend_port: int) -> list[dict]:
    rows = []
    for name, (ports, config, istio_like) in configs(work, backend_port, a.configs).items():
        proxy = Counted(name, binary, config, ports["admin"], work, a.syscalls)
        try:
            proxy.start()
            checks = check_behaviour(name, ports, tls, istio_like)
            for proto in a.protocols:
                ctx = tls if proto == "https" else None
                traffic(ports[proto], ctx, 50, 5)  # warm-up: first-use allocations, lazy initialisation
                counts = []
                for _ in range(a.repeats):
                    served = backend.counter("http.backend.downstream_rq_2xx")
                    counts.append(proxy.count(lambda: traffic(ports[proto], ctx, a.requests, a.connections)))  # noqa: B023
                    if backend.counter("http.backend.downstream_rq_2xx") - served < a.requests:
                        raise SystemExit(f"{name} {proto}: the backend served fewer than {a.requests} requests")
                rows.append({"config": name, "proto": proto, "per_request": [c / a.requests for c in counts],
                             "checks": checks})
                print(f"{name} {proto}: {', '.join(f'{c / a.requests:,.2f}' for c in counts)} "
                      f"{'system calls' if a.syscalls else 'instructions'} per request", file=sys.stderr)
        finally:
            proxy.stop()
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    med = {(r["config"], r["proto"]): statistics.median(r["per_request"]) for r in rows}
    for r in rows:
        r["median"] = med[(r["config"], r["proto"])]
        r["spread"] = (max(r["per_request"]) - min(r["per_request"])) / r["median"]
        r["rendered_over_this"] = med[("rendered", r["proto"])] / r["median"]
    return rows


def table(rows: list[dict], what: str) -> str:
    lines = [f"| protocol | config | {what} per request (spread of repeats) | rendered / this |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['proto']} | {r['config']} | {r['median']:,.2f} ({r['spread']:.1%}) | "
                     f"{r['rendered_over_this']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    ap.add_argument("--connections", type=int, default=20, help="keep-alive connections they are spread over")
    ap.add_argument("--protocols", default="http,https", help="http and/or https")
    ap.add_argument("--repeats", type=int, default=2, help="measurements per config and protocol")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"a comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--syscalls", action="store_true", help="count system calls (strace -c) instead of instructions")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = ap.parse_args(argv)
    a.configs = list(dict.fromkeys(x for x in a.configs.split(",") if x))
    if "rendered" not in a.configs or not set(a.configs) <= set(CONFIGS):
        ap.error(f"--configs: rendered and any of {', '.join(CONFIGS)}")
    a.protocols = list(dict.fromkeys(x for x in a.protocols.split(",") if x))
    if not set(a.protocols) <= {"http", "https"} or not a.protocols:
        ap.error("--protocols: http and/or https")
    if not 1 <= a.connections <= a.requests <= 100_000 or not 1 <= a.repeats <= 10:
        ap.error("1 <= --connections <= --requests <= 100000, --repeats 1..10")
    for tool in ("strace", "taskset") if a.syscalls else ("valgrind", "callgrind_control", "taskset"):
        if not shutil.which(tool):
            ap.error(f"needs {tool} on PATH (Debian: valgrind or strace, util-linux)")
    work = Path(tempfile.mkdtemp(prefix="envoygen-dp-instr-"))
    backend: Envoy | None = None
    started = time.monotonic()
    try:
        binary = envoy_binary()
        tls = webapp_credential(work)
        backend_port, backend_admin = free_ports(2)
        backend = Envoy("backend", binary, _write(work / "backend.json", backend_bootstrap(backend_port, backend_admin)),
                        backend_admin, ALL_CPUS, work)
        backend.start()
        rows = summarize(measure(a, work, binary, tls, backend, backend_port))
    finally:
        if backend is not None:
            backend.stop()
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        what = "system calls" if a.syscalls else "instructions"
        how = "strace -c -f" if a.syscalls else "valgrind --tool=callgrind"
        print(f"{what} per request ({how}, all proxy threads), {a.requests} requests over "
              f"{a.connections} keep-alive connections, {a.repeats} repeats; {time.monotonic() - started:.0f} s")
        print(table(rows, what))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
