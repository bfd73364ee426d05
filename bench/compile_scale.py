"""Compile at scale (issue 14): how `envoygen render` grows with the number of hosts.

    .venv/bin/python bench/compile_scale.py [--sizes 10,100,1000,5000] [--shapes per-host,shared]
                                            [--rounds 3] [--cpu 1] [--no-envoy] [--json]

Input: tests/scale_inputs.py, issue 14's shape (per host one Gateway server host,
a VirtualService with 10 routes, a ServiceEntry, a DestinationRule with 2
subsets); ``per-host``: one Gateway per host (Istio's usual layout), ``shared``:
one Gateway lists every host.

Every round runs, for every (size, shape), in fresh processes pinned to one core
(``taskset -c CPU`` when available), in this order:

* ``bare``: ``yaml.load_all(..., Loader=yaml.CSafeLoader)`` of the same file, whole
  process (the floor issue 14 measures the render against);
* ``render``: ``python -m envoygen render -q -f IN -o OUT``, whole process, with
  its peak RSS (RUSAGE_CHILDREN of a small wrapper process: Linux keeps
  ru_maxrss across fork+exec, so reaping from a big parent would report the
  parent's size);
* ``json``: ``render --bootstrap-format json``, whole process (issue 14: no slower than YAML);
* ``inproc``: the same compile inside one process after the imports (CPU time
  of each stage: load, model with pydantic's one-time schema build,
  resolve+analyze+translate, render+write), with the CLI's GC setting (paused);
* ``validate``: Envoy's own ``--mode validate`` of the rendered bootstrap.

Medians over the rounds are printed, wall and CPU time (user + system, from
RUSAGE_CHILDREN; on a shared machine the CPU time is the steadier measure), with
the render/bare ratios, the growth of each size against the previous one, and
the bundle's bytes per route (every file but the manifest, over hosts × routes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from scale_inputs import ROUTES_PER_HOST, scale_input  # noqa: E402 - the shape the tests use

_WRAP = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
took = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(took, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, rc)
"""

_BARE = "import sys, yaml\nwith open(sys.argv[1]) as fh:\n    list(yaml.load_all(fh.read(), Loader=yaml.CSafeLoader))\n"

_INPROC = """
import gc, json, sys, time
clock = time.process_time  # CPU seconds: on a shared machine wall time mostly measures the neighbours
t0 = clock()
from pathlib import Path
from envoygen.bundle import write_atomically
from envoygen.load import load_paths
from envoygen.model import parse_documents
from envoygen.pipeline import Request, render_bundles, translate_inputs
imports = clock() - t0
gc.freeze(); gc.disable()  # as the CLI does for one-shot commands
src, out = sys.argv[1], Path(sys.argv[2])
req = Request((src,))
t = clock(); docs, findings, _ = load_paths([src]); load = clock() - t
t = clock(); parse_documents(docs, "default", findings); model = clock() - t  # with the one-time schema build
# translate_inputs loads and models again (schemas built by now): time that part once more to subtract it
t = clock(); docs, findings, _ = load_paths([src]); again = clock() - t
t = clock(); parse_documents(docs, "default", findings); again += clock() - t
del docs
t = clock(); compiled = translate_inputs(req); compile_s = clock() - t
t = clock(); write_atomically(out, render_bundles(compiled, req, req.install_dir)); render = clock() - t
translate = compile_s - again
print(json.dumps({"imports": imports, "load": load, "model": model,
                  "translate": translate, "render": render, "total": load + model + translate + render}))
"""


