"""DestinationRule ``tls``: TLS origination from the gateway to the upstream."""

from __future__ import annotations

from harness import http_get

YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["secure.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: ["secure.example.com"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: backend.example.com, port: {{number: 443}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: istio-system}}
spec:
  hosts: [backend.example.com]
  ports: [{{number: 443, name: https, protocol: HTTPS, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend, namespace: istio-system}}
spec:
  host: backend.example.com
  trafficPolicy:
    tls:
{tls}
"""


def _start(backend_factory, gateway_factory, cert_authority, tmp_path, tls: str, client_ca=None, sans=("backend.example.com",)):
    server = cert_authority.issue("backend.example.com", sans=list(sans)).write(tmp_path / "srv")
    backend = backend_factory.tls("secure", cert=server / "tls.crt", key=server / "tls.key",
                                  client_ca=client_ca)
    cert_authority.write_ca(tmp_path / "ca.crt")
    text = YAML.format(port=backend.port, tls=tls.format(ca=tmp_path / "ca.crt", d=tmp_path))
    return backend, gateway_factory(text, ports=(80,))


def test_simple_origination_verifies_ca_and_sends_sni(backend_factory, gateway_factory, cert_authority, tmp_path):
    tls = "      mode: SIMPLE\n      caCertificates: {ca}\n      sni: backend.example.com\n"
    backend, gw = _start(backend_factory, gateway_factory, cert_authority, tmp_path, tls)
    status, headers, body = http_get(gw, 80, "/", host="secure.example.com")
    assert status == 200, body
    assert headers["x-backend"] == "secure"
    assert backend.handshakes[-1]["sni"] == "backend.example.com"


def test_simple_origination_rejects_wrong_san(backend_factory, gateway_factory, cert_authority, tmp_path):
    tls = "      mode: SIMPLE\n      caCertificates: {ca}\n      subjectAltNames: [other.example.com]\n"
    _, gw = _start(backend_factory, gateway_factory, cert_authority, tmp_path, tls)
    status, _, _ = http_get(gw, 80, "/", host="secure.example.com")
    assert status == 503


def test_mutual_origination_presents_client_certificate(backend_factory, gateway_factory, cert_authority, tmp_path):
    client = cert_authority.issue("gateway-client", client=True).write(tmp_path / "client")
    cert_authority.write_ca(tmp_path / "clientca.crt")
    tls = ("      mode: MUTUAL\n      sni: backend.example.com\n      caCertificates: {ca}\n      clientCertificate: {d}/client/tls.crt\n"
           "      privateKey: {d}/client/tls.key\n")
    backend, gw = _start(backend_factory, gateway_factory, cert_authority, tmp_path, tls, client_ca=tmp_path / "clientca.crt")
    status, _, body = http_get(gw, 80, "/", host="secure.example.com")
    assert status == 200, body
    peer = backend.handshakes[-1]["peer_cert"]
    assert peer.subject_cn == "gateway-client"
    # the client key travels in the bundle as a 0600 file behind SDS, never inline
    keys = list(gw.out_dir.glob("certs/*/tls.key"))
    assert keys and all((k.stat().st_mode & 0o777) == 0o600 for k in keys)
    assert "PRIVATE KEY" not in (gw.out_dir / "envoy.yaml").read_text()


def test_auto_sni_and_auto_san_validation_follow_the_host_header(backend_factory, gateway_factory, cert_authority, tmp_path):
    """No sni and no SANs: Istio sets auto_sni + auto_san_validation, so the upstream
    certificate must match the request's Host (here it does not: 503)."""
    tls = "      mode: SIMPLE\n      caCertificates: {ca}\n"
    backend, gw = _start(backend_factory, gateway_factory, cert_authority, tmp_path, tls)
    status, _, _ = http_get(gw, 80, "/", host="secure.example.com")
    assert status == 503
    # the CA is right, so Envoy's refusal of the certificate is the SAN check against the Host
    assert backend.handshakes and "CERTIFICATE_UNKNOWN" in str(backend.handshakes[-1].get("error"))
