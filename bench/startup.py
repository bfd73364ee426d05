"""Start-up at scale (issue 14): time from exec to ready, and peak memory, of the stock Envoy
on the rendered bootstrap, against a hand-written lean equivalent with the same routing.

    .venv/bin/python bench/startup.py [--sizes 1000,10000] [--rounds 3] [--cpu 1] [--timeout 180]
                                      [--markdown | --json]

Input: tests/scale_inputs.py, issue 14's shape with one Gateway per host (per host one
Gateway server host, a VirtualService with 10 routes, a STATIC ServiceEntry with two
endpoints, a DestinationRule with 2 subsets). Three bootstraps per size:

* ``yaml``: ``envoygen render`` of this checkout (the default ``envoy.yaml``);
* ``json``: ``envoygen render --bootstrap-format json`` (``envoy.json``);
* ``lean``: written by this script as compact JSON, the same routing with only the fields
  that routing needs: an admin on 127.0.0.1 (to poll ``/ready``), one listener on the
  Gateway's bind port with an HTTP connection manager (``stat_prefix``, the router filter,
  ``ignore_port_in_host_matching`` as the rendered route table has it), one virtual host
  per host with the same domains and the same 10 prefix matches pointing at the same
  cluster names, and the same clusters (``outbound|80|v1|svcN...``, ``v2`` and the
  subset-less one) as STATIC clusters with the same endpoint addresses and ports. Left
  out: node identity, the metrics and readiness listeners, the access log, layered
  runtime, overload manager, every HCM setting beyond the above (XFF, server name, path
  normalisation, timeouts, upgrades, the fault and CORS filters), route ``timeout`` and
  ``max_grpc_timeout``, the retry policy, per-route and per-cluster metadata,
  ``alt_stat_name``, connect timeout, buffer limits, LEAST_REQUEST, circuit breakers and
  the upstream protocol options (Envoy's defaults apply instead). Before any Envoy runs,
  the script checks that the lean routing (domains, matches, cluster names, endpoints)
  equals the one read back from the rendered ``envoy.json``, and stops if not.

The rendered files are rendered with free ports (``--port-map 80=P``, ``--admin-port``,
``--readiness-port``, ``--stats-port``, as tests/harness.py does); their listeners'
``0.0.0.0`` socket addresses are then rewritten to ``127.0.0.1`` (names and everything
else untouched), so nothing listens beyond this host.

Every round starts, for every size, ``yaml``, ``json`` and ``lean`` in turn: ``taskset -c
CPU envoy -c FILE --concurrency 1`` with the flags ``envoygen run`` and the image pass
(``--log-level warning --component-log-level misc:error --disable-hot-restart
--file-flush-interval-msec 1000``), polls the admin ``GET /ready`` until 200 (bounded by
``--timeout``), and records the wall time from exec to ready, the CPU time (user +
system) Envoy used until then (/proc/PID/stat; on a shared machine the steadier
measure), and its peak RSS (VmHWM from /proc/PID/status) read just before it is stopped.
Medians over the rounds are printed with the ratios yaml/lean and json/lean and the
bootstrap's bytes per host, and issue 14's target (at 10,000 hosts: ready in <= 3x the
lean time, peak <= 1.5x its memory) is judged for every size.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from compile_scale import envoy_binary, pinned  # noqa: E402 - the compile bench's conventions
from harness import free_ports  # noqa: E402 - ports on 127.0.0.1, as the tests pick them
from scale_inputs import ROUTES_PER_HOST, scale_input  # noqa: E402 - the shape the tests use

FORMATS = ("yaml", "json", "lean")
TARGET_TIME, TARGET_RSS = 3.0, 1.5  # issue 14, at 10,000 hosts
# as `envoygen run` (cli.py) and the image's ENTRYPOINT start Envoy; misc:error hides the per-route
# deprecation warnings (max_grpc_timeout) that would otherwise be written during start-up
RUN_FLAGS = ("--log-level", "warning", "--disable-hot-restart", "--file-flush-interval-msec", "1000",
             "--component-log-level", "misc:error")
_ANY = re.compile(r'(address"?: ?"?)0\.0\.0\.0\b')  # a socket_address, in YAML flow style or compact JSON


# -- the lean equivalent ---------------------------------------------------------------------------


def _static_cluster(name: str, addresses: list[str], port: int) -> dict:
    eps = [{"endpoint": {"address": {"socket_address": {"address": a, "port_value": port}}}} for a in addresses]
    return {"name": name, "type": "STATIC", "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]}}


def lean_bootstrap(n: int, admin_port: int, port: int) -> dict:
    """The hand-written equivalent of ``scale_input(n)``'s routing (see the module docstring)."""
    vhosts, clusters = [], []
    for i in range(n):
        svc = f"svc{i}.example.com"
        routes = [{"match": {"prefix": f"/r{r}"}, "route": {"cluster": f"outbound|80|v{1 + r % 2}|{svc}"}}
                  for r in range(ROUTES_PER_HOST - 1)]
        routes.append({"match": {"prefix": "/"}, "route": {"cluster": f"outbound|80||{svc}"}})
        vhosts.append({"name": f"h{i}", "domains": [f"h{i}.example.com"], "routes": routes})
        v1, v2 = f"10.0.{i // 250}.{i % 250 + 1}", f"10.1.{i // 250}.{i % 250 + 1}"
        for subset, addresses in (("v1", [v1]), ("v2", [v2]), ("", [v1, v2])):
            clusters.append(_static_cluster(f"outbound|80|{subset}|{svc}", addresses, 80))
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "http",
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
           "route_config": {"ignore_port_in_host_matching": True, "virtual_hosts": vhosts}}
    listener = {"name": "http", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": hcm}]}]}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": [listener], "clusters": clusters}}


