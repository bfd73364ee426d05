"""Compile at scale, counted in instructions (issue 14): the same ratios as compile_scale.py,
immune to this machine's drift.

    .venv/bin/python bench/compile_instructions.py [--sizes 1000] [--shapes per-host,shared]
                                                   [--tree CHECKOUT] [--json]

Each command runs once, whole process, under ``valgrind --tool=callgrind``, which counts the
instructions the process executes (``Collected : N``): the same binary, input and environment
give the same count whatever else the machine is doing (``PYTHONHASHSEED=0`` fixes the one
thing Python varies from run to run), where CPU seconds drift by tens of
percent from minute to minute here. Commands, on tests/scale_inputs.py's input:

* ``bare``: ``yaml.load_all(..., Loader=yaml.CSafeLoader)`` of the file (issue 14's floor);
* ``yaml``: ``python -m envoygen render -q -f IN -o OUT``;
* ``json``: the same with ``--bootstrap-format json``.

Printed: the counts, render / bare and JSON / YAML. An instruction is not a unit of time
(a cache miss costs more than an add), so these ratios are a steady proxy beside
compile_scale.py's CPU seconds, not a replacement for them. Before counting, the package's
bytecode is compiled (an installed wheel has it; ``PYTHONDONTWRITEBYTECODE`` would otherwise
make every run compile every module) and the template cache is filled by one render.

``--tree CHECKOUT`` counts another checkout's envoygen (e.g. a ``git worktree`` of an older
commit) with this environment's packages: its directory goes first on ``PYTHONPATH``, and
every command runs from the temporary directory, since ``python -m`` puts the working
directory first on ``sys.path`` (run from a checkout, it would count that checkout's code).
The envoygen counted is printed.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from scale_inputs import scale_input  # noqa: E402 - the shape the tests use

_BARE = "import sys, yaml\nwith open(sys.argv[1]) as fh:\n    list(yaml.load_all(fh.read(), Loader=yaml.CSafeLoader))\n"
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(cmd: list[str], tmp: Path, env: dict[str, str]) -> int:
    """Instructions ``cmd`` executes (callgrind's total), which must succeed."""
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.%p", *cmd],
                       capture_output=True, text=True, timeout=3600, cwd=tmp, env=env)
    m = _COLLECTED.search(p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return int(m.group(1))


def prepare(tmp: Path, env: dict[str, str]) -> str:
    """Bytecode for the package counted, as an installed wheel has it (the warm render in run() fills the
    template cache); returns the package's directory."""
    p = subprocess.run([sys.executable, "-c", "import envoygen, pathlib; print(pathlib.Path(envoygen.__file__).parent)"],
                       capture_output=True, text=True, check=True, cwd=tmp, env=env)
    package = p.stdout.strip()
    compileall.compile_dir(package, quiet=1)
    return package


def run(sizes: list[int], shapes: list[str], jobs: int, tmp: Path, tree: str | None) -> tuple[str, list[dict]]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # one dict and set layout: the same count run after run
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(tree).resolve()), *filter(None, [env.get("PYTHONPATH")])])
    package = prepare(tmp, env)
    py = sys.executable
    cases, work = [], []
    for n in sizes:
        for shape in shapes:
            src = tmp / f"in-{shape}-{n}.yaml"
            src.write_text(scale_input(n, shared=shape == "shared"))
            warm = tmp / f"warm-{shape}-{n}"
            subprocess.run([py, "-m", "envoygen", "render", "-q", "-f", str(src), "-o", str(warm)], check=True,
                           capture_output=True, timeout=3600, cwd=tmp, env=env)
            case = {"shape": shape, "hosts": n}
            cases.append(case)
            work += [(case, "bare", [py, "-c", _BARE, str(src)])]
            for fmt in ("yaml", "json"):
                out = tmp / f"out-{shape}-{n}-{fmt}"
                work.append((case, fmt, [py, "-m", "envoygen", "render", "-q", "-f", str(src), "-o", str(out),
                                         "--bootstrap-format", fmt]))
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # counts do not depend on what runs beside
        for (case, what, _), count in zip(work, pool.map(lambda w: instructions(w[2], tmp, env), work)):
            case[what] = count
    for c in cases:
        c["render_over_bare"] = c["yaml"] / c["bare"]
        c["json_over_yaml"] = c["json"] / c["yaml"]
        c["envoygen"] = package
    return package, cases


def table(rows: list[dict]) -> str:
    lines = ["| shape | hosts | bare CSafeLoader | render YAML | render JSON | render / bare | JSON / YAML |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['hosts']} | {r['bare'] / 1e9:.3f} G | {r['yaml'] / 1e9:.3f} G | "
                     f"{r['json'] / 1e9:.3f} G | {r['render_over_bare']:.3f} | {r['json_over_yaml']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000", help="comma-separated host counts")
    ap.add_argument("--shapes", default="per-host,shared", help="per-host and/or shared")
    ap.add_argument("--jobs", type=int, default=2, help="commands counted at once")
    ap.add_argument("--tree", metavar="CHECKOUT", help="count this checkout's envoygen (first on PYTHONPATH)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args(argv)
    if args.tree is not None and not (Path(args.tree) / "envoygen" / "__init__.py").is_file():
        ap.error(f"--tree {args.tree}: no envoygen/ package there")
    if shutil.which("valgrind") is None:
        ap.error("needs valgrind (Debian: apt-get install valgrind)")
    shapes = [s for s in args.shapes.split(",") if s]
    if not set(shapes) <= {"per-host", "shared"}:
        ap.error("--shapes: per-host and/or shared")
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-instr-"))
    try:
        package, rows = run([int(s) for s in args.sizes.split(",")], shapes, args.jobs, tmp, args.tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"instructions (valgrind --tool=callgrind), whole process, Python {sys.version.split()[0]}, "
              f"envoygen from {package}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
