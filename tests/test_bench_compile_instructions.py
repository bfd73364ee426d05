"""bench/compile_instructions.py stays runnable: its smallest size, one shape, under valgrind.
Skipped without valgrind, except under CI=true (.ci/run installs it), where that fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from image_fixtures import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_compile_instructions_runs_at_its_smallest_size() -> None:
    require_tool("valgrind", "valgrind")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "compile_instructions.py"), "--sizes", "10",
                        "--shapes", "per-host", "--json"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(p.stdout)
    assert (row["shape"], row["hosts"]) == ("per-host", 10)
    # a Python process executes tens of millions of instructions before its first line; render imports more
    assert 10**7 < row["bare"] < row["yaml"] and row["json"] > 10**7
    assert row["render_over_bare"] == row["yaml"] / row["bare"] > 1
    assert row["json_over_yaml"] == row["json"] / row["yaml"]
    assert row["envoygen"] == str(ROOT / "envoygen")  # this checkout's code, counted from a neutral directory


def test_compile_instructions_refuses_a_tree_without_envoygen(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "compile_instructions.py"), "--tree", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 2 and "no envoygen/ package there" in p.stderr, p.stderr
