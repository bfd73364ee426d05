"""``--bootstrap-format json`` from the templates rewritten to write JSON (jsontemplates;
issue 14: JSON no slower than YAML). The JSON must be, byte for byte, what yamljson makes
of the YAML render (which tests/test_yamljson.py holds to PyYAML's reading), and the
rewrite must cover the packaged templates' hot paths, not fall back to reading YAML."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from envoygen import jsontemplates as jt
from envoygen import jsonemit, jsonrender, render, yamljson
from envoygen.cli import cli
from istio_docs import dump
from scale_inputs import scale_input
from test_authz import _tcp_docs, policy, web
from test_golden import REPO, render_args, sample_dirs
from test_jwt import REQUIRE_PRINCIPAL, Signer, request_authn

TEMPLATES = render.packaged_templates()
# macros still rendered as YAML and read by yamljson: policy filters with tags inside their lines
KEPT_AS_YAML = {"filters.j2": {"string_match", "value_match", "rbac_rule", "rbac_rules", "jwt_authn"}}


def _files() -> dict[str, str]:
    return {p.name: p.read_text() for p in TEMPLATES.glob("*.j2")}


def test_packaged_templates_are_rewritten_not_read_back() -> None:
    """Every macro but the five policy ones is rewritten; YAML copies exist of those only."""
    out = jsonemit.transform_all(_files())
    for name in ("envoy.yaml.j2", "macros.j2", "cluster.yaml.j2", "filters.j2"):
        kept = set(re.findall(r"\{\{ yaml__(\w+)\(.*?\) \| yj[miv] \}\}", out[name]))
        copies = set(re.findall(r"macro yaml__(\w+)\(", out[name]))
        assert kept == copies == KEPT_AS_YAML.get(name, set()), (name, kept, copies)


def _policies_input(tmp: Path) -> Path:
    """HTTP with AuthorizationPolicy and RequestAuthentication, TCP with network RBAC: the
    macros kept as YAML, inside rewritten ones."""
    signer = Signer()
    deny = policy("deny-paths", {"action": "DENY", "rules": [
        {"to": [{"operation": {"paths": ["/admin/*", "/api/{*}/secret"], "methods": ["DELETE"]}}]},
        {"from": [{"source": {"remoteIpBlocks": ["10.0.0.0/8"]}}], "when": [{"key": "request.headers[x-a]",
                                                                          "values": ["b*", "c"]}]}]})
    dry = policy("dry", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/dry"]}}]}]},
                 annotations={"istio.io/dry-run": "true"})
    jwt = request_authn({"issuer": "https://issuer.test",
                         "jwks": signer.jwks(), "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}]})
    tcp_deny = policy("tcp-deny", {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.1.0.0/16"]}}]}]})
    f = tmp / "policies.yaml"
    f.write_text(dump(*web(8080, ["a.example.com"]), deny, dry, jwt, REQUIRE_PRINCIPAL) + "---\n"
                 + _tcp_docs(9000, tcp_deny))
    return f


def _inputs(tmp: Path) -> list[tuple[str, list[str]]]:
    out = [(s, [f"samples/{s}", *render_args(s)]) for s in sample_dirs()]
    scale = tmp / "scale.yaml"
    scale.write_text(scale_input(30, rules_every=2))
    shared = tmp / "shared.yaml"
    shared.write_text(scale_input(30, shared=True))
    return out + [("scale", [str(scale)]), ("shared", [str(shared)]), ("policies", [str(_policies_input(tmp))])]


def test_json_is_what_yamljson_reads_from_the_yaml(tmp_path: Path, monkeypatch) -> None:
    """Every sample, issue 14's shapes and an input with every policy filter: the JSON the
    rewritten templates write equals, byte for byte, the JSON read from the YAML render
    (and the rewritten way is the one taken, except where EnvoyFilter patches are applied)."""
    real = render.Renderer._native_json
    taken: list[bool] = []

    def native(self, b, install_dir):  # noqa: ANN001, ANN202
        out = real(self, b, install_dir)
        taken.append(out is not None)
        return out

    monkeypatch.chdir(REPO)
    compared = 0
    for name, args in _inputs(tmp_path):
        outs = []
        for way in (native, lambda self, b, d: None):
            monkeypatch.setattr(render.Renderer, "_native_json", way)
            out = tmp_path / f"{name}-{len(outs)}"
            r = CliRunner().invoke(cli, ["render", "-q", "-f", *args, "-o", str(out), "--bootstrap-format", "json"])
            assert r.exit_code == 0, (name, r.output)
            outs.append(out)
        for f in sorted(outs[0].rglob("envoy.json")):
            rel = f.relative_to(outs[0])
            assert f.read_bytes() == (outs[1] / rel).read_bytes(), (name, rel)
            compared += 1
    assert compared >= len(sample_dirs()) + 3
    # every bootstrap but edge-policies' (EnvoyFilter patches: the patched YAML is read and dumped)
    assert taken.count(False) == 1 and taken.count(True) >= len(sample_dirs()) + 2, taken


def test_values_yamljson_refuses_are_refused() -> None:
    """The JSON filters give what yamljson makes of the YAML filters' text, or refuse with it."""
    f = jsonrender.filters(render._json, render._duration)
    assert f["jj"]("a\u00e9\"\n") == '"a\\u00e9\\"\\n"'
    assert f["jj"](0.5) == "0.5" and f["jj"](7) == "7" and f["jj"](True) == "true"
    assert f["jj"](("a", 1)) == '["a",1]'
    assert f["jdur"](0.25) == '"0.25s"'
    assert f["jplain"]("STATIC") == '"STATIC"' and f["jplain"](301) == "301"
    assert f["jj"](1e-05) == '"1e-05"'  # PyYAML reads the YAML's 1e-05 as text, and so did yamljson
    assert f["jj"]("a\tb") == '"a\\tb"'
    for bad in ("\ud800", None, ("\ufffe",)):
        with pytest.raises(yamljson.NotSubset):
            f["jj"](bad)
    for bad in ("yes", "a\tb", "x: y"):
        with pytest.raises(yamljson.NotSubset):
            f["jplain"](bad)
    with pytest.raises(yamljson.NotSubset):
        f["jkey"]("on")


