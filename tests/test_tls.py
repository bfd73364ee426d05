"""Gateway TLS through the stock Envoy, as real TLS clients see it.

Clients: Python ``ssl`` (harness ``https_get`` / ``tls_handshake``, and a few
hand-made contexts to pin versions and ciphers), ``curl`` and ``openssl s_client``.
Credentials: the development PKI in ``certs/`` (root → intermediate → leaves) via
``--credentials-dir``, Secrets in the input, and throw-away CAs made here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import socket
import ssl
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from envoygen.certs import mint_ca, mint_client, mint_server
from harness import LOCALHOST, http_get, https_get, run_curl, run_envoygen, tls_handshake

REPO = Path(__file__).resolve().parent.parent
CERTS = REPO / "certs"
ROOT_CA = CERTS / "_ca" / "root.crt"
SAMPLES = REPO / "samples"


# --------------------------------------------------------------------------
# helpers


def service_entries(**ports: int) -> str:
    """ServiceEntries that make ``<name>.istioinaction.svc.cluster.local:80`` reach a local backend."""
    docs = []
    for name, port in ports.items():
        docs.append(
            f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {name}-local, namespace: istioinaction}}
spec:
  hosts: [{name}.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
        )
    return "---\n".join(docs)


def vs(name: str, hosts: list[str], dest: str, gateway: str = "coolstore-gateway") -> str:
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {name}, namespace: istioinaction}}
spec:
  hosts: {hosts!r}
  gateways: [{gateway}]
  http:
  - route:
    - destination: {{host: {dest}, port: {{number: 80}}}}
"""


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def secret(name: str, data: dict[str, bytes | str], type_: str = "kubernetes.io/tls", ns: str = "istio-system") -> str:
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        f"metadata: {{name: {name}, namespace: {ns}}}",
        f"type: {type_}",
        "data:",
    ]
    lines += [f"  {k}: {b64(v)}" for k, v in data.items()]
    return "\n".join(lines) + "\n"


def leaf_der(pem: bytes | str) -> bytes:
    if isinstance(pem, str):
        pem = pem.encode()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def serial_of(pem: bytes | str) -> int:
    if isinstance(pem, str):
        pem = pem.encode()
    return x509.load_pem_x509_certificate(pem).serial_number


def dev_client_with_sans(tmp: Path, cn: str, dns: list[str], uris: list[str]) -> tuple[Path, Path, x509.Certificate]:
    """A client certificate signed by the dev intermediate in certs/_ca, with DNS and URI SANs."""
    inter_cert = x509.load_pem_x509_certificate((CERTS / "_ca" / "intermediate.crt").read_bytes())
    inter_key = serialization.load_pem_private_key((CERTS / "_ca" / "intermediate.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    alt = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(inter_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(inter_key, hashes.SHA256())
    )
    tmp.mkdir(parents=True, exist_ok=True)
    crt = tmp / f"{cn}.crt"
    keyf = tmp / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + (CERTS / "_ca" / "intermediate.crt").read_bytes())
    keyf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return crt, keyf, cert


def write_minted(d: Path, m, ca: bytes | None = None) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "tls.crt").write_bytes(m.cert)
    (d / "tls.key").write_bytes(m.key)
    if ca is not None:
        (d / "ca.crt").write_bytes(ca)
    return d / "tls.crt", d / "tls.key"


def handshake(gw, sni, **kw):
    return tls_handshake(LOCALHOST, gw.port(443), sni, **kw)


def refused(result) -> str:
    """Assert a handshake (or first read) failed; return the error text."""
    assert not result.ok, f"handshake unexpectedly succeeded: {result}"
    return str(result.error)


def openssl_s_client(port: int, sni: str | None, *extra: str, brief: bool = True,
                     timeout: float = 10.0) -> subprocess.CompletedProcess:
    cmd = ["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}"] + (["-brief"] if brief else [])
    if sni:
        cmd += ["-servername", sni]
    cmd += list(extra)
    return subprocess.run(cmd, input="", capture_output=True, text=True, timeout=timeout, errors="replace")


def get_fails(gw, host, **kw) -> BaseException:
    """An HTTPS request that must fail at the TLS layer (handshake or first read)."""
    try:
        r = https_get(gw, 443, "/", host=host, **kw)
    except (ssl.SSLError, OSError, ConnectionError) as e:  # noqa: PERF203
        return e
    raise AssertionError(f"request unexpectedly answered: {r!r}")


# --------------------------------------------------------------------------
# SIMPLE: --credentials-dir, SNI selection, per-server route tables, ALPN


