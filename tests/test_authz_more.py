"""AuthorizationPolicy through the stock Envoy, the parts tests/test_authz.py leaves out: the mTLS peer
identity (principals, namespaces, notPrincipals) on a MUTUAL HTTPS server and on a TLS-terminating TCP
server (network rbac), AUDIT with traffic (rbac LOG),
and a ``when`` condition on a JWT claim with real signed tokens."""

from __future__ import annotations

import json
import socket
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from envoygen.certs import Minted, mint_ca, mint_server
from harness import http_get, https_get, tls_exchange, wait_until
from istio_docs import dump, se_doc, to, vs_doc
from test_authz import NS, policy, status, web
from test_jwt import ISSUER, Signer, request_authn
from test_telemetry import operator as telemetry_operator, telemetry

HOST = "app.example.com"


def _spiffe_client(ca: Minted, uri: str, d: Path) -> tuple[Path, Path]:
    """A client certificate whose only SAN is the URI ``uri`` (Istio's workload identity form)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "tls.crt", d / "tls.key"


def _mutual_docs(tmp_path: Path, backend_port: int, ca: Minted) -> list[dict]:
    srv = mint_server([HOST], ca)
    d = tmp_path / "server"
    d.mkdir()
    (d / "tls.crt").write_bytes(srv.cert)
    (d / "tls.key").write_bytes(srv.key)
    (d / "ca.crt").write_bytes(ca.cert)
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
          "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
              "port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
              "tls": {"mode": "MUTUAL", "serverCertificate": str(d / "tls.crt"), "privateKey": str(d / "tls.key"),
                      "caCertificates": str(d / "ca.crt")}}]}}
    return [gw, vs_doc("vs", [HOST], [{"route": to("web")}], ns=NS), se_doc("web", backend_port, ns=NS)]


def _as(gw, client: tuple[Path, Path], path: str = "/") -> int:  # noqa: ANN001
    return https_get(gw, 443, path, host=HOST, verify=False, client_cert=client[0], client_key=client[1]).status


def test_principals_and_namespaces_match_the_mtls_peer_identity(backend_factory, gateway_factory, tmp_path):
    """Istio's principal generator: ``principals: [cluster.local/ns/foo/sa/bar]`` is an
    authenticated.principal_name ``spiffe://cluster.local/ns/foo/sa/bar`` (the peer certificate's URI SAN);
    ``namespaces: [foo]`` a regex ``.*/ns/foo/.*`` on it; ``notPrincipals`` its negation."""
    ca = mint_ca("mesh root")
    bar = _spiffe_client(ca, "spiffe://cluster.local/ns/foo/sa/bar", tmp_path / "bar")
    baz = _spiffe_client(ca, "spiffe://cluster.local/ns/foo/sa/baz", tmp_path / "baz")
    other = _spiffe_client(ca, "spiffe://cluster.local/ns/other/sa/bar", tmp_path / "other")
    b = backend_factory("web")
    allow = policy("allow", {"action": "ALLOW", "rules": [
        {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/bar"]}}], "to": [{"operation": {"paths": ["/p"]}}]},
        {"from": [{"source": {"namespaces": ["foo"]}}], "to": [{"operation": {"paths": ["/ns"]}}]},
        {"from": [{"source": {"notPrincipals": ["cluster.local/ns/foo/*"]}}], "to": [{"operation": {"paths": ["/not"]}}]},
    ]})
    gw = gateway_factory(dump(*_mutual_docs(tmp_path, b.port, ca), allow), ports=(443,))
    assert _as(gw, bar, "/p") == 200
    assert _as(gw, baz, "/p") == 403
    assert _as(gw, other, "/p") == 403  # same service account name, other namespace
    assert _as(gw, bar, "/ns") == 200 and _as(gw, baz, "/ns") == 200
    assert _as(gw, other, "/ns") == 403
    assert _as(gw, other, "/not") == 200
    assert _as(gw, bar, "/not") == 403 and _as(gw, baz, "/not") == 403
    assert [r["path"] for r in b.requests] == ["/p", "/ns", "/ns", "/not"]
    assert "URI=spiffe://cluster.local/ns/foo/sa/bar" in b.requests[0]["headers"]["x-forwarded-client-cert"]


def test_tcp_network_rbac_principals_on_a_mutual_tls_server(backend_factory, gateway_factory, tmp_path):
    """The same peer identity on a TLS-terminating TCP server (protocol TLS, MUTUAL, VirtualService tcp):
    the network rbac filter sees the client certificate; a DENY on one principal closes that client's
    connection, another identity's bytes reach the backend and come back."""
    ca = mint_ca("mesh root")
    bar = _spiffe_client(ca, "spiffe://cluster.local/ns/foo/sa/bar", tmp_path / "bar")
    baz = _spiffe_client(ca, "spiffe://cluster.local/ns/foo/sa/baz", tmp_path / "baz")
    echo = backend_factory.tcp("echo")
    docs = _mutual_docs(tmp_path, 9, ca)
    server = docs[0]["spec"]["servers"][0]
    server["port"] = {"number": 443, "name": "tls", "protocol": "TLS"}
    tcp_vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs", "namespace": NS},
              "spec": {"hosts": [HOST], "gateways": ["gw"],
                       "tcp": [{"route": [{"destination": {"host": "echo.example.com", "port": {"number": 31400}}}]}]}}
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "echo", "namespace": NS},
          "spec": {"hosts": ["echo.example.com"], "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}],
                   "ports": [{"number": 31400, "name": "tcp", "protocol": "TCP", "targetPort": echo.port}]}}
    deny = policy("deny-baz", {"action": "DENY", "rules": [
        {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/baz"]}}]}]})
    gw = gateway_factory(dump(docs[0], tcp_vs, se, deny), ports=(443,))

    def send(client: tuple[Path, Path], data: bytes) -> bytes:
        try:
            return tls_exchange(gw.port(443), HOST, data, verify=False, client_cert=client[0], client_key=client[1],
                                read_until=data, timeout=3)
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            return b""

    assert send(baz, b"from-baz\n") == b""
    assert send(bar, b"from-bar\n") == b"from-bar\n"
    assert b"from-baz" not in echo.received and b"from-bar\n" in echo.received


def test_audit_action_logs_and_never_denies(backend_factory, gateway_factory, tmp_path):
    """AUDIT → an rbac filter with action LOG ahead of DENY/ALLOW (Istio's builder): no request is denied by
    it; Envoy marks the matching ones with the shared metadata ``envoy.common: access_log_hint`` true (false
    for the others), which a Telemetry access log shows; the stock Envoy's HTTP rbac filter has no
    logged/not_logged counters, its ``allowed`` counter counts each request once per rbac filter passed."""
    b = backend_factory("web")
    log = tmp_path / "access.json"
    labels = {"path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%",
              "audit": "%DYNAMIC_METADATA(envoy.common:access_log_hint)%"}
    audit = policy("audit", {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/audited/*"]}}]}]})
    deny = policy("deny", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/audited/forbidden"]}}]}]})
    gw = gateway_factory(dump(telemetry_operator({"json-file": {"path": str(log), "logFormat": {"labels": labels}}}),
                              telemetry("mesh", [{"providers": [{"name": "json-file"}]}]),
                              *web(b.port, ["a.example.com"]), audit, deny), ports=(80,))
    for path in ("/audited/a", "/plain", "/audited/forbidden"):
        status(gw, path)
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 3, timeout=15, message="3 log lines")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"path": "/audited/a", "code": 200, "audit": True},
                     {"path": "/plain", "code": 200, "audit": False},
                     {"path": "/audited/forbidden", "code": 403, "audit": True}]
    assert [r["path"] for r in b.requests] == ["/audited/a", "/plain"]
    counters = {k.rsplit(".", 1)[-1]: v for k, v in gw.stats(filter=r"^http\..*\.rbac\.").items()}
    assert (counters["allowed"], counters["denied"]) == (3 + 2, 1)  # LOG passes all 3, DENY passes 2


def test_when_jwt_claim_groups_with_signed_tokens(backend_factory, gateway_factory):
    """``when: request.auth.claims[groups]`` on a verified token (jwt_authn payload metadata): a token whose
    groups list holds the value passes, one without the claim or with another group gets 403."""
    signer = Signer()
    b = backend_factory("web")
    ra = request_authn({"issuer": ISSUER, "jwks": signer.jwks()})
    allow = policy("claims", {"action": "ALLOW", "rules": [{
        "from": [{"source": {"requestPrincipals": ["*"]}}],
        "when": [{"key": "request.auth.claims[groups]", "values": ["group1"]}]}]})
    gw = gateway_factory(dump(*web(b.port, ["a.example.com"]), ra, allow), ports=(80,))

    def get(token: str | None) -> int:
        h = {"authorization": f"Bearer {token}"} if token else {}
        return http_get(gw, 80, "/", host="a.example.com", headers=h).status

    assert get(signer.token(groups=["group1", "group2"])) == 200
    assert get(signer.token(groups="group1")) == 200  # a string claim matches too
    assert get(signer.token(groups=["group2"])) == 403
    assert get(signer.token()) == 403  # no groups claim
    assert get(None) == 403
    assert get(Signer().token(groups=["group1"])) == 401  # the claim counts only on a verified token
    assert b.count == 2
