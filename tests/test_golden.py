"""Golden bundles: every directory under samples/ rendered and compared, file
by file, with tests/golden/<sample>/ (see tests/golden/README.md).

Samples are discovered when the tests are collected, so a new samples/<dir>
is covered as soon as its golden files exist (the test fails until then).

    ENVOYGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py   # rewrite goldens, delete stale ones
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("ENVOYGEN_UPDATE_GOLDEN") == "1"


def sample_dirs() -> list[str]:
    return sorted(p.name for p in SAMPLES.iterdir() if p.is_dir() and not p.name.startswith("."))


def render_args(sample: str) -> list[str]:
    f = SAMPLES / sample / "render.args"
    if not f.exists():
        return []
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def render(sample: str, out: Path) -> dict[str, bytes]:
    # cwd = repository root and a relative -f path: the manifest records
    # "samples/<sample>/..." and nothing machine-specific.
    args = ["render", "-f", f"samples/{sample}", "-o", str(out), *render_args(sample)]
    p = run_envoygen(args, cwd=REPO)
    assert p.returncode == 0, f"envoygen {' '.join(args)} exited {p.returncode}\n{p.stderr}"
    return tree(out)


@pytest.mark.parametrize("sample", sample_dirs())
def test_golden_bundle(sample: str, tmp_path: Path) -> None:
    first = render(sample, tmp_path / "a")
    second = render(sample, tmp_path / "b")
    # determinism: two renders give the same files, byte for byte
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name] == second[name], f"{sample}: {name} differs between two renders"
    # nothing machine-specific leaks in
    for name, data in first.items():
        assert str(tmp_path).encode() not in data, f"{sample}: {name} contains the OUT path"
        assert str(REPO).encode() not in data, f"{sample}: {name} contains the checkout path"
        if name.endswith((".yaml", ".json")):
            # render checks no YAML syntax for the packaged templates (they write YAML by
            # construction): this is where a template mistake is caught
            assert yaml.load(data, Loader=yaml.CSafeLoader) is not None, f"{sample}: {name} is empty"

    gdir = GOLDEN / sample
    if UPDATE:
        if gdir.exists():
            shutil.rmtree(gdir)  # stale files go with it
        for name, data in first.items():
            dest = gdir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        return
    assert gdir.is_dir(), (f"no golden files for samples/{sample}; "
                           "run ENVOYGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py and review them")
    golden = tree(gdir)
    missing = sorted(set(golden) - set(first))
    extra = sorted(set(first) - set(golden))
    assert not missing and not extra, f"{sample}: files not rendered {missing}, files not in golden {extra}"
    for name in sorted(golden):
        if first[name] != golden[name]:
            import difflib

            diff = "".join(difflib.unified_diff(
                golden[name].decode("utf-8", "replace").splitlines(True),
                first[name].decode("utf-8", "replace").splitlines(True),
                f"golden/{sample}/{name}", f"rendered/{name}", n=2))
            pytest.fail(f"{sample}: {name} differs from the golden file\n{diff[:6000]}")


def test_no_stale_golden_dirs() -> None:
    stale = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name not in sample_dirs())
    if UPDATE:
        for name in stale:
            shutil.rmtree(GOLDEN / name)
        return
    assert not stale, f"golden dirs without a sample (delete them, or run with ENVOYGEN_UPDATE_GOLDEN=1): {stale}"


def test_every_sample_has_yaml() -> None:
    for sample in sample_dirs():
        assert list((SAMPLES / sample).rglob("*.yaml")), f"samples/{sample} has no *.yaml"
