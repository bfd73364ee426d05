"""Golden files per stage, for every sample (in the manner of Envoy Gateway's
translator testdata): each stage can be changed and reviewed on its own.

    tests/testdata/<sample>/resolved.json   input  --resolve-->   the view of each workload
    tests/testdata/<sample>/ir.json         input  --translate--> the IR of each workload
    ir.json  --render + bundle-->  tests/golden/<sample>/  (the whole-bundle goldens)

The first two come from ``envoygen ir`` (the real CLI, the sample's
render.args); the third loads the IR golden with ``envoygen.irdump`` and renders
it with no input, no resolve and no translate, so a change in render shows up
here even if translate would hide it, and the reverse.

    ENVOYGEN_UPDATE_GOLDEN=1 pytest tests/test_stage_goldens.py   # rewrite, then review the diff
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness import run_envoygen
from test_golden import GOLDEN, REPO, SAMPLES, render_args, sample_dirs, tree

TESTDATA = Path(__file__).resolve().parent / "testdata"
UPDATE = os.environ.get("ENVOYGEN_UPDATE_GOLDEN") == "1"


def envoygen_ir(sample: str) -> dict:
    args = ["ir", "-f", f"samples/{sample}", *render_args(sample)]
    p = run_envoygen(args, cwd=REPO)
    assert p.returncode == 0, f"envoygen {' '.join(args)} exited {p.returncode}\n{p.stderr}"
    return json.loads(p.stdout)


def check_or_update(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"no golden {path}; run ENVOYGEN_UPDATE_GOLDEN=1 pytest {Path(__file__).name} and review it"
    golden = path.read_text()
    if golden != text:
        import difflib

        diff = "".join(difflib.unified_diff(golden.splitlines(True), text.splitlines(True), str(path), "now", n=2))
        pytest.fail(f"{path.relative_to(REPO)} differs (ENVOYGEN_UPDATE_GOLDEN=1 to accept):\n{diff[:6000]}")


@pytest.fixture(scope="module")
def stages() -> dict[str, dict]:
    """``envoygen ir`` once per sample."""
    out = {s: envoygen_ir(s) for s in sample_dirs()}
    if UPDATE:
        for s in os.listdir(TESTDATA) if TESTDATA.is_dir() else []:
            if s not in out:
                shutil.rmtree(TESTDATA / s)  # a sample that is gone takes its goldens along
    return out


@pytest.mark.parametrize("sample", sample_dirs())
def test_resolved_view(sample: str, stages: dict[str, dict]) -> None:
    data = stages[sample]
    assert data, f"{sample}: no workload"
    check_or_update(TESTDATA / sample / "resolved.json", {w: d["resolved"] for w, d in data.items()})


@pytest.mark.parametrize("sample", sample_dirs())
def test_ir(sample: str, stages: dict[str, dict]) -> None:
    data = stages[sample]
    check_or_update(TESTDATA / sample / "ir.json", {w: d["ir"] for w, d in data.items()})
    for d in data.values():  # the IR never carries private-key bytes
        for s in d["ir"]["secrets"]:
            for f in s["files"]:
                assert "text" not in f or "PRIVATE KEY" not in f["text"], (s["name"], f["name"])


@pytest.mark.parametrize("sample", sample_dirs())
def test_ir_renders_to_the_golden_bundle(sample: str) -> None:
    """IR golden → render + bundle → every file of tests/golden/<sample>/ but the
    manifest (it also records inputs and ports the IR does not hold) and private
    keys (the IR golden holds none)."""
    from envoygen import ir as _ir
    from envoygen.bundle import bundle_files
    from envoygen.irdump import load_bootstrap
    from envoygen.render import Renderer

    golden_ir = json.loads((TESTDATA / sample / "ir.json").read_text())
    several = len(golden_ir) > 1
    renderer = Renderer()
    compared = 0
    for workload, data in golden_ir.items():
        boot = load_bootstrap(data)
        files = bundle_files(renderer, boot, "/etc/envoy", "yaml", {})
        expected = tree(GOLDEN / sample / workload if several else GOLDEN / sample)
        want = {k for k in expected if k != "manifest.json" and not _ir.is_private_key_file(k)}
        got = {k for k in files if k != "manifest.json" and not _ir.is_private_key_file(k)}
        assert got == want, f"{sample}/{workload}: files {sorted(got ^ want)}"
        for name in sorted(want):
            assert files[name][0] == expected[name], f"{sample}/{workload}: {name} differs from the golden bundle"
            compared += 1
    assert compared >= 2  # at least envoy.yaml and Dockerfile


def test_a_naming_rule_lives_in_one_python_file() -> None:
    """The listener name's form is written in names.py only: no other module of
    envoygen/ (nor a template) builds ``<bind>_<port>`` or an SDS name itself."""
    import re

    offenders = []
    pattern = re.compile(r"""f["'][^"']*\{[^}]*\}_\{[^}]*port[^}]*\}|"0\.0\.0\.0_"|kubernetes://\{|-cacert\.yaml|\|\{subset\}\|""")
    for p in sorted((REPO / "envoygen").rglob("*.py")) + sorted((REPO / "templates").glob("*.j2")):
        if p.name == "names.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, "Envoy names written outside names.py:\n" + "\n".join(offenders)
    assert pattern.search('f"{bind}_{port}"') and pattern.search('f"sds/{c}-cacert.yaml"')  # the detector works
