"""What render checks in its output, and when.

The packaged templates write every scalar through ``|j`` (JSON), so their YAML is
well formed by construction and render does not parse it back (issue 14: no output
re-parse on the default path; tests/test_golden.py parses every golden instead).  A
user's ``--templates`` can write anything: that output is parsed before anything is
written, and a file that is not YAML is refused with EG0402, leaving OUT absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from envoygen import render as render_mod
from envoygen.pipeline import Request, render_bundles, translate_inputs
from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "coolstore"


def test_user_template_writing_invalid_yaml_is_refused(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    shutil.copytree(render_mod.packaged_templates(), tpl)
    text = (tpl / "envoy.yaml.j2").read_text()
    (tpl / "envoy.yaml.j2").write_text(text + "broken: [unclosed\n")
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(SAMPLE), "-o", str(out), "--templates", str(tpl)], cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "EG0402" in p.stderr and "rendered invalid YAML" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not os.path.lexists(out)


def test_user_template_writing_valid_yaml_passes(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    shutil.copytree(render_mod.packaged_templates(), tpl)
    (tpl / "envoy.yaml.j2").write_text((tpl / "envoy.yaml.j2").read_text() + "# a user's comment\n")
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(SAMPLE), "-o", str(out), "--templates", str(tpl)], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (out / "envoy.yaml").read_text().rstrip().endswith("# a user's comment")


def test_packaged_templates_are_not_parsed_back(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(render_mod, "_check_yaml_syntax", lambda text: calls.append(len(text)))
    req = Request((str(SAMPLE),))
    files = render_bundles(translate_inputs(req), req, req.install_dir)
    assert "envoy.yaml" in files and calls == []
    # control: the same templates given as --templates are parsed back, every YAML file
    req = Request((str(SAMPLE),), templates=render_mod.packaged_templates())
    files = render_bundles(translate_inputs(req), req, req.install_dir)
    assert len(calls) == sum(1 for name in files if name.endswith(".yaml"))
