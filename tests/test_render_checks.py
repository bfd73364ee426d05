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


def _count_parses(monkeypatch) -> list[str]:
    import jinja2

    parsed: list[str] = []
    original = jinja2.Environment._parse

    def counting(self, source, name, filename):
        parsed.append(name)
        return original(self, source, name, filename)

    monkeypatch.setattr(jinja2.Environment, "_parse", counting)
    return parsed


def test_compiled_templates_are_reused_between_runs(monkeypatch, tmp_path: Path) -> None:
    parsed = _count_parses(monkeypatch)
    monkeypatch.setattr(render_mod, "_template_cache", lambda: render_mod._TemplateCache(str(tmp_path)))
    req = Request((str(SAMPLE),))
    compiled = translate_inputs(req)
    first = render_bundles(compiled, req, req.install_dir)
    assert "macros.j2" in parsed and "envoy.yaml.j2" in parsed  # a cold cache compiles
    assert list(tmp_path.iterdir())  # ... and keeps what it compiled
    parsed.clear()
    assert render_bundles(compiled, req, req.install_dir) == first
    assert parsed == []  # a new Renderer (a new run) compiles nothing
    # a template edited since is compiled again (the cache checks the source's hash)
    tpl = tmp_path / "tpl"
    shutil.copytree(render_mod.packaged_templates(), tpl)
    for _ in range(2):
        env = render_mod.Renderer(tpl).env
        env.get_template("envoy.yaml.j2")
        env.get_template("sds.yaml.j2")
    parsed.clear()
    (tpl / "sds.yaml.j2").write_text((tpl / "sds.yaml.j2").read_text() + "# edited\n")
    env = render_mod.Renderer(tpl).env
    env.get_template("envoy.yaml.j2")
    env.get_template("sds.yaml.j2")
    assert parsed == ["sds.yaml.j2"]


def test_unusable_template_cache_is_skipped(monkeypatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(render_mod, "_template_cache", lambda: render_mod._TemplateCache(str(blocker / "cache")))
    parsed = _count_parses(monkeypatch)
    req = Request((str(SAMPLE),))
    files = render_bundles(translate_inputs(req), req, req.install_dir)
    assert "envoy.yaml" in files and "envoy.yaml.j2" in parsed
    monkeypatch.undo()
    monkeypatch.setenv("ENVOYGEN_TEMPLATE_CACHE", "0")
    assert render_mod._template_cache() is None


def test_template_cache_lives_in_a_private_user_directory(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = render_mod._template_cache()
    assert cache is not None
    where = Path(cache.directory)
    assert where.parent == tmp_path / "envoygen" and (where.stat().st_mode & 0o777) == 0o700
    # a directory others can write to is not trusted with compiled code
    where.chmod(0o777)
    assert render_mod._template_cache() is None
    where.chmod(0o700)
    assert render_mod._template_cache() is not None
