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
import subprocess
import sys
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


_WITHOUT_FAST_ROUTE = (  # argv: LOG render ...; LOG gets 1/0 per route: would the shortcut have applied
    "import sys, envoygen.render as r\n"
    "log, plain = open(sys.argv.pop(1), 'a'), r._plain_route\n"
    "r._plain_route = lambda *a: log.write('01'[plain(*a)]) and log.flush() and False\n"
    "sys.argv[0] = 'envoygen'\n"
    "from envoygen.cli import main\n"
    "main()\n"
)


def test_plain_route_shortcut_writes_what_the_full_macro_writes(tmp_path: Path) -> None:
    """The route loop's shortcut for common routes (render._plain_route) changes no byte:
    every sample rendered with the shortcut off equals its golden, which has it on."""
    from test_golden import GOLDEN, render_args, sample_dirs, tree

    log = tmp_path / "shortcut.log"
    for sample in sample_dirs():
        out = tmp_path / sample
        args = ["render", "-q", "-f", f"samples/{sample}", "-o", str(out), *render_args(sample)]
        p = subprocess.run([sys.executable, "-c", _WITHOUT_FAST_ROUTE, str(log), *args], cwd=REPO,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        got, want = tree(out), tree(GOLDEN / sample)
        boots = [name for name in want if name.endswith("envoy.yaml")]
        assert boots and all(got[name] == want[name] for name in boots), sample
    # control: the samples hold routes of both kinds, so both branches were compared
    seen = log.read_text()
    assert seen.count("1") >= 5 and seen.count("0") >= 5, seen


def test_plain_route_shortcut_refuses_every_route_feature(monkeypatch) -> None:
    """tests/inputs/route-features.yaml: each route differs from a plain one by one field;
    the shortcut takes only the plain ones, and the output is the same with it off."""
    req = Request((str(REPO / "tests" / "inputs" / "route-features.yaml"),))
    compiled = translate_inputs(req)
    seen: dict[str, bool] = {}
    original = render_mod._plain_route

    def recording(r, hoisted, vh_config):
        seen[r.match.path] = original(r, hoisted, vh_config)
        return seen[r.match.path]

    monkeypatch.setattr(render_mod, "_plain_route", recording)
    with_shortcut = render_bundles(compiled, req, req.install_dir)
    monkeypatch.setattr(render_mod, "_plain_route", lambda *a: False)
    without = render_bundles(compiled, req, req.install_dir)
    assert with_shortcut["envoy.yaml"] == without["envoy.yaml"]
    plain = {path for path, taken in seen.items() if taken}
    assert plain == {"/plain", "/plain-exact"}, seen
    assert len(seen) == 20, seen  # 13 one-feature routes and 2 plain ones, /a and /b, 2 with retries, the hashed host's /


def test_plain_route_shortcut_knows_every_route_field() -> None:
    """A field added to the IR's routes must be taught to render._plain_route (and given a
    route in tests/inputs/route-features.yaml), or the shortcut would write routes without it."""
    from dataclasses import fields

    from envoygen import ir

    known = {
        ir.Route: {"name", "match", "action", "headers", "fault", "cors", "operation", "metadata_vs"},
        ir.RouteMatch: {"path_kind", "path", "case_sensitive", "headers", "query_parameters"},
        ir.RouteAction: {"clusters", "weighted", "timeout", "retry", "prefix_rewrite", "regex_rewrite",
                         "host_rewrite", "hash_policies", "mirrors"},
        ir.HeaderOps: {"request_add", "request_remove", "response_add", "response_remove"},
    }
    for cls, names in known.items():
        assert {f.name for f in fields(cls)} == names, cls.__name__


def test_template_comments_cannot_be_ended_by_a_value() -> None:
    """Every value a packaged template writes into a ``#`` comment goes through ``| comment``
    (or is one of the constants below), which escapes line breaks: no input string can end the
    comment and add keys to a bootstrap or SDS file."""
    import re

    constants = {"version", "envoy_version", "readiness_port"}
    unsafe = []
    for tpl in sorted(render_mod.packaged_templates().glob("*.j2")):
        for n, line in enumerate(tpl.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                continue
            for expr in re.findall(r"{{(.*?)}}", line):
                expr = expr.strip()
                if expr not in constants and not expr.endswith("| comment"):
                    unsafe.append(f"{tpl.name}:{n}: {expr}")
    assert unsafe == []
    for text in ("gw\nadmin: {}", "a\rb", "a\x85b", "a\u2028b", "a\u2029b", "a\x00b"):
        out = render_mod._comment(text)
        assert not any(c in out for c in "\n\r\x85\u2028\u2029\x00"), repr(out)
    assert render_mod._comment("istio-ingressgateway.istio-system") == "istio-ingressgateway.istio-system"


def test_drop_blank_lines_is_the_line_regex() -> None:
    """render.drop_blank_lines removes what ``re.sub(r"^\\s*\\n", "", text, flags=re.M)`` removes,
    on random text of YAML-ish characters, every whitespace ``\\s`` knows and line breaks."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    reference = re.compile(r"^\s*\n", re.M)
    pieces = st.sampled_from(["\n", " ", "  ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\xa0",
                              "a", "key: v", "- x", "#"])

    @settings(max_examples=2000, derandomize=True, database=None, deadline=None)
    @given(st.lists(pieces, max_size=30).map("".join))
    def same(text: str) -> None:
        assert render_mod.drop_blank_lines(text) == reference.sub("", text)

    same()
    for text in ("", "\n", "  \n\n", "\n\na\n", "a\n \n\n  b\n", "x\n  \n\n   y\n", "a  \n\nb\n"):
        assert render_mod.drop_blank_lines(text) == reference.sub("", text), repr(text)


def test_bootstrap_templates_are_ascii() -> None:
    """One character above U+00FF anywhere in a rendered bootstrap (an arrow in a comment did it)
    makes Python hold the whole text, 5 MB at 1,000 hosts, at 2 bytes per character, and every
    later pass over it (blank lines, JSON, the write) slower. (Input strings are written as given.)"""
    for tpl in sorted(render_mod.packaged_templates().glob("*.j2")):
        if tpl.name != "Dockerfile.j2":
            text = tpl.read_text(encoding="utf-8")
            assert text.isascii(), (tpl.name, sorted({c for c in text if not c.isascii()}))


def _locality_input() -> str:
    """A ServiceEntry whose endpoints carry locality labels that differ only in case, behind a Gateway."""
    from istio_docs import dump, gateway_doc, to, vs_doc

    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "svc", "namespace": "default"},
          "spec": {"hosts": ["svc.internal"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                   "resolution": "STATIC", "location": "MESH_INTERNAL",
                   "endpoints": [{"address": "10.0.0.1", "locality": "us-west/zone-a"},
                                 {"address": "10.0.0.2", "locality": "US-WEST/zone-a"},
                                 {"address": "10.0.0.3", "locality": "us-west/zone-a"}, {"address": "10.0.0.4"}]}}
    return dump(gateway_doc(ns="default"), se, vs_doc("vs", ["*"], [{"route": to("svc.internal")}], ns="default"))


def test_endpoints_grouped_by_exact_locality_in_label_order(tmp_path: Path) -> None:
    """Istio groups a cluster's endpoints by the locality label as written and sorts the labels
    (buildLocalityLbEndpoints: a map keyed by the label, then sort.Strings): labels that differ
    only in case are two localities (Jinja's groupby would merge them), in byte order."""
    import yaml

    src = tmp_path / "in.yaml"
    src.write_text(_locality_input())
    req = Request((str(src),))
    files = render_bundles(translate_inputs(req), req, req.install_dir)
    boot = yaml.safe_load(files["envoy.yaml"][0])
    (cl,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == "outbound|80||svc.internal"]
    groups = [(g.get("locality"), [e["endpoint"]["address"]["socket_address"]["address"] for e in g["lb_endpoints"]])
              for g in cl["load_assignment"]["endpoints"]]
    assert groups == [
        (None, ["10.0.0.4"]),
        ({"region": "US-WEST", "zone": "zone-a", "sub_zone": ""}, ["10.0.0.2"]),
        ({"region": "us-west", "zone": "zone-a", "sub_zone": ""}, ["10.0.0.1", "10.0.0.3"]),
    ]


def test_template_cache_keeps_at_most_its_bound(monkeypatch, tmp_path: Path) -> None:
    """Every template directory leaves entries of its own; writing one removes the oldest beyond
    MAX_ENTRIES, and nothing but the cache's own files."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    monkeypatch.setattr(render_mod._TemplateCache, "MAX_ENTRIES", 10)
    monkeypatch.setattr(render_mod, "_template_cache", lambda: render_mod._TemplateCache(str(cache_dir)))
    old = []
    for i in range(12):  # entries of template directories long gone, oldest first
        f = cache_dir / f"__jinja2_{i:040x}.cache"
        f.write_bytes(b"stale")
        os.utime(f, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
        old.append(f.name)
    other = cache_dir / "notes.txt"
    other.write_text("not an entry")
    req = Request((str(SAMPLE),))
    render_bundles(translate_inputs(req), req, req.install_dir)  # writes the packaged templates' entries
    kept = sorted(p.name for p in cache_dir.iterdir() if p.name != "notes.txt")
    assert len(kept) == 10 and other.exists()
    new = [n for n in kept if n not in old]
    assert len(new) >= 5  # the packaged templates' fresh entries all stay...
    assert [n for n in kept if n in old] == old[len(old) - (10 - len(new)):]  # ... beside the newest stale ones


def test_models_are_released_before_the_render(tmp_path: Path, monkeypatch) -> None:
    """While the bootstrap is rendered no input model is alive any more (the resolve stage's
    views held them: ~15 MiB at 1,000 hosts beside the render's own allocations)."""
    import gc

    from click.testing import CliRunner

    from envoygen.cli import cli
    from envoygen.model.networking import VirtualService
    from scale_inputs import scale_input

    alive: list[int] = []
    real = render_mod.Renderer.bootstrap

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        alive.append(sum(1 for o in gc.get_objects() if type(o) is VirtualService))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(render_mod.Renderer, "bootstrap", counting)
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(5))
    for cmd in (["render", "-q", "-f", str(src), "-o", str(tmp_path / "out")],
                ["validate", "-q", "--skip-envoy", "-f", str(src)]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 0, r.output
    assert alive == [0, 0], alive  # render, then validate (which renders in memory)
    r = CliRunner().invoke(cli, ["ir", "-f", str(src)])  # ir still shows the resolved view
    assert r.exit_code == 0 and '"resolved"' in r.output and "vs4" in r.output