def routing(boot: dict, port: int) -> tuple[dict, dict]:
    """What a bootstrap routes on ``port``: {domains: [(match, cluster)]} and {cluster: endpoints}."""
    sr = boot["static_resources"]
    [listener] = [x for x in sr["listeners"] if x["address"]["socket_address"]["port_value"] == port]
    [chain] = listener["filter_chains"]
    [hcm] = [f["typed_config"] for f in chain["filters"] if f["name"].endswith("http_connection_manager")]
    rc = hcm["route_config"]
    vhosts = {}
    for vh in rc["virtual_hosts"]:
        routes = []
        for r in vh["routes"]:
            match = {k: v for k, v in r["match"].items() if (k, v) != ("case_sensitive", True)}  # Envoy's default
            routes.append((json.dumps(match, sort_keys=True), r["route"]["cluster"]))
        vhosts[tuple(vh["domains"])] = routes
    wanted = {c for routes in vhosts.values() for _, c in routes}
    clusters = {c["name"]: (c["type"], sorted((e["endpoint"]["address"]["socket_address"]["address"],
                                               e["endpoint"]["address"]["socket_address"]["port_value"])
                                              for le in c["load_assignment"]["endpoints"] for e in le["lb_endpoints"]))
                for c in sr["clusters"] if c["name"] in wanted}
    vhosts["ignore_port_in_host_matching"] = rc.get("ignore_port_in_host_matching", False)
    return vhosts, clusters


# -- preparing the files ---------------------------------------------------------------------------


