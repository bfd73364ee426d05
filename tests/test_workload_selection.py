"""Which gateway workloads get a bundle, through the real CLI (``envoygen render``).

``envoygen/workloads.py``: without an IstioOperator there is one workload, Istio's
default ``istio-ingressgateway``. An IstioOperator's *enabled* ``ingressGateways``
replace it; when it lists ``istio-ingressgateway`` disabled and enables nothing,
nothing can be built: error EG0210 (exit 1), and OUT is not touched (no bundle, and in
particular no tree holding only a top-level ``manifest.json``). When it disables only
other gateways, the default profile's ``istio-ingressgateway`` is still built.

``envoygen/pipeline.py`` / ``analyze.py``: a Gateway whose selector matches no
workload is a *warning* (EG0210 on the Gateway's selector).  A workload that no
Gateway selects is an EG0212 *error* when it is the only one built (its bundle would
serve nothing; OUT untouched), and a warning when other workloads are built: its
complete bundle (bootstrap, Dockerfile, manifest) serves only readiness and stats.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from harness import port_is_open, run_envoygen

HTTP_GATEWAY = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: {istio}}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
"""

DISABLE_DEFAULT = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: cp, namespace: istio-system}
spec:
  components:
    ingressGateways:
    - name: istio-ingressgateway
      enabled: false
---
"""

DISABLE_DEFAULT_AND_CUSTOM = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: cp, namespace: istio-system}
spec:
  components:
    ingressGateways:
    - name: my-gateway
      namespace: apps
      enabled: false
      label: {istio: my-gateway}
    - name: istio-ingressgateway
      enabled: false
---
"""

DISABLE_ONLY_CUSTOM = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: cp, namespace: istio-system}
spec:
  components:
    ingressGateways:
    - name: my-gateway
      namespace: apps
      enabled: false
      label: {istio: my-gateway}
---
"""

TWO_GATEWAYS = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: cp, namespace: istio-system}
spec:
  components:
    ingressGateways:
    - name: istio-ingressgateway
      enabled: true
      label: {istio: ingressgateway}
    - name: my-gateway
      namespace: apps
      enabled: true
      label: {istio: my-gateway}
---
"""

