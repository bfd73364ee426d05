"""The spine: the coolstore shape through the stock Envoy, as a client sees it."""

from __future__ import annotations

from harness import http_get

GW = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: coolstore-gateway, namespace: istioinaction}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["webapp.istioinaction.io"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: webapp-vs-from-gw, namespace: istioinaction}}
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {{host: webapp, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def test_known_host_reaches_backend_unknown_host_404(backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    gw = gateway_factory(GW.format(port=webapp.port), ports=(80,))
    status, headers, body = http_get(gw, 80, "/api/catalog", host="webapp.istioinaction.io")
    assert status == 200
    assert headers["x-backend"] == "webapp"
    assert headers["server"] == "istio-envoy"
    assert "x-envoy-upstream-service-time" in headers
    seen = webapp.requests[-1]
    assert seen["path"] == "/api/catalog"
    assert seen["headers"]["x-envoy-attempt-count"] == "1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert "x-request-id" in seen["headers"]
    status, headers, _ = http_get(gw, 80, "/", host="unknown.example.com")
    assert status == 404
    assert headers["server"] == "istio-envoy"
    assert "outbound|80||webapp.istioinaction.svc.cluster.local" in gw.admin("clusters")