def render(src: Path, out: Path, fmt: str, ports: dict[str, int]) -> Path:
    """``envoygen render`` of this checkout; returns the bootstrap, its listeners bound to 127.0.0.1."""
    cmd = [sys.executable, "-m", "envoygen", "render", "-q", "-f", str(src), "-o", str(out), "--install-dir", str(out),
           "--port-map", f"80={ports['http']}", "--admin-port", str(ports["admin"]),
           "--readiness-port", str(ports["readiness"]), "--stats-port", str(ports["stats"])]
    if fmt == "json":
        cmd += ["--bootstrap-format", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"render failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    boot = out / json.loads((out / "manifest.json").read_text()).get("bootstrap", f"envoy.{fmt}")
    text, count = _ANY.subn(r"\g<1>127.0.0.1", boot.read_text())
    if count == 0:
        raise SystemExit(f"{boot}: no listener on 0.0.0.0 found to bind to 127.0.0.1")
    boot.write_text(text)
    return boot


def prepare(n: int, tmp: Path, ports: dict[str, int]) -> dict[str, Path]:
    src = tmp / f"in-{n}.yaml"
    src.write_text(scale_input(n))
    files = {fmt: render(src, tmp / f"{fmt}-{n}", fmt, ports) for fmt in ("yaml", "json")}
    lean = lean_bootstrap(n, ports["admin"], ports["http"])
    files["lean"] = tmp / f"lean-{n}.json"
    files["lean"].write_text(json.dumps(lean, separators=(",", ":")))
    rendered = routing(json.loads(files["json"].read_text()), ports["http"])
    if rendered != routing(lean, ports["http"]):
        raise SystemExit(f"{n} hosts: the lean bootstrap does not route as the rendered one does; fix lean_bootstrap()")
    print(f"{n} hosts: rendered and written " + ", ".join(f"{k} {v.stat().st_size:,} B" for k, v in files.items()),
          file=sys.stderr)
    return files


# -- one start -------------------------------------------------------------------------------------


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)  # a busy main thread answers late
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return False


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no {key}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def start_once(envoy: str, boot: Path, admin_port: int, cpu: str | None, timeout: float, log: Path) -> dict:
    """Start Envoy on ``boot``, wait for /ready, measure, stop it (always)."""
    cmd = pinned([envoy, "-c", str(boot), "--concurrency", "1", *RUN_FLAGS], cpu)
    with open(log, "wb") as lf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while not _ready(admin_port):
                if proc.poll() is not None:
                    raise SystemExit(f"envoy exited ({proc.returncode}) on {boot}:\n{log.read_text()[-3000:]}")
                if time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"envoy not ready within {timeout:.0f} s on {boot}:\n{log.read_text()[-3000:]}")
                time.sleep(0.02)
            took = time.perf_counter() - t0
            used = _cpu_seconds(proc.pid)
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() != "envoy":
                raise SystemExit(f"process {proc.pid} is not envoy: measuring the wrong process")
            hwm = _status_kib(proc.pid, "VmHWM")
        finally:
            _stop(proc)
    return {"ready_s": took, "cpu_s": used, "hwm_kib": hwm}


# -- rounds and summary ----------------------------------------------------------------------------


def run(sizes: list[int], rounds: int, cpu: str | None, timeout: float, envoy: str, tmp: Path) -> list[dict]:
    names = ("http", "admin", "readiness", "stats")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    cases = []
    for n in sizes:
        for fmt, path in prepare(n, tmp, ports).items():
            cases.append({"hosts": n, "format": fmt, "file": path, "bytes": path.stat().st_size, "runs": []})
    for r in range(rounds):
        for c in cases:
            m = start_once(envoy, c["file"], ports["admin"], cpu, timeout, tmp / "envoy.log")
            c["runs"].append(m)
            print(f"round {r + 1}/{rounds}: {c['hosts']} hosts {c['format']}: ready {m['ready_s']:.2f} s "
                  f"(CPU {m['cpu_s']:.2f} s), peak {m['hwm_kib'] / 1024:.0f} MiB", file=sys.stderr)
    return cases


