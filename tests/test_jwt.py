"""RequestAuthentication through the stock Envoy (jwt_authn) with tokens signed here by a locally
generated RSA key: a valid token passes, an expired or wrongly signed one gets 401, no token passes
unless an AuthorizationPolicy requires requestPrincipals (403), claims reach the backend as headers;
the JWKS comes inline, from a jwksUri fetched at build time, or from ``--jwks URI=FILE``."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from harness import http_get, run_envoygen
from istio_docs import dump, gateway_doc, se_doc, to, vs_doc

NS = "istio-system"
ISSUER = "https://issuer.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        pub = self.key.public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        return json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                                     "n": _b64(n), "e": _b64(pub.e.to_bytes(3, "big"))}]})

    def token(self, sub: str = "alice", iss: str = ISSUER, ttl: int = 600, **claims: object) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        now = int(time.time())
        body = _b64(json.dumps({"iss": iss, "sub": sub, "iat": now - 60, "exp": now + ttl, **claims}).encode())
        sig = self.key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(sig)}"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def request_authn(rule: dict) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": NS},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "jwtRules": [rule]}}


REQUIRE_PRINCIPAL = {
    "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "require", "namespace": NS},
    "spec": {"action": "ALLOW", "rules": [
        {"from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}], "to": [{"operation": {"paths": ["/secure/*"]}}]},
        {"to": [{"operation": {"paths": ["/open/*"]}}]},
    ]},
}


def _web(port: int) -> list[dict]:
    return [gateway_doc(ns=NS), vs_doc("vs", ["*"], [{"route": to("web")}], ns=NS), se_doc("web", port, ns=NS)]


def get(gw, path: str, token: str | None = None, headers: dict | None = None) -> int:  # noqa: ANN001
    h = dict(headers or {})
    if token:
        h["authorization"] = f"Bearer {token}"
    return http_get(gw, 80, path, host="a.example.com", headers=h).status


def test_tokens_checked_and_principal_required(backend_factory, gateway_factory, signer):
    b = backend_factory("web")
    ra = request_authn({"issuer": ISSUER, "jwks": signer.jwks(),
                        "outputClaimToHeaders": [{"header": "x-jwt-group", "claim": "group"}]})
    gw = gateway_factory(dump(*_web(b.port), ra, REQUIRE_PRINCIPAL), ports=(80,))
    good = signer.token(group="admins")
    assert get(gw, "/secure/a", good) == 200
    seen = b.requests[-1]["headers"]
    assert seen["x-jwt-group"] == "admins"
    assert "authorization" not in seen  # forwardOriginalToken false: the token stops at the gateway
    assert get(gw, "/secure/a", signer.token(ttl=-120)) == 401  # expired
    assert get(gw, "/secure/a", Signer().token()) == 401  # signed by another key
    assert get(gw, "/open/a", Signer().token()) == 401  # an invalid token is refused even where none is needed
    assert get(gw, "/secure/a", signer.token(iss="https://other.test")) == 401  # unknown issuer
    assert get(gw, "/secure/a") == 403  # no token: no request principal
    assert get(gw, "/open/a") == 200  # no token, no requirement
    assert b.count == 2


class _JwksServer:
    def __init__(self, body: str) -> None:
        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = body.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_jwks_uri_fetched_at_build_and_token_locations(backend_factory, gateway_factory, signer):
    """jwksUri fetched when the bundle is built; token from a header with a prefix, a query parameter or a cookie;
    outputPayloadToHeader and forwardOriginalToken reach the backend."""
    jwks = _JwksServer(signer.jwks())
    try:
        b = backend_factory("web")
        ra = request_authn({"issuer": ISSUER, "jwksUri": jwks.uri, "audiences": ["edge"],
                            "fromHeaders": [{"name": "x-token", "prefix": "Token "}], "fromParams": ["access_token"], "fromCookies": ["session"],
                            "outputPayloadToHeader": "x-jwt-payload", "forwardOriginalToken": True})
        gw = gateway_factory(dump(*_web(b.port), ra, REQUIRE_PRINCIPAL), ports=(80,))
    finally:
        jwks.close()  # the running gateway never asks for it again
    tok = signer.token(aud="edge")
    assert get(gw, "/secure/h", headers={"x-token": f"Token {tok}"}) == 200
    seen = b.requests[-1]["headers"]
    payload = json.loads(base64.urlsafe_b64decode(seen["x-jwt-payload"] + "=="))
    assert payload["sub"] == "alice" and seen["x-token"] == f"Token {tok}"
    assert get(gw, f"/secure/q?access_token={tok}") == 200
    assert get(gw, "/secure/c", headers={"cookie": f"theme=dark; session={tok}"}) == 200
    # a token for another audience: jwt_authn itself answers 403 (Envoy's JwtAudienceNotAllowed), anywhere
    other = {"x-token": f"Token {signer.token(aud='other')}"}
    for path in ("/secure/h", "/open/h"):
        denied = http_get(gw, 80, path, host="a.example.com", headers=other)
        assert (denied.status, denied.body) == (403, b"Audiences in Jwt are not allowed")
    assert get(gw, "/secure/h", tok) == 403  # Authorization is not a configured location here: no principal


def test_jwks_file_offline_and_no_fetch_refused(tmp_path, signer):
    unreachable = "http://127.0.0.1:9/jwks.json"
    f = tmp_path / "in.yaml"
    f.write_text(dump(*_web(9), request_authn({"issuer": ISSUER, "jwksUri": unreachable})))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "a", "--no-jwks-fetch"])
    assert p.returncode == 1 and "EG0310" in p.stderr and "jwtRules[0].jwksUri" in p.stderr
    assert not (tmp_path / "a").exists()
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "b"])
    assert p.returncode == 1 and "EG0310" in p.stderr and "cannot be read" in p.stderr
    keys = tmp_path / "jwks.json"
    keys.write_text(signer.jwks())
    p = run_envoygen(["validate", "-f", f, "--no-jwks-fetch", "--jwks", f"{unreachable}={keys}"])
    assert p.returncode == 0, p.stderr
    keys.write_text('{"keys": []}')
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "c", "--jwks", f"{unreachable}={keys}"])
    assert p.returncode == 1 and "not a JWK set" in p.stderr


def test_two_issuers_either_token_passes(backend_factory, gateway_factory, signer):
    """Two jwtRules (Istio's OR of providers and AND of {provider OR missing}): a token of either issuer
    is a principal; a token of the second issuer signed by the first issuer's key is refused."""
    other = Signer("k2")
    b = backend_factory("web")
    ra = request_authn({"issuer": ISSUER, "jwks": signer.jwks()})
    ra["spec"]["jwtRules"].append({"issuer": "https://second.test", "jwks": other.jwks()})
    any_principal = {**REQUIRE_PRINCIPAL, "spec": {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}}
    gw = gateway_factory(dump(*_web(b.port), ra, any_principal), ports=(80,))
    assert get(gw, "/secure/a", signer.token()) == 200
    assert get(gw, "/secure/a", other.token(iss="https://second.test")) == 200
    assert get(gw, "/secure/a", signer.token(iss="https://second.test")) == 401
    assert get(gw, "/secure/a") == 403