def test_simple_multihost_sni_alpn_and_host_mismatch(backend_factory, gateway_factory):
    """samples/coolstore-multihost: three SIMPLE servers on 443 (webapp, catalog, *.istioinaction.io)."""
    webapp = backend_factory("webapp")
    catalog = backend_factory("catalog")
    gw = gateway_factory(
        [SAMPLES / "coolstore-multihost", service_entries(webapp=webapp.port, catalog=catalog.port)],
        ports=(443,), args=["--credentials-dir", str(CERTS)],
    )
    expected = {
        "webapp.istioinaction.io": ("webapp.istioinaction.io", "webapp-credential", "webapp"),
        "catalog.istioinaction.io": ("catalog.istioinaction.io", "catalog-credential", "catalog"),
        "shop.istioinaction.io": ("*.istioinaction.io", "istioinaction-credential", "webapp"),
    }
    for host, (cn, cred, backend) in expected.items():
        r = https_get(gw, 443, "/api/x", host=host, ca=ROOT_CA)  # verifies chain and hostname
        assert r.status == 200, (host, r)
        assert r.headers["x-backend"] == backend
        assert r.tls.subject_cn == cn
        assert r.tls.serial == serial_of((CERTS / cred / "tls.crt").read_bytes())
        assert r.tls.alpn == "http/1.1"
    assert catalog.requests[-1]["headers"]["x-forwarded-proto"] == "https"
    # Host ports are ignored in host matching (ignore_port_in_host_matching)
    r = https_get(gw, 443, "/p", host="catalog.istioinaction.io:443", ca=ROOT_CA)
    assert r.status == 200 and r.headers["x-backend"] == "catalog"

    # The route table of a chain only holds its own server's hosts: SNI a + Host b -> 404.
    r = https_get(gw, 443, "/", host="catalog.istioinaction.io", sni="webapp.istioinaction.io", ca=ROOT_CA)
    assert r.tls.subject_cn == "webapp.istioinaction.io"
    assert r.status == 404
    assert r.headers["server"] == "istio-envoy"
    r = https_get(gw, 443, "/", host="webapp.istioinaction.io", sni="catalog.istioinaction.io", ca=ROOT_CA)
    assert r.tls.subject_cn == "catalog.istioinaction.io"
    assert r.status == 404

    # ALPN: the gateway offers h2 and http/1.1.
    assert handshake(gw, "webapp.istioinaction.io", ca=ROOT_CA, alpn=["h2", "http/1.1"]).alpn == "h2"
    assert handshake(gw, "webapp.istioinaction.io", ca=ROOT_CA, alpn=["http/1.1"]).alpn == "http/1.1"

    # No SNI matches no filter chain (every chain has server_names): the connection is closed.
    refused(handshake(gw, None, ca=None))

    # curl over HTTP/2, verifying against the dev root.
    p = run_curl([
        "--http2", "--cacert", ROOT_CA,
        "--resolve", f"catalog.istioinaction.io:{gw.port(443)}:127.0.0.1",
        "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
        f"https://catalog.istioinaction.io:{gw.port(443)}/items",
    ])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "200 2", p.stdout
    assert catalog.requests[-1]["path"] == "/items"
    # over HTTP/2 too: SNI catalog + :authority webapp -> 404 from the catalog chain's route table
    p = run_curl([
        "--http2", "--cacert", ROOT_CA, "-H", "Host: webapp.istioinaction.io",
        "--resolve", f"catalog.istioinaction.io:{gw.port(443)}:127.0.0.1",
        "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
        f"https://catalog.istioinaction.io:{gw.port(443)}/items",
    ])
    assert (p.returncode, p.stdout) == (0, "404 2"), (p.stdout, p.stderr)

    # openssl s_client sees the certificate chosen by SNI, and the chain verifies.
    p = openssl_s_client(gw.port(443), "shop.istioinaction.io", "-CAfile", str(ROOT_CA), "-verify_return_error",
                         "-alpn", "h2,http/1.1", brief=False)
    out = p.stdout + p.stderr
    assert "subject=CN = *.istioinaction.io" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    assert "ALPN protocol: h2" in out, out


