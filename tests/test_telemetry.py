"""Telemetry accessLogging through the stock Envoy: a meshConfig.extensionProviders envoyFileAccessLog
with JSON labels and a CEL filter.expression writes one JSON line per matching request; the
root-namespace / workload precedence and ``disabled`` as Istio's mergeLogs; refusals."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness import http_get, run_envoygen, wait_until

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "edge-policies"


def operator(providers: dict[str, dict]) -> dict:
    return {
        "apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "metadata": {"name": "cp", "namespace": "istio-system"},
        "spec": {"meshConfig": {"extensionProviders": [{"name": n, "envoyFileAccessLog": p} for n, p in providers.items()]},
                 "components": {"ingressGateways": [{"name": "istio-ingressgateway", "enabled": True,
                                                     "label": {"istio": "ingressgateway"}}]}},
    }


def telemetry(name: str, logging: list[dict], selector: dict | None = None, ns: str = "istio-system") -> dict:
    spec: dict = {"accessLogging": logging}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def docs(backend_port: int, *extra: dict) -> str:
    return (SAMPLES / "gateway.yaml").read_text().replace("18081", str(backend_port)) + "---\n" + yaml.safe_dump_all(extra)


def test_json_access_log_with_filter_expression(backend_factory, gateway_factory, tmp_path):
    b = backend_factory("web")
    log = tmp_path / "access.json"
    labels = {"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "authority": "%REQ(:AUTHORITY)%", "flags": "%RESPONSE_FLAGS%"}
    text = docs(b.port, operator({"json-file": {"path": str(log), "logFormat": {"labels": labels}}}),
                telemetry("mesh", [{"providers": [{"name": "json-file"}], "filter": {"expression": "response.code >= 400"}}]))
    gw = gateway_factory(text, ports=(80,))
    assert http_get(gw, 80, "/ok", host="api.example.com").status == 200
    assert http_get(gw, 80, "/missing", host="nobody.example.com").status == 404
    wait_until(lambda: log.exists() and log.read_text().strip(), timeout=15, message="access log line")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"code": 404, "path": "/missing", "authority": "nobody.example.com", "flags": "NR"}]


def _render(tmp_path: Path, text: str):  # noqa: ANN202
    f = tmp_path / "in.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    return f, out, run_envoygen(["render", "-f", f, "-o", out])


def _http_logs(out: Path) -> list[dict]:
    boot = yaml.safe_load((out / "envoy.yaml").read_text())
    lst = next(l for l in boot["static_resources"]["listeners"] if l["name"] == "0.0.0.0_8080")
    return lst["filter_chains"][0]["filters"][0]["typed_config"].get("access_log", [])


def test_precedence_workload_over_root_and_disabled(tmp_path):
    providers = operator({"a": {"path": "/tmp/a.log"}, "b": {"path": "/tmp/b.log", "logFormat": {"text": "%RESPONSE_CODE%"}}})
    root = telemetry("mesh", [{"providers": [{"name": "a"}]}])
    workload = telemetry("gw", [{"providers": [{"name": "b"}]}], selector={"istio": "ingressgateway"})
    f, out, p = _render(tmp_path, docs(9, providers, root, workload))
    assert p.returncode == 0, p.stderr
    [log] = _http_logs(out)
    assert log["typed_config"]["path"] == "/tmp/b.log"
    assert log["typed_config"]["log_format"]["text_format_source"]["inline_string"] == "%RESPONSE_CODE%\n"
    off = telemetry("gw", [{"disabled": True}], selector={"istio": "ingressgateway"})
    (tmp_path / "2").mkdir()
    f, out2, p = _render(tmp_path / "2", docs(9, providers, root, off))
    assert p.returncode == 0, p.stderr
    assert _http_logs(out2) == []  # the workload's Telemetry turns the root's provider off
    p = run_envoygen(["validate", "-f", f])
    assert p.returncode == 0, p.stderr


def test_refusals(tmp_path):
    metrics = telemetry("m", [])
    metrics["spec"]["metrics"] = [{"providers": [{"name": "prometheus"}]}]
    f, out, p = _render(tmp_path, docs(9, metrics))
    assert p.returncode == 1 and "EG0104" in p.stderr and "spec.metrics" in p.stderr
    unknown = telemetry("u", [{"providers": [{"name": "otel"}]}])
    f, out, p = _render(tmp_path, docs(9, unknown))
    assert p.returncode == 1 and "EG0222" in p.stderr and "'otel'" in p.stderr
    assert not out.exists()