def summarize(cases: list[dict]) -> list[dict]:
    rows = []
    for c in cases:
        med = statistics.median
        rows.append({"hosts": c["hosts"], "format": c["format"], "rounds": len(c["runs"]), "bytes": c["bytes"],
                     "bytes_per_host": c["bytes"] / c["hosts"],
                     "ready_s": med(m["ready_s"] for m in c["runs"]), "cpu_s": med(m["cpu_s"] for m in c["runs"]),
                     "peak_mib": med(m["hwm_kib"] for m in c["runs"]) / 1024})
    lean = {r["hosts"]: r for r in rows if r["format"] == "lean"}
    for r in rows:
        base = lean[r["hosts"]]
        r["vs_lean"] = {k: r[k] / base[k] for k in ("ready_s", "cpu_s", "peak_mib", "bytes")}
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Issue 14's target for every size, on wall time and on Envoy's CPU time (steadier when shared)."""
    def judged(x: float, limit: float) -> str:
        return f"{x:.2f}x ({'met' if x <= limit else 'NOT met'})"

    return [f"{r['hosts']} hosts, {r['format']}: ready vs lean, target <= {TARGET_TIME:g}x: wall "
            f"{judged(r['vs_lean']['ready_s'], TARGET_TIME)}, Envoy CPU {judged(r['vs_lean']['cpu_s'], TARGET_TIME)}; "
            f"peak RSS vs lean, target <= {TARGET_RSS:g}x: {judged(r['vs_lean']['peak_mib'], TARGET_RSS)}"
            for r in rows if r["format"] != "lean"]


def table(rows: list[dict]) -> str:
    head = ("| hosts | bootstrap | bytes per host | ready (exec → /ready 200): wall / Envoy CPU | peak RSS (VmHWM) | "
            "vs lean: wall / CPU / peak RSS |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        v = r["vs_lean"]
        ratio = "1" if r["format"] == "lean" else f"{v['ready_s']:.2f}× / {v['cpu_s']:.2f}× / {v['peak_mib']:.2f}×"
        lines.append(f"| {r['hosts']} | {r['format']} | {r['bytes_per_host']:,.0f} | {r['ready_s']:.2f} / "
                     f"{r['cpu_s']:.2f} s | {r['peak_mib']:,.0f} MiB | {ratio} |")
    return "\n".join(lines)


def machine(envoy: str, rounds: int, cpu: str | None) -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    ver = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=60).stdout
    ver = ver.strip().split("version:")[-1].strip().split("/")[1] if "/" in ver else ver.strip()
    return (f"{rounds} interleaved rounds (yaml, json, lean), medians, "
            f"{'taskset -c ' + cpu if cpu else 'not pinned'}, --concurrency 1, nproc {os.cpu_count()}, "
            f"Python {sys.version.split()[0]}, Envoy {ver}, commit {commit}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated host counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", default="1", help="core for taskset (ignored without taskset)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds one Envoy may take to become ready")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a Markdown table for docs/benchmarks.md")
    out.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        ap.error("--sizes and --rounds must be positive")
    cpu = args.cpu if shutil.which("taskset") and args.cpu else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop Envoy, remove files
    envoy = envoy_binary()
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-startup-"))
    try:
        rows = summarize(run(sizes, args.rounds, cpu, args.timeout, envoy, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": machine(envoy, args.rounds, cpu), "rows": rows, "verdicts": verdicts(rows)}, indent=2))
        return 0
    print(machine(envoy, args.rounds, cpu))
    if args.markdown:
        print()
        print(table(rows))
        print()
        print("\n".join(f"- {line}" for line in verdicts(rows)))
    else:
        for r in rows:
            v = r["vs_lean"]
            print(f"{r['hosts']:>6} {r['format']:<4} {r['bytes_per_host']:>8,.0f} B/host  ready {r['ready_s']:7.2f} s "
                  f"(CPU {r['cpu_s']:6.2f} s)  peak {r['peak_mib']:8,.0f} MiB  vs lean: {v['ready_s']:.2f}x / "
                  f"{v['cpu_s']:.2f}x / {v['peak_mib']:.2f}x")
        print("\n".join(verdicts(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
