"""HTTP match sourceLabels/sourceNamespace compare with the gateway workload (Istio's sourceMatchHTTP);
L4 match fields Istio ignores on gateways are reported, not silently dropped."""

from __future__ import annotations

from harness import http_get

YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["src.example.com"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: ["src.example.com"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /a}}, sourceLabels: {{istio: ingressgateway}}}}]
    route: [{{destination: {{host: hit.example.com}}}}]
  - match: [{{uri: {{prefix: /b}}, sourceLabels: {{app: somebody-else}}}}]
    route: [{{destination: {{host: hit.example.com}}}}]
  - match: [{{uri: {{prefix: /c}}, sourceNamespace: istio-system}}]
    route: [{{destination: {{host: hit.example.com}}}}]
  - match: [{{uri: {{prefix: /d}}, sourceNamespace: default}}]
    route: [{{destination: {{host: hit.example.com}}}}]
  - match: [{{uri: {{prefix: /e}}, sourceLabels: {{app: somebody-else}}, gateways: [gw]}}]
    route: [{{destination: {{host: hit.example.com}}}}]
  - route: [{{destination: {{host: miss.example.com}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hit, namespace: istio-system}}
spec:
  hosts: [hit.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {hit}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: miss, namespace: istio-system}}
spec:
  hosts: [miss.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {miss}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def test_source_labels_and_namespace_select_routes_for_this_gateway(backend_factory, gateway_factory):
    hit, miss = backend_factory("hit"), backend_factory("miss")
    gw = gateway_factory(YAML.format(hit=hit.port, miss=miss.port), ports=(80,))
    seen = {p: http_get(gw, 80, p, host="src.example.com").headers["x-backend"] for p in ("/a", "/b", "/c", "/d", "/e")}
    # /a: labels ⊆ istio=ingressgateway; /c: the workload's namespace; /e: gateways win over sourceLabels
    assert seen == {"/a": "hit", "/b": "miss", "/c": "hit", "/d": "miss", "/e": "hit"}


TCP = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - match: [{destinationSubnets: [10.0.0.0/8], sourceLabels: {app: x}, sourceNamespace: other}]
    route: [{destination: {host: echo.example.com, port: {number: 31400}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: istio-system}
spec:
  hosts: [echo.example.com]
  ports: [{number: 31400, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


def test_l4_match_fields_istio_ignores_are_reported(gateway_factory):
    code, _, err, out = gateway_factory(TCP, ports=(31400,), start=False).render()
    assert code == 0, err
    for field in ("destinationSubnets", "sourceLabels", "sourceNamespace"):
        assert f"info EG0005 VirtualService vs: spec.tcp[0].match[0].{field} has no effect" in err
    # the route still applies, as in Istio's l4SingleMatch (port and gateways only)
    assert "outbound|31400||echo.example.com" in (out / "envoy.yaml").read_text()
