"""Istio always lists envoy.filters.http.fault and .cors in a gateway's HTTP filter chain.
Without a route that configures them they act on nothing but cost CPU per request
(bench/dataplane.py --ablate: 5-12 % of the proxy's CPU per request), so envoygen
writes each only where a route of that connection manager uses it, and keeps both
whenever EnvoyFilter patches are applied (a patch may anchor on them).

What a client sees is the same: Envoy's fault filter with an empty config injects
nothing, even when asked by x-envoy-fault-* headers, and its CORS filter acts only on
a route's policy (test_http_actions.py drives both features through real Envoy)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from harness import http_get, run_envoygen
from istio_docs import dump, gateway_doc, start, to, vs_doc


def _filters(boot: dict) -> list[str]:
    lst = next(l for l in boot["static_resources"]["listeners"] if l["name"] == "0.0.0.0_8080")
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    return [h["name"].rsplit(".", 1)[-1] for h in hcm["http_filters"]]


def _render(tmp_path: Path, http: list[dict], extra: str = "") -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "in.yaml"
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "b", "namespace": "test"},
          "spec": {"hosts": ["b.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                   "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}]}}
    src.write_text(dump(gateway_doc(), vs_doc("vs", ["a.example.com"], http), se) + extra)
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", src, "-o", out])
    assert p.returncode == 0, p.stderr
    return _filters(yaml.safe_load((out / "envoy.yaml").read_text()))


def test_fault_and_cors_only_where_a_route_uses_them(tmp_path: Path) -> None:
    plain = [{"route": to("b.example.com")}]
    assert _render(tmp_path / "plain", plain) == ["router"]
    fault = [{"fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}}, "route": to("b.example.com")}]
    assert _render(tmp_path / "fault", fault) == ["fault", "router"]
    cors = [{"corsPolicy": {"allowOrigins": [{"exact": "https://x.example.com"}]}, "route": to("b.example.com")}]
    assert _render(tmp_path / "cors", cors) == ["cors", "router"]
    assert _render(tmp_path / "both", [fault[0] | {"match": [{"uri": {"prefix": "/f"}}]}, cors[0]]) == [
        "fault", "cors", "router"]


def test_envoyfilter_keeps_istios_chain(tmp_path: Path) -> None:
    ef = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
          "metadata": {"name": "drop-cors", "namespace": "istio-system"},
          "spec": {"configPatches": [{"applyTo": "HTTP_FILTER", "match": {"context": "GATEWAY", "listener": {
              "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager",
                                         "subFilter": {"name": "envoy.filters.http.cors"}}}}},
              "patch": {"operation": "REMOVE"}}]}}
    # the patch finds Istio's cors filter to remove, and fault stays where Istio has it
    assert _render(tmp_path, [{"route": to("b.example.com")}], "---\n" + dump(ef)) == ["fault", "router"]


def test_without_the_filters_fault_headers_and_preflights_pass_through(backend_factory, gateway_factory) -> None:
    gw, backends = start(gateway_factory, backend_factory, ["plain"],
                         [gateway_doc(), vs_doc("vs", ["a.example.com"], [{"route": to("plain")}])])
    # header-controlled faults need a fault filter configured for them: Istio's is not, nor is anything here
    t0 = time.monotonic()
    r = http_get(gw, 80, "/", host="a.example.com",
                 headers={"x-envoy-fault-abort-request": "503", "x-envoy-fault-delay-request": "2000"})
    assert r.status == 200 and time.monotonic() - t0 < 1.5, r
    # no CORS policy: a preflight is an ordinary request for the backend, as with Istio's policy-less filter
    before = backends["plain"].count
    r = http_get(gw, 80, "/", host="a.example.com", method="OPTIONS",
                 headers={"origin": "https://x.example.com", "access-control-request-method": "POST"})
    assert r.status == 200 and "access-control-allow-origin" not in r.headers
    assert backends["plain"].count == before + 1