DEFAULT_LABELS = "app=istio-ingressgateway,istio=ingressgateway"


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    lines = [i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def render(f: Path, out: Path, *extra: str):  # noqa: ANN201
    return run_envoygen(["render", "-f", str(f), "-o", str(out), *extra])


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Path → (content, mode, mtime_ns) of ``root`` and everything under it."""
    out = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        out[str(p.relative_to(root))] = (None if p.is_dir() else p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


def earlier_bundle(tmp_path: Path) -> tuple[Path, dict]:
    """OUT holding a good earlier bundle (alone in its parent directory), and its snapshot."""
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    good = write(tmp_path, HTTP_GATEWAY.format(istio="ingressgateway"), "good.yaml")
    p = render(good, out)
    assert p.returncode == 0, p.stderr
    return out, snapshot(out)


def assert_refused_untouched(p, out: Path, before: dict | None) -> None:  # noqa: ANN001
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert p.stderr.splitlines()[-1] == "error: 1 error(s) in the input; nothing was written", p.stderr
    assert "wrote " not in p.stdout + p.stderr
    if before is None:
        assert not out.exists()
        assert os.listdir(out.parent) == []
    else:
        assert snapshot(out) == before
        assert sorted(os.listdir(out.parent)) == [out.name]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if " EG" in ln]


# --------------------------------------------------------------------------
# an IstioOperator that enables no ingress gateway


def test_operator_disabling_the_default_gateway_is_refused(tmp_path):
    text = DISABLE_DEFAULT + HTTP_GATEWAY.format(istio="ingressgateway")
    f = write(tmp_path, text)
    (tmp_path / "fresh").mkdir()
    fresh = tmp_path / "fresh" / "out"
    p = render(f, fresh)
    assert error_lines(p.stderr) == [
        f"{f}:{line_of(text, 'ingressGateways:')}: error EG0210 IstioOperator enables no ingress gateway; nothing to build "
        "[spec.components.ingressGateways]"
    ], p.stderr
    assert_refused_untouched(p, fresh, None)

    # an earlier bundle in OUT stays exactly as it was (content, modes, mtimes)
    out, before = earlier_bundle(tmp_path)
    p = render(f, out)
    assert_refused_untouched(p, out, before)
    assert json.loads((out / "manifest.json").read_text())["workload"]["name"] == "istio-ingressgateway"


def test_operator_disabling_every_listed_gateway_is_refused(tmp_path):
    text = DISABLE_DEFAULT_AND_CUSTOM + HTTP_GATEWAY.format(istio="ingressgateway")
    f = write(tmp_path, text)
    out, before = earlier_bundle(tmp_path)
    p = render(f, out)
    assert [ln.split(": ", 1)[1] for ln in error_lines(p.stderr)] == [
        "error EG0210 IstioOperator enables no ingress gateway; nothing to build [spec.components.ingressGateways]"
    ], p.stderr
    assert error_lines(p.stderr)[0].startswith(f"{f}:{line_of(text, 'ingressGateways:')}: ")
    assert_refused_untouched(p, out, before)
    # the validate command refuses the same input the same way
    v = run_envoygen(["validate", "--skip-envoy", "-f", str(f)])
    assert v.returncode == 1 and "EG0210" in v.stderr, v.stderr


def test_operator_disabling_only_another_gateway_keeps_the_default(tmp_path):
    """Istio's default profile enables istio-ingressgateway unless it is listed disabled."""
    f = write(tmp_path, DISABLE_ONLY_CUSTOM + HTTP_GATEWAY.format(istio="ingressgateway"))
    out = tmp_path / "out"
    p = render(f, out)
    assert p.returncode == 0, p.stderr
    assert error_lines(p.stderr) == [], p.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["workload"] == {"name": "istio-ingressgateway", "namespace": "istio-system",
                               "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}}
    assert man["ports"]["listeners"] == [8080]


def test_gateway_flag_matching_no_workload_is_refused(tmp_path):
    f = write(tmp_path, HTTP_GATEWAY.format(istio="ingressgateway"))
    out, before = earlier_bundle(tmp_path)
    p = render(f, out, "--gateway", "istio=nope")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: --gateway istio=nope matches no gateway workload; known: istio-system/istio-ingressgateway {DEFAULT_LABELS}"
    ], p.stderr
    assert snapshot(out) == before
    assert sorted(os.listdir(out.parent)) == ["out"]


# --------------------------------------------------------------------------
# a Gateway whose selector matches no workload: today a warning and a readiness-only bundle


def assert_complete_bundle(d: Path, *, listeners: list[int]) -> dict:
    """A real bundle, not a lone manifest: bootstrap + Dockerfile + manifest listing both, digests right."""
    import hashlib

    names = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert names == ["Dockerfile", "envoy.yaml", "manifest.json"], names
    man = json.loads((d / "manifest.json").read_text())
    assert man["generator"] == "envoygen"
    assert man["bootstrap"] == "envoy.yaml"
    assert man["files"] == {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in ("Dockerfile", "envoy.yaml")}
    assert man["ports"]["listeners"] == listeners
    assert stat.S_IMODE((d / "envoy.yaml").stat().st_mode) == 0o644
    return man


def test_gateway_selecting_no_workload_is_an_error_and_writes_nothing(tmp_path, gateway_factory):
    """No Gateway for the only workload built: the bundle would serve nothing, so EG0212 is an error
    and OUT is left untouched (an earlier good bundle is not overwritten; issue 10)."""
    text = HTTP_GATEWAY.format(istio="no-such-gateway")
    gw = gateway_factory(text, ports=(80,), start=False)
    gw.out_dir.mkdir(parents=True, exist_ok=True)
    (gw.out_dir / "keep").write_text("earlier bundle")
    r = gw.render()
    assert r.exit_code == 1, r.stderr
    f = gw.input_dir / "00.yaml"
    assert error_lines(r.stderr) == [
        f"{gw.input_dir}: error EG0212 no Gateway selects gateway workload istio-system/istio-ingressgateway "
        f"({DEFAULT_LABELS}); the bundle would serve nothing "
        "(hint: add a Gateway whose selector matches it, or pick a workload with --gateway)",
        f"{f}:{line_of(text, 'selector:')}: warning EG0210 Gateway default/gw: selector {{'istio': 'no-such-gateway'}} "
        "matches no gateway workload (istio-ingressgateway {'istio': 'ingressgateway', 'app': 'istio-ingressgateway'}); "
        "it has no effect [spec.selector]",
    ], r.stderr
    assert sorted(os.listdir(gw.out_dir)) == ["keep"]


def test_operator_workload_no_gateway_selects_gets_a_warning_and_a_complete_bundle(tmp_path):
    """Two enabled workloads, the only Gateway selects one: EG0212 for the other, both bundles complete."""
    text = TWO_GATEWAYS + HTTP_GATEWAY.format(istio="my-gateway")
    f = write(tmp_path, text)
    out = tmp_path / "out"
    p = render(f, out)
    assert p.returncode == 0, p.stderr
    assert error_lines(p.stderr) == [
        f"{f}: warning EG0212 no Gateway selects gateway workload istio-system/istio-ingressgateway "
        "(istio=ingressgateway); its bundle serves only readiness and stats"
    ], p.stderr
    top = json.loads((out / "manifest.json").read_text())
    assert top["bundles"] == ["istio-ingressgateway", "my-gateway"]
    assert sorted(os.listdir(out)) == ["istio-ingressgateway", "manifest.json", "my-gateway"]
    assert_complete_bundle(out / "istio-ingressgateway", listeners=[])
    assert_complete_bundle(out / "my-gateway", listeners=[8080])  # no k8s.service.ports: Istio's 80→8080

    # --gateway picks the unselected workload: its bundle would serve nothing, an error, nothing written
    out2 = tmp_path / "out2"
    p = render(f, out2, "--gateway", "istio=ingressgateway")
    assert p.returncode == 1, p.stderr
    assert [ln for ln in error_lines(p.stderr) if "EG0212" in ln] == [
        f"{f}: error EG0212 no Gateway selects gateway workload istio-system/istio-ingressgateway "
        "(istio=ingressgateway); the bundle would serve nothing "
        "(hint: add a Gateway whose selector matches it, or pick a workload with --gateway)"
    ], p.stderr
    assert not out2.exists()


def test_operator_gateway_name_must_be_a_kubernetes_name(tmp_path: Path) -> None:
    """An ingressGateways[].name becomes a Deployment (Kubernetes: RFC 1123) and the workload named in
    the bootstrap. One with a line break would have ended the bootstrap's header comment and added
    keys (found 2026-12-03: an `admin:` block on 0.0.0.0); it is refused with its field path, nothing
    written. The same document with a valid name renders (the control)."""
    template = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {{name: op, namespace: istio-system}}
spec:
  components:
    ingressGateways:
    - name: {name}
      namespace: {namespace}
      enabled: true
      label: {{istio: ingressgateway}}
"""
    cases = [('"gw\\nadmin: {address: {socket_address: {address: 0.0.0.0, port_value: 9999}}}\\n#"', "istio-system",
              "ingressGateways[0].name"),
             ("My_Gateway", "istio-system", "ingressGateways[0].name"),
             ("gw", '"istio-system\\n#"', "ingressGateways[0].namespace"),
             ("my-gw.edge", "istio-system", None)]
    for i, (name, namespace, refused_at) in enumerate(cases):
        src = tmp_path / f"in{i}.yaml"
        src.write_text(template.format(name=name, namespace=namespace) + "---\n" + HTTP_GATEWAY.format(istio="ingressgateway"))
        out = tmp_path / f"out{i}"
        p = run_envoygen(["render", "-f", str(src), "-o", str(out)])
        if refused_at is None:
            assert p.returncode == 0 and (out / "envoy.yaml").read_text().startswith(
                "# Generated by envoygen"), p.stderr
            continue
        assert p.returncode == 1 and "EG0102" in p.stderr and refused_at in p.stderr, (name, p.stderr)
        assert "Traceback" not in p.stderr and not out.exists()