def test_simple_credentials_from_secrets_and_files(tmp_path, backend_factory, gateway_factory):
    """credentialName from Secrets in the input (kubernetes.io/tls, Opaque tls.crt/tls.key,
    generic cert/key), from --credentials-dir, and file mode (serverCertificate/privateKey);
    a Secret wins over the directory for the same name."""
    webapp = backend_factory("webapp")
    ca = mint_ca("tls-test Root CA")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert)
    m = {h: mint_server([f"{h}.example.com"], ca) for h in ("tls", "opaque", "generic", "dir", "file", "both", "pref")}
    pref_loser = mint_server(["pref.example.com"], ca)
    creds = tmp_path / "creds"
    write_minted(creds / "dir-cred", m["dir"])
    shadow = mint_server(["both.example.com"], ca)
    write_minted(creds / "both-cred", shadow)  # loses to the Secret of the same name
    fcrt, fkey = write_minted(tmp_path / "files", m["file"])
    fm = mint_server(["filem.example.com"], ca)
    fmcrt, fmkey = write_minted(tmp_path / "files-mutual", fm, ca=ca.cert)
    fclient = mint_client("file-client", ca)
    fccrt, fckey = write_minted(tmp_path / "file-client", fclient)

    def server(name: str, host: str, tls: str) -> str:
        return f"""\
  - port: {{number: 443, name: https-{name}, protocol: HTTPS}}
    hosts: [{host}]
    tls: {tls}
"""

    gw_yaml = (
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\n"
        "metadata: {name: coolstore-gateway, namespace: istioinaction}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        + server("tls", "tls.example.com", "{mode: SIMPLE, credentialName: tls-cred}")
        + server("opaque", "opaque.example.com", "{mode: SIMPLE, credentialName: opaque-cred}")
        + server("generic", "generic.example.com", "{mode: SIMPLE, credentialName: generic-cred}")
        + server("dir", "dir.example.com", "{mode: SIMPLE, credentialName: dir-cred}")
        + server("both", "both.example.com", "{mode: SIMPLE, credentialName: both-cred}")
        + server("pref", "pref.example.com", "{mode: SIMPLE, credentialName: pref-cred}")
        + server("file", "file.example.com", f"{{mode: SIMPLE, serverCertificate: {fcrt}, privateKey: {fkey}}}")
        + server("filem", "filem.example.com", f"{{mode: MUTUAL, serverCertificate: {fmcrt}, privateKey: {fmkey}, "
                 f"caCertificates: {fmcrt.parent / 'ca.crt'}}}")
    )
    docs = [
        gw_yaml,
        vs("all", ["*.example.com"], "webapp"),
        service_entries(webapp=webapp.port),
        secret("tls-cred", {"tls.crt": m["tls"].cert, "tls.key": m["tls"].key}),
        secret("opaque-cred", {"tls.crt": m["opaque"].cert, "tls.key": m["opaque"].key}, "Opaque"),
        secret("generic-cred", {"cert": m["generic"].cert, "key": m["generic"].key}, "generic"),
        secret("both-cred", {"tls.crt": m["both"].cert, "tls.key": m["both"].key}),
        # generic cert/key are tried before tls.crt/tls.key (Istio secrets.go ExtractCertInfo)
        secret("pref-cred", {"tls.crt": pref_loser.cert, "tls.key": pref_loser.key,
                             "cert": m["pref"].cert, "key": m["pref"].key}, "Opaque"),
    ]
    gw = gateway_factory(docs, ports=(443,), args=["--credentials-dir", str(creds)])
    for name in ("tls", "opaque", "generic", "dir", "file", "both", "pref"):
        host = f"{name}.example.com"
        r = https_get(gw, 443, "/" + name, host=host, ca=ca_file)
        assert r.status == 200, (host, r)
        assert r.tls.subject_cn == host
        assert r.tls.serial == serial_of(m[name].cert), f"{host}: wrong certificate presented"
        assert webapp.requests[-1]["path"] == "/" + name
    assert handshake(gw, "both.example.com", ca=ca_file).serial != serial_of(shadow.cert)
    # file mode MUTUAL: caCertificates validates clients
    r = https_get(gw, 443, "/fm", host="filem.example.com", ca=ca_file, client_cert=fccrt, client_key=fckey)
    assert r.status == 200 and r.tls.serial == serial_of(fm.cert)
    assert 'Subject="CN=file-client"' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"]
    refused(handshake(gw, "filem.example.com", ca=ca_file))


# --------------------------------------------------------------------------
# MUTUAL / OPTIONAL_MUTUAL