def pinned(cmd: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (KiB) of ``cmd``, which must succeed."""
    p = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, timeout=3600)
    took, cpu, rss, rc = p.stdout.split()
    if rc != "0":
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return float(took), float(cpu), int(rss)


def envoy_binary() -> str:
    return subprocess.run([sys.executable, "-c", "from envoygen.envoy import find_envoy; print(find_envoy())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def bundle_bytes(out: Path) -> int:
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != "manifest.json")


def run(sizes: list[int], shapes: list[str], rounds: int, cpu: str | None, envoy: str | None, tmp: Path) -> list[dict]:
    cases = []
    for n in sizes:
        for shape in shapes:
            src = tmp / f"in-{shape}-{n}.yaml"
            src.write_text(scale_input(n, shared=shape == "shared"))
            cases.append({"hosts": n, "shape": shape, "src": src, "out": tmp / f"out-{shape}-{n}",
                          "bare": [], "bare_cpu": [], "render": [], "render_cpu": [], "rss": [], "inproc": [], "json_cpu": [],
                          "validate": [], "validate_cpu": []})
    py = sys.executable
    for r in range(rounds):
        for c in cases:
            src, out = str(c["src"]), c["out"]
            took, used, _ = measure(pinned([py, "-c", _BARE, src], cpu))
            c["bare"].append(took)
            c["bare_cpu"].append(used)
            shutil.rmtree(out, ignore_errors=True)
            for fmt in ("yaml", "json") if r % 2 == 0 else ("json", "yaml"):  # alternate: no order bias
                took, used, rss = measure(pinned([py, "-m", "envoygen", "render", "-q", "-f", src, "-o", str(out),
                                                  "--bootstrap-format", fmt], cpu))
                if fmt == "yaml":
                    c["render"].append(took)
                    c["render_cpu"].append(used)
                    c["rss"].append(rss)
                else:
                    c["json_cpu"].append(used)
                shutil.rmtree(out, ignore_errors=True)
            p = subprocess.run(pinned([py, "-c", _INPROC, src, str(out)], cpu), capture_output=True, text=True,
                               check=True, timeout=3600)
            c["inproc"].append(json.loads(p.stdout))
            if envoy is not None:
                boot = out / ("envoy.json" if (out / "envoy.json").exists() else "envoy.yaml")
                took, used, _ = measure(pinned([envoy, "--mode", "validate", "-c", str(boot), "--log-level", "error",
                                                "--disable-hot-restart"], cpu))
                c["validate"].append(took)
                c["validate_cpu"].append(used)
            print(f"round {r + 1}/{rounds}: {c['shape']} {c['hosts']} hosts: render {c['render'][-1]:.2f} s, "
                  f"bare {c['bare'][-1]:.2f} s", file=sys.stderr)
    for c in cases:
        c["bytes"] = bundle_bytes(c["out"])
    return cases


def summarize(cases: list[dict]) -> list[dict]:
    rows = []
    prev: dict[str, dict] = {}
    for c in cases:
        med = statistics.median
        stages = {k: med(x[k] for x in c["inproc"]) for k in c["inproc"][0]}
        row = {"shape": c["shape"], "hosts": c["hosts"], "render_s": med(c["render"]), "bare_s": med(c["bare"]),
               "render_cpu_s": med(c["render_cpu"]), "bare_cpu_s": med(c["bare_cpu"]),
               "rss_mib": max(c["rss"]) / 1024, "inproc": stages,
               "validate_s": med(c["validate"]) if c["validate"] else None,
               "validate_cpu_s": med(c["validate_cpu"]) if c["validate_cpu"] else None,
               "bytes_per_route": c["bytes"] / (c["hosts"] * ROUTES_PER_HOST)}
        row["ratio_vs_bare"] = row["render_s"] / row["bare_s"]
        row["cpu_ratio_vs_bare"] = row["render_cpu_s"] / row["bare_cpu_s"]
        row["json_cpu_s"] = med(c["json_cpu"])
        row["json_over_yaml"] = [j / y for j, y in zip(c["json_cpu"], c["render_cpu"])]  # per round
        before = prev.get(c["shape"])
        if before is not None:
            row["growth"] = (c["hosts"] / before["hosts"], stages["total"] / before["inproc"]["total"])
        prev[c["shape"]] = row
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| shape | hosts | render (process): wall / CPU | bare CSafeLoader (process): wall / CPU | "
            "render / bare: wall / CPU | peak RSS | in-process CPU: load / model / translate / render | "
            "in-process total | growth (input × → CPU ×) | bytes per route | Envoy validate: wall / CPU | "
            "JSON render CPU (/ YAML, median of rounds) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s = r["inproc"]
        growth = f"{r['growth'][0]:.0f}× → {r['growth'][1]:.2f}×" if "growth" in r else ""
        validate = f"{r['validate_s']:.2f} / {r['validate_cpu_s']:.2f} s" if r["validate_s"] is not None else "—"
        lines.append(f"| {r['shape']} | {r['hosts']} | {r['render_s']:.2f} / {r['render_cpu_s']:.2f} s | "
                     f"{r['bare_s']:.2f} / {r['bare_cpu_s']:.2f} s | {r['ratio_vs_bare']:.2f} / {r['cpu_ratio_vs_bare']:.2f} | "
                     f"{r['rss_mib']:.0f} MiB | {s['load']:.3f} / {s['model']:.3f} / {s['translate']:.3f} / {s['render']:.3f} s | "
                     f"{s['total']:.3f} s | {growth} | {r['bytes_per_route']:.0f} | {validate} | "
                     f"{r['json_cpu_s']:.2f} s ({statistics.median(r['json_over_yaml']):.2f}×) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,5000", help="comma-separated host counts")
    ap.add_argument("--shapes", default="per-host,shared", help="per-host and/or shared")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", default="1", help="core for taskset (ignored without taskset)")
    ap.add_argument("--no-envoy", action="store_true", help="skip Envoy's --mode validate")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = [s for s in args.shapes.split(",") if s]
    if not set(shapes) <= {"per-host", "shared"}:
        ap.error("--shapes: per-host and/or shared")
    cpu = args.cpu if shutil.which("taskset") and args.cpu else None
    envoy = None if args.no_envoy else envoy_binary()
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-scale-"))
    try:
        rows = summarize(run(sizes, shapes, args.rounds, cpu, envoy, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.rounds} interleaved rounds, medians, {'taskset -c ' + cpu if cpu else 'not pinned'}, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
