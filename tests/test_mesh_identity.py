"""Mesh identity: DestinationRule ``tls.mode: ISTIO_MUTUAL`` with ``--mesh-identity DIR``.

DIR holds Istio's file-mounted certificate names (/etc/certs): ``cert-chain.pem``,
``key.pem``, ``root-cert.pem``; the bundle serves them as SDS ``default`` and ``ROOTCA``,
as Istio names them.  The upstream is a real TLS server that requires a client
certificate from the mesh CA (pilot's cluster_tls.go buildIstioMutualTLS: SNI
``outbound_.<port>_.<subset>_.<host>``, ALPN ``istio-peer-exchange``, ``istio``).
"""

from __future__ import annotations

import shutil

import yaml

from harness import http_get

from test_upstream_tls import YAML


def _mesh_dir(cert_authority, tmp_path):  # noqa: ANN001, ANN202
    leaf = cert_authority.issue("gateway", sans=["spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"],
                                client=True).write(tmp_path / "leaf")
    d = tmp_path / "mesh"
    d.mkdir()
    shutil.copy(leaf / "tls.crt", d / "cert-chain.pem")
    shutil.copy(leaf / "tls.key", d / "key.pem")
    cert_authority.write_ca(d / "root-cert.pem")
    return d


def test_istio_mutual_presents_the_mesh_certificate(backend_factory, gateway_factory, cert_authority, tmp_path):
    mesh = _mesh_dir(cert_authority, tmp_path)
    server = cert_authority.issue("backend.example.com").write(tmp_path / "srv")
    backend = backend_factory.tls("secure", cert=server / "tls.crt", key=server / "tls.key",
                                  client_ca=mesh / "root-cert.pem", alpn=["istio"])
    text = YAML.format(port=backend.port, tls="      mode: ISTIO_MUTUAL\n")
    gw = gateway_factory(text, ports=(80,), args=["--mesh-identity", str(mesh)])
    status, headers, body = http_get(gw, 80, "/", host="secure.example.com")
    assert (status, headers["x-backend"]) == (200, "secure"), body
    hs = backend.handshakes[-1]
    assert hs["sni"] == "outbound_.443_._.backend.example.com", hs
    assert hs["alpn"] == "istio", hs
    assert hs["peer_cert"].subject_cn == "gateway", hs
    # SDS names as Istio's: default (certificate) and ROOTCA (validation)
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    (cl,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == "outbound|443||backend.example.com"]
    ctx = cl["transport_socket"]["typed_config"]
    common = ctx["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert common["alpn_protocols"] == ["istio-peer-exchange", "istio"]
    assert ctx["sni"] == "outbound_.443_._.backend.example.com"
    assert "PRIVATE KEY" not in gw.bootstrap_path.read_text()


def test_istio_mutual_upstream_refuses_another_ca(backend_factory, gateway_factory, cert_authority, tmp_path):
    """Control: an upstream whose CA is not the mesh root fails verification (503)."""
    from harness import CertAuthority

    mesh = _mesh_dir(cert_authority, tmp_path)
    other = CertAuthority("other-ca")
    server = other.issue("backend.example.com").write(tmp_path / "srv")
    backend = backend_factory.tls("secure", cert=server / "tls.crt", key=server / "tls.key", alpn=["istio"])
    gw = gateway_factory(YAML.format(port=backend.port, tls="      mode: ISTIO_MUTUAL\n"), ports=(80,),
                         args=["--mesh-identity", str(mesh)])
    assert http_get(gw, 80, "/", host="secure.example.com").status == 503


def test_istio_mutual_without_mesh_identity_says_what_to_supply(gateway_factory):
    gw = gateway_factory(YAML.format(port=9, tls="      mode: ISTIO_MUTUAL\n"), ports=(80,), start=False)
    r = gw.render()
    assert r.exit_code == 1, r.stderr
    assert ("EG0301 tls mode ISTIO_MUTUAL needs the mesh identity: pass --mesh-identity DIR with Istio's file-mounted "
            "cert-chain.pem, key.pem, root-cert.pem") in r.stderr, r.stderr
    assert not (r.out_dir / "envoy.yaml").exists()


GATEWAY_ISTIO_MUTUAL = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["app.example.com"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: istio-system}
spec:
  hosts: ["app.example.com"]
  gateways: [gw]
  http:
  - route: [{destination: {host: app.example.com, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: istio-system}
spec:
  hosts: [app.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: PORT}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


def test_gateway_server_istio_mutual_requires_a_mesh_client_certificate(backend_factory, gateway_factory, cert_authority,
                                                                       tmp_path):
    """A Gateway server with ISTIO_MUTUAL serves the mesh certificate and requires a client certificate
    signed by the mesh root (ROOTCA)."""
    from harness import CertAuthority, https_get

    mesh = _mesh_dir(cert_authority, tmp_path)
    app = backend_factory("app")
    gw = gateway_factory(GATEWAY_ISTIO_MUTUAL.replace("PORT", str(app.port)), ports=(443,),
                         args=["--mesh-identity", str(mesh)])
    client = cert_authority.issue("sidecar", client=True).write(tmp_path / "client")
    r = https_get(gw, 443, "/", host="app.example.com", verify=False, client_cert=client / "tls.crt",
                  client_key=client / "tls.key")
    assert (r.status, r.headers["x-backend"]) == (200, "app")
    assert r.tls.subject_cn == "gateway"  # the mesh certificate (SDS default) is what the server presents
    stranger = CertAuthority("stranger").issue("sidecar", client=True).write(tmp_path / "stranger")
    for kw in ({}, {"client_cert": stranger / "tls.crt", "client_key": stranger / "tls.key"}):
        try:
            bad = https_get(gw, 443, "/", host="app.example.com", verify=False, **kw)
        except Exception:  # noqa: BLE001 - a refused handshake may surface as a connection error
            bad = None
        assert bad is None or bad.status != 200, kw
    assert app.count == 1