def _mtls_gateway(tmp_path: Path, backend_port: int) -> tuple[list[str], dict]:
    """One Gateway, many MUTUAL-ish servers on 443 (all *.istioinaction.io hosts)."""
    client_crt, client_key, client_x509 = dev_client_with_sans(
        tmp_path / "clients", "xfcc-client", ["client.istioinaction.io"], ["spiffe://istioinaction.io/ns/x/sa/client"])
    client_der = client_x509.public_bytes(serialization.Encoding.DER)
    good_hash = hashlib.sha256(client_der).hexdigest()
    good_spki = b64(hashlib.sha256(client_x509.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest())

    # another CA (for "unknown CA" and for caCertCredentialName / -cacert Secrets)
    other = mint_ca("other Root CA")
    other_client = mint_client("other-client", other)
    oc_crt, oc_key = write_minted(tmp_path / "other-client", other_client)
    other_server = mint_server(["sep.istioinaction.io"], other)
    other_base = mint_server(["base.istioinaction.io"], other)

    def server(name: str, host: str, tls: str) -> str:
        return (f"  - port: {{number: 443, name: https-{name}, protocol: HTTPS}}\n"
                f"    hosts: [{host}]\n    tls: {tls}\n")

    wc = "credentialName: istioinaction-credential"
    gw_yaml = (
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\n"
        "metadata: {name: coolstore-gateway, namespace: istioinaction}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        + server("mutual", "webapp.istioinaction.io", "{mode: MUTUAL, credentialName: webapp-credential}")
        + server("optional", "catalog.istioinaction.io", "{mode: OPTIONAL_MUTUAL, credentialName: catalog-credential}")
        + server("san-bad", "sanbad.istioinaction.io", f"{{mode: MUTUAL, {wc}, subjectAltNames: [other.istioinaction.io]}}")
        + server("san-ok", "sanok.istioinaction.io", f"{{mode: MUTUAL, {wc}, subjectAltNames: [client.istioinaction.io]}}")
        + server("uri-ok", "uriok.istioinaction.io",
                 f"{{mode: MUTUAL, {wc}, subjectAltNames: ['spiffe://istioinaction.io/ns/x/sa/client']}}")
        + server("hash-ok", "hashok.istioinaction.io", f"{{mode: MUTUAL, {wc}, verifyCertificateHash: ['{good_hash}']}}")
        + server("hash-bad", "hashbad.istioinaction.io", f"{{mode: MUTUAL, {wc}, verifyCertificateHash: ['{'00' * 32}']}}")
        + server("spki-ok", "spkiok.istioinaction.io", f"{{mode: MUTUAL, {wc}, verifyCertificateSpki: ['{good_spki}']}}")
        + server("spki-bad", "spkibad.istioinaction.io",
                 f"{{mode: MUTUAL, {wc}, verifyCertificateSpki: ['{b64(b'x' * 32)}']}}")
        + server("caname", "caname.istioinaction.io", f"{{mode: MUTUAL, {wc}, caCertCredentialName: other-ca}}")
        + server("sep", "sep.istioinaction.io", "{mode: MUTUAL, credentialName: sep-cred}")
        + server("base", "base.istioinaction.io", "{mode: MUTUAL, credentialName: base-cred}")
    )
    docs = [
        gw_yaml,
        vs("all", ["*.istioinaction.io"], "webapp"),
        service_entries(webapp=backend_port),
        # caCertCredentialName: a CA-only Secret (Istio reads <name>-cacert first, then <name>)
        secret("other-ca", {"cacert": other.cert}, "Opaque"),
        # base Secret carries the dev root as ca.crt, but the -cacert Secret (other CA) is the one used
        secret("sep-cred", {"tls.crt": other_server.cert, "tls.key": other_server.key, "ca.crt": ROOT_CA.read_bytes()}),
        secret("sep-cred-cacert", {"ca.crt": other.cert}, "Opaque"),
        # no base-cred-cacert Secret: the CA comes from ca.crt in the base Secret itself
        secret("base-cred", {"tls.crt": other_base.cert, "tls.key": other_base.key, "ca.crt": other.cert}),
    ]
    info = dict(client_crt=client_crt, client_key=client_key, client_der=client_der, good_hash=good_hash,
                oc_crt=oc_crt, oc_key=oc_key, other_ca=tmp_path / "other-ca.crt")
    info["other_ca"].write_bytes(other.cert)
    return docs, info


def test_mutual_optional_mutual_and_client_verification(tmp_path, backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    docs, c = _mtls_gateway(tmp_path, webapp.port)
    gw = gateway_factory(docs, ports=(443,), args=["--credentials-dir", str(CERTS)])
    dev_client = dict(client_cert=CERTS / "webapp-client" / "tls.crt", client_key=CERTS / "webapp-client" / "tls.key")
    san_client = dict(client_cert=c["client_crt"], client_key=c["client_key"])
    other_client = dict(client_cert=c["oc_crt"], client_key=c["oc_key"])

    # MUTUAL: no certificate -> refused (TLS 1.3: alert certificate required on the first read)
    err = refused(handshake(gw, "webapp.istioinaction.io", ca=ROOT_CA))
    assert "CERTIFICATE_REQUIRED" in err, err
    get_fails(gw, "webapp.istioinaction.io", ca=ROOT_CA)
    # ... a certificate from another CA -> refused (unknown CA)
    err = refused(handshake(gw, "webapp.istioinaction.io", ca=ROOT_CA, **other_client))
    assert "UNKNOWN_CA" in err, err
    get_fails(gw, "webapp.istioinaction.io", ca=ROOT_CA, **other_client)
    # ... the dev client -> 200, and the backend sees XFCC (SANITIZE_SET: Hash, Cert, Subject, URI, DNS)
    forged = {"x-forwarded-client-cert": "By=spiffe://evil;Hash=00;Subject=\"CN=evil\""}
    r = https_get(gw, 443, "/m", host="webapp.istioinaction.io", ca=ROOT_CA, headers=forged, **san_client)
    assert r.status == 200, r
    assert r.tls.version == "TLSv1.3"
    xfcc = webapp.requests[-1]["headers"]["x-forwarded-client-cert"]
    assert "evil" not in xfcc, xfcc
    assert f"Hash={c['good_hash']}" in xfcc, xfcc
    assert 'Subject="CN=xfcc-client"' in xfcc, xfcc
    assert "URI=spiffe://istioinaction.io/ns/x/sa/client" in xfcc, xfcc
    assert "DNS=client.istioinaction.io" in xfcc, xfcc
    cert_field = [p for p in xfcc.split(";") if p.startswith("Cert=")]
    assert cert_field, xfcc
    pem = urllib.parse.unquote(cert_field[0][len("Cert="):].strip('"'))
    assert leaf_der(pem) == c["client_der"]
    r = https_get(gw, 443, "/m2", host="webapp.istioinaction.io", ca=ROOT_CA, **dev_client)
    assert r.status == 200
    assert 'Subject="CN=webapp-client"' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"]

    # OPTIONAL_MUTUAL: no certificate -> 200 without XFCC (a client-sent one is stripped);
    # a good certificate -> 200 with XFCC; another CA's -> refused.
    r = https_get(gw, 443, "/o", host="catalog.istioinaction.io", ca=ROOT_CA, headers=forged)
    assert r.status == 200, r
    assert "x-forwarded-client-cert" not in webapp.requests[-1]["headers"]
    r = https_get(gw, 443, "/o", host="catalog.istioinaction.io", ca=ROOT_CA, **dev_client)
    assert r.status == 200
    assert 'Subject="CN=webapp-client"' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"]
    refused(handshake(gw, "catalog.istioinaction.io", ca=ROOT_CA, **other_client))

    # subjectAltNames: the client's SAN (DNS or URI) must be listed.
    assert https_get(gw, 443, "/", host="sanok.istioinaction.io", ca=ROOT_CA, **san_client).status == 200
    assert https_get(gw, 443, "/", host="uriok.istioinaction.io", ca=ROOT_CA, **san_client).status == 200
    refused(handshake(gw, "sanbad.istioinaction.io", ca=ROOT_CA, **san_client))
    refused(handshake(gw, "sanok.istioinaction.io", ca=ROOT_CA, **dev_client))  # no SAN at all

    # verifyCertificateHash / verifyCertificateSpki
    assert https_get(gw, 443, "/", host="hashok.istioinaction.io", ca=ROOT_CA, **san_client).status == 200
    refused(handshake(gw, "hashok.istioinaction.io", ca=ROOT_CA, **dev_client))
    refused(handshake(gw, "hashbad.istioinaction.io", ca=ROOT_CA, **san_client))
    assert https_get(gw, 443, "/", host="spkiok.istioinaction.io", ca=ROOT_CA, **san_client).status == 200
    refused(handshake(gw, "spkiok.istioinaction.io", ca=ROOT_CA, **dev_client))
    refused(handshake(gw, "spkibad.istioinaction.io", ca=ROOT_CA, **san_client))

    # caCertCredentialName: clients are checked against the other CA, not the server credential's CA.
    assert https_get(gw, 443, "/", host="caname.istioinaction.io", ca=ROOT_CA, **other_client).status == 200
    refused(handshake(gw, "caname.istioinaction.io", ca=ROOT_CA, **dev_client))

    # <name>-cacert Secret wins over ca.crt in the base Secret.
    r = https_get(gw, 443, "/", host="sep.istioinaction.io", ca=c["other_ca"], **other_client)
    assert r.status == 200
    refused(handshake(gw, "sep.istioinaction.io", ca=c["other_ca"], **dev_client))
    # no <name>-cacert Secret: ca.crt of the base Secret is the CA.
    assert https_get(gw, 443, "/", host="base.istioinaction.io", ca=c["other_ca"], **other_client).status == 200
    refused(handshake(gw, "base.istioinaction.io", ca=c["other_ca"], **dev_client))

    # curl and openssl agree with the Python client.
    port = gw.port(443)
    base = ["--cacert", ROOT_CA, "--resolve", f"webapp.istioinaction.io:{port}:127.0.0.1", "-o", "/dev/null",
            "-w", "%{http_code}"]
    p = run_curl([*base, "--cert", CERTS / "webapp-client" / "tls.crt", "--key", CERTS / "webapp-client" / "tls.key",
                  f"https://webapp.istioinaction.io:{port}/curl"])
    assert (p.returncode, p.stdout) == (0, "200"), p.stderr
    p = run_curl([*base, f"https://webapp.istioinaction.io:{port}/curl"])
    assert p.returncode != 0 and p.stdout in ("", "000"), (p.returncode, p.stdout, p.stderr)
    # TLS 1.2 without a client certificate: the handshake itself fails
    p = openssl_s_client(port, "webapp.istioinaction.io", "-CAfile", str(ROOT_CA), "-tls1_2")
    assert p.returncode != 0 and "CONNECTION ESTABLISHED" not in p.stdout + p.stderr, p.stdout + p.stderr
    p = openssl_s_client(port, "webapp.istioinaction.io", "-CAfile", str(ROOT_CA), "-tls1_2",
                         "-cert", str(CERTS / "webapp-client" / "tls.crt"), "-key", str(CERTS / "webapp-client" / "tls.key"),
                         "-cert_chain", str(CERTS / "webapp-client" / "tls.crt"))  # -cert sends only the leaf
    assert p.returncode == 0 and "CONNECTION ESTABLISHED" in p.stdout + p.stderr, p.stdout + p.stderr


def test_mtls_sample_with_secrets(backend_factory, gateway_factory):
    """samples/coolstore-mtls: Secrets in the input, no --credentials-dir."""
    webapp = backend_factory("webapp")
    args = (SAMPLES / "coolstore-mtls" / "render.args").read_text().split()
    gw = gateway_factory([SAMPLES / "coolstore-mtls", service_entries(webapp=webapp.port)], ports=(443,), args=args)
    r = https_get(gw, 443, "/", host="webapp.istioinaction.io", ca=ROOT_CA,
                  client_cert=CERTS / "webapp-client" / "tls.crt", client_key=CERTS / "webapp-client" / "tls.key")
    assert r.status == 200
    assert r.tls.serial == serial_of((CERTS / "webapp-credential" / "tls.crt").read_bytes())
    assert 'Subject="CN=webapp-client"' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"]
    refused(handshake(gw, "webapp.istioinaction.io", ca=ROOT_CA))


# --------------------------------------------------------------------------
# TLS parameters


def _ctx(min_v=None, max_v=None, ciphers=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ROOT_CA))
    if min_v:
        ctx.minimum_version = min_v
    if max_v:
        ctx.maximum_version = max_v
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _try(port: int, sni: str, ctx: ssl.SSLContext) -> tuple[bool, str | None, str | None, str]:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                return True, s.version(), s.cipher()[0], ""
    except (ssl.SSLError, OSError) as e:
        return False, None, None, str(e)


def test_tls_parameters(backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    wc = "credentialName: istioinaction-credential"

    def server(name: str, tls: str) -> str:
        return (f"  - port: {{number: 443, name: https-{name}, protocol: HTTPS}}\n"
                f"    hosts: [{name}.istioinaction.io]\n    tls: {{mode: SIMPLE, {wc}, {tls}}}\n")

    gw_yaml = (
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\n"
        "metadata: {name: coolstore-gateway, namespace: istioinaction}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        + server("min13", "minProtocolVersion: TLSV1_3")
        + server("max12", "maxProtocolVersion: TLSV1_2")
        + server("cipher", "maxProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256, fake-cipher]")
        + server("curves", "ecdhCurves: [P-384]")
        + server("redir", "httpsRedirect: true")  # harmless on an HTTPS server (Istio validation only warns)
        # hosts ["*"]: a chain without an SNI match, so clients without (or with an unknown) SNI land here
        + "  - port: {number: 443, name: https-any, protocol: HTTPS}\n"
          "    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: webapp-credential}\n"
    )
    gw = gateway_factory([gw_yaml, vs("all", ["*.istioinaction.io"], "webapp"), service_entries(webapp=webapp.port)],
                         ports=(443,), args=["--credentials-dir", str(CERTS)])
    rr = gw.render_result
    assert rr.exit_code == 0
    assert "EG0106" in rr.stderr and "fake-cipher" in rr.stderr, rr.stderr
    assert "01.yaml" in rr.stderr or "00.yaml" in rr.stderr, rr.stderr  # file:line of the Gateway
    port = gw.port(443)
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

    ok, ver, _, err = _try(port, "min13.istioinaction.io", _ctx(max_v=v12))
    assert not ok, f"TLS1.2-only client got {ver} from a TLSV1_3-minimum server"
    assert _try(port, "min13.istioinaction.io", _ctx())[1] == "TLSv1.3"

    ok, ver, _, err = _try(port, "max12.istioinaction.io", _ctx())
    assert ok and ver == "TLSv1.2", (ok, ver, err)
    assert not _try(port, "max12.istioinaction.io", _ctx(min_v=v13))[0]
    r = https_get(gw, 443, "/", host="max12.istioinaction.io", ca=ROOT_CA)
    assert r.status == 200 and r.tls.version == "TLSv1.2"

    ok, ver, cipher, err = _try(port, "cipher.istioinaction.io", _ctx())
    assert ok and (ver, cipher) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"), (ok, ver, cipher, err)
    ok, _, cipher, err = _try(port, "cipher.istioinaction.io", _ctx(ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
    assert not ok, f"client offering only AES256 negotiated {cipher}"
    r = https_get(gw, 443, "/r", host="redir.istioinaction.io", ca=ROOT_CA)
    assert r.status == 200 and r.headers["x-backend"] == "webapp", r

    # ecdhCurves: a client offering only X25519 fails, P-384 works
    p = openssl_s_client(port, "curves.istioinaction.io", "-groups", "X25519")
    assert p.returncode != 0, p.stdout + p.stderr
    p = openssl_s_client(port, "curves.istioinaction.io", "-groups", "P-384")
    assert p.returncode == 0 and "secp384r1" in p.stdout + p.stderr, p.stdout + p.stderr

    # catch-all chain: no SNI / unknown SNI -> webapp certificate, Host decides the vhost
    assert handshake(gw, None).subject_cn == "webapp.istioinaction.io"
    assert handshake(gw, "zzz.example.org").subject_cn == "webapp.istioinaction.io"
    r = https_get(gw, 443, "/", host="min13.istioinaction.io", sni=False)
    assert r.status == 200 and r.tls.subject_cn == "webapp.istioinaction.io"
    assert https_get(gw, 443, "/", host="zzz.example.org", sni=False).status == 404

    p = openssl_s_client(port, "cipher.istioinaction.io", "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert p.returncode != 0, p.stdout + p.stderr
    p = openssl_s_client(port, "cipher.istioinaction.io", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert p.returncode == 0 and "ECDHE-ECDSA-AES128-GCM-SHA256" in p.stdout + p.stderr, p.stdout + p.stderr


# --------------------------------------------------------------------------
# httpsRedirect


def test_https_redirect(backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    args = (SAMPLES / "coolstore-redirect" / "render.args").read_text().split()
    args = [str(REPO / a) if a == "certs" else a for a in args]
    # A second Gateway on port 80 for the same host, without httpsRedirect, with its own VS: vhosts are merged
    # per host on the port, so the one redirecting server still redirects this host (istio-semantics 2.6).
    other_gw = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: plain-gateway, namespace: istioinaction}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [webapp.istioinaction.io, plain.istioinaction.io]
"""
    gw = gateway_factory([SAMPLES / "coolstore-redirect", service_entries(webapp=webapp.port), other_gw,
                          vs("plain", ["webapp.istioinaction.io", "plain.istioinaction.io"], "webapp",
                             gateway="plain-gateway")],
                         ports=(80, 443), args=args)
    r = http_get(gw, 80, "/api/catalog?x=1", host="webapp.istioinaction.io")
    assert r.status == 301, r
    assert r.headers["location"] == "https://webapp.istioinaction.io/api/catalog?x=1"
    assert r.headers["server"] == "istio-envoy"
    r = http_get(gw, 80, "/", host="webapp.istioinaction.io", headers={"X-Forwarded-Proto": "https"})
    assert r.status == 301, "a client X-Forwarded-Proto must not avoid the redirect"
    assert r.headers["location"] == "https://webapp.istioinaction.io/"
    assert http_get(gw, 80, "/", host="other.example.com").status == 404
    assert webapp.count == 0
    r = http_get(gw, 80, "/x", host="plain.istioinaction.io")  # not redirected: its only server has no flag
    assert r.status == 200 and webapp.requests[-1]["path"] == "/x"
    webapp.reset()
    r = https_get(gw, 443, "/api/catalog", host="webapp.istioinaction.io", ca=ROOT_CA)
    assert r.status == 200 and r.headers["x-backend"] == "webapp"
    p = run_curl(["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: webapp.istioinaction.io",
                  f"http://127.0.0.1:{gw.port(80)}/a/b"])
    assert p.stdout == "301 https://webapp.istioinaction.io/a/b", p.stdout


def test_https_sample_renders_and_serves(backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    gw = gateway_factory([SAMPLES / "coolstore-https", service_entries(webapp=webapp.port)], ports=(443,),
                         args=["--credentials-dir", str(CERTS)])
    p = run_curl(["--cacert", ROOT_CA, "--resolve", f"webapp.istioinaction.io:{gw.port(443)}:127.0.0.1",
                  "-o", "/dev/null", "-w", "%{http_code}", f"https://webapp.istioinaction.io:{gw.port(443)}/"])
    assert (p.returncode, p.stdout) == (0, "200"), p.stderr
    assert webapp.count == 1


# --------------------------------------------------------------------------
# `envoygen certs` end to end


def test_envoygen_certs_mutual_end_to_end(tmp_path, backend_factory, gateway_factory):
    creds = tmp_path / "pki"
    p = run_envoygen(["certs", "-o", creds, "--server", "gw-cred=app.example.com", "--client", "app-client=app-client",
                      "--days", "30"])
    assert p.returncode == 0, p.stderr
    for f in ("gw-cred/tls.crt", "gw-cred/tls.key", "gw-cred/ca.crt", "app-client/tls.crt", "_ca/root.crt"):
        assert (creds / f).is_file(), f
    assert (creds / "gw-cred" / "tls.key").stat().st_mode & 0o077 == 0
    webapp = backend_factory("webapp")
    gw_yaml = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: coolstore-gateway, namespace: istioinaction}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [app.example.com]
    tls: {mode: MUTUAL, credentialName: gw-cred}
"""
    gw = gateway_factory([gw_yaml, vs("app", ["app.example.com"], "webapp"), service_entries(webapp=webapp.port)],
                         ports=(443,), args=["--credentials-dir", str(creds)])
    port = gw.port(443)
    p = run_curl(["--cacert", creds / "_ca" / "root.crt", "--cert", creds / "app-client" / "tls.crt",
                  "--key", creds / "app-client" / "tls.key", "--resolve", f"app.example.com:{port}:127.0.0.1",
                  "-o", "/dev/null", "-w", "%{http_code}", f"https://app.example.com:{port}/hello"])
    assert (p.returncode, p.stdout) == (0, "200"), p.stderr
    assert webapp.requests[-1]["path"] == "/hello"
    assert 'Subject="CN=app-client"' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"]
    # the dev client from certs/ belongs to another CA
    refused(handshake(gw, "app.example.com", ca=creds / "_ca" / "root.crt",
                      client_cert=CERTS / "webapp-client" / "tls.crt", client_key=CERTS / "webapp-client" / "tls.key"))


# --------------------------------------------------------------------------
# credentialNames: an RSA and an ECDSA certificate on one server


def test_credential_names_rsa_and_ecdsa(tmp_path, backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    ca = mint_ca("dual Root CA")
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    rsa = mint_server(["dual.example.com"], ca, key_type="rsa")
    ecd = mint_server(["dual.example.com"], ca, key_type="ec")
    creds = tmp_path / "creds"
    write_minted(creds / "dual-rsa", rsa)
    write_minted(creds / "dual-ec", ecd)
    gw_yaml = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: coolstore-gateway, namespace: istioinaction}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [dual.example.com]
    tls: {mode: SIMPLE, credentialNames: [dual-rsa, dual-ec]}
"""
    gw = gateway_factory([gw_yaml, vs("dual", ["dual.example.com"], "webapp"), service_entries(webapp=webapp.port)],
                         ports=(443,), args=["--credentials-dir", str(creds)])
    port = gw.port(443)
    seen = {}
    for sigalgs in ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "ecdsa_secp256r1_sha256"):
        p = openssl_s_client(port, "dual.example.com", "-sigalgs", sigalgs, "-CAfile", str(tmp_path / "ca.crt"),
                             "-showcerts", brief=False)
        assert "Verify return code: 0 (ok)" in p.stdout, p.stdout + p.stderr
        pem = p.stdout[p.stdout.index("-----BEGIN CERTIFICATE-----"):]
        pem = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        seen[sigalgs] = serial_of(pem)
    assert seen["rsa_pss_rsae_sha256:rsa_pkcs1_sha256"] == serial_of(rsa.cert)
    assert seen["ecdsa_secp256r1_sha256"] == serial_of(ecd.cert)
    assert https_get(gw, 443, "/", host="dual.example.com", ca=tmp_path / "ca.crt").status == 200