def test_a_value_yamljson_refuses_takes_the_yaml_way(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(2))
    real = jsonrender.filters

    def refusing(j, dur):  # noqa: ANN001, ANN202 - one host name yamljson would refuse
        made = real(j, dur)
        jj = made["jj"]
        made["jj"] = lambda v: (_ for _ in ()).throw(yamljson.NotSubset("x")) if v == "outbound|80||svc1.example.com" else jj(v)
        return made

    monkeypatch.setattr(jsonrender, "filters", refusing)
    real_native, results = render.Renderer._native_json, []
    monkeypatch.setattr(render.Renderer, "_native_json",
                        lambda self, b, d: results.append(real_native(self, b, d)) or results[-1])
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["render", "-q", "-f", str(src), "-o", str(out), "--bootstrap-format", "json"])
    assert r.exit_code == 0, r.output
    assert results == [None]  # refused: the JSON came from the YAML render
    assert '"domains":["h1.example.com"]' in (out / "envoy.json").read_text()


@pytest.mark.parametrize("text, why", [
    ("a:\n{% if x %}\n  b: 1\nc: 2\n{% endif %}\n", "closes a collection opened outside the block"),
    ("a:\n{% if x %}\n  b: 1\n{% else %}\n  - 1\n{% endif %}\n", "a value of two shapes"),
    ("a: {{ x }}-{{ y }}\n", "an expression inside a scalar"),
    ("a: b {% if x %}c{% endif %}\n", "a tag inside a line"),
    ("a:\n  - - 1\n", "nested items"),
    ("a:\n  {}\n", "a value alone on the line after its key (yamljson refuses it too)"),
])
def test_what_the_rewrite_refuses(text: str, why: str) -> None:
    with pytest.raises(jt.Refused):
        jsonemit.transform(text, {}, "t.j2")


def test_rewrite_by_hand() -> None:
    src = ('a:\n  b: {{ x | j }}\n  "@c": {d: {{ y | dur }}, {{ k | j }}: [1, e]}\n  f: {}\n'
           'g:\n{% for i in xs %}\n- {{ i | j }}\n{% endfor %}\nh: {{ w }}\n')
    env = render.Renderer()._environment(__import__("jinja2").DictLoader({"t.j2": jsonemit.transform(src, {}, "t.j2")}))
    env.filters.update(jsonrender.filters(render._json, render._duration))
    text = jt.finish(env.get_template("t.j2").render(x="v", y=1.5, k="key", xs=[1, "two"], w="STATIC"))
    assert text == '{"a":{"b":"v","@c":{"d":"1.5s","key":[1,"e"]},"f":{}},"g":[1,"two"],"h":"STATIC"}'
    assert text == yamljson.to_json(__import__("jinja2").Environment(trim_blocks=True, lstrip_blocks=True).from_string(
        src.replace("| dur", "~ 's'").replace("| j", "| tojson")).render(x="v", y=1.5, k="key", xs=[1, "two"], w="STATIC"))


def test_template_edit_is_seen_through_the_cache(tmp_path: Path, monkeypatch) -> None:
    """The compiled JSON templates are cached by every template's text: an edit in the
    macros a template imports changes its JSON at the next run."""
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATES, tdir)
    monkeypatch.setattr(render, "packaged_templates", lambda: tdir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(1))

    def json_out(n: int) -> str:
        out = tmp_path / f"out{n}"
        r = CliRunner().invoke(cli, ["render", "-q", "-f", str(src), "-o", str(out), "--bootstrap-format", "json"])
        assert r.exit_code == 0, r.output
        return (out / "envoy.json").read_text()

    first = json_out(1)
    assert json_out(2) == first
    macros = tdir / "macros.j2"
    macros.write_text(macros.read_text().replace("validate_clusters: false", "validate_clusters: true"))
    assert '"validate_clusters":true' in json_out(3) and '"validate_clusters":false' in first
