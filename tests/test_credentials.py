"""envoygen.credentials: lookup (Istio's Secret rules, --credentials-dir), hostile input, checks."""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from envoygen import credentials as cr
from envoygen.certs import (
    Minted,
    mint_ca,
    mint_client,
    mint_server,
    mint_server_with_mismatched_key,
    mint_server_with_validity,
)
from envoygen.credentials import (
    Credential,
    SecretSource,
    check_credential,
    describe_certificate,
    resolve_credential,
    valid_credential_name,
)
from envoygen.diagnostics import CODES

NS = "istio-system"
REF = dict(ref_file="gateway.yaml", ref_line=17, ref_path="spec.servers[1].tls.credentialName")
NOW = datetime.now(timezone.utc)
HOST = "webapp.istioinaction.io"


# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def root() -> Minted:
    return mint_ca("test Root CA")


@pytest.fixture(scope="module")
def inter(root) -> Minted:
    return mint_ca("test Intermediate CA", issuer=root)


@pytest.fixture(scope="module")
def server(inter) -> Minted:
    return mint_server([HOST], inter)


@pytest.fixture(scope="module")
def other_server(inter) -> Minted:
    return mint_server(["other.example.com"], inter)


@pytest.fixture(scope="module")
def crl(root) -> bytes:
    key = serialization.load_pem_private_key(root.key, None)
    cert = x509.load_pem_x509_certificate(root.cert)
    built = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(NOW - timedelta(days=1))
        .next_update(NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


def secret(name: str, data: dict[str, bytes], *, namespace: str = NS, line: int = 3) -> SecretSource:
    return SecretSource(name=name, namespace=namespace, data=data, file="secrets.yaml", line=line)


def index(*secrets: SecretSource) -> dict[tuple[str, str], SecretSource]:
    return {(s.namespace, s.name): s for s in secrets}


def resolve(name, secrets=(), cdir=None, *, need_key=True, need_ca=False, namespace=NS):
    return resolve_credential(
        name, namespace, index(*secrets), cdir, need_key=need_key, need_ca=need_ca, **REF
    )


def cred(cert=None, key=None, ca=None, crl=None, ocsp_staple=None, name="webapp-credential") -> Credential:
    return Credential(
        name=name, cert_chain=cert, private_key=key, ca_cert=ca, crl=crl, ocsp_staple=ocsp_staple,
        origin="Secret istio-system/webapp-credential (secrets.yaml:3)", file="secrets.yaml", line=3,
    )


def check(c: Credential, hosts=(HOST,), *, now=None, allow_expired=False):
    # The clock of the call, not of the import: certificates minted during a
    # long suite start (minus the 5 minutes of skew allowance) after NOW.
    now = datetime.now(timezone.utc) if now is None else now
    return check_credential(c, list(hosts), now=now, allow_expired=allow_expired, **REF)


def assert_at_ref(findings) -> None:
    """Every finding sits at the referencing Gateway server, with a known code."""
    assert findings, "expected findings"
    for f in findings:
        assert (f.file, f.line, f.path) == (REF["ref_file"], REF["ref_line"], REF["ref_path"]), f
        assert f.code in CODES


def codes(findings) -> list[tuple[str, str]]:
    return sorted((f.code, f.severity) for f in findings)


def write_dir(base: Path, name: str, files: dict[str, bytes]) -> Path:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        (d / fname).write_bytes(content)
    return d


# ---------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    "name",
    ["webapp-credential", "a", "a.b-c.d", "0abc", "x" * 253, "istioinaction-credential"],
)
def test_valid_names(name):
    assert valid_credential_name(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "", "../x", "..", ".", "a/b", "/etc/passwd", "a..b", ".hidden", "-a", "a-", "A", "Webapp",
        "a b", "a\x00b", "a\\b", "x" * 254, "kubernetes://foo", "é", "a_b", "a/../b", "./a", "a\n",
    ],
)
def test_invalid_names(name):
    assert valid_credential_name(name) is False


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs/path", "..", "Upper", "kubernetes://foo", "a\x00"])
def test_invalid_name_is_eg0302_and_never_touches_the_filesystem(name, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError(f"filesystem touched for {name!r}")

    for fn in ("open", "stat", "lstat", "listdir", "scandir"):
        monkeypatch.setattr(os, fn, boom)
    for fn in ("realpath", "lexists", "exists", "isdir", "isfile"):
        monkeypatch.setattr(os.path, fn, boom)
    c, findings = resolve(name, cdir=tmp_path, need_ca=True)
    monkeypatch.undo()
    assert c is None
    assert [f.code for f in findings] == ["EG0302"]
    assert_at_ref(findings)


def test_cross_namespace_name_gets_a_specific_hint():
    _, findings = resolve("other-ns/webapp-credential")
    assert findings[0].code == "EG0302"
    assert "namespace" in findings[0].message and "cross-namespace" in findings[0].hint


# ---------------------------------------------------------------------------
# Secrets: certificate and key (Istio's ExtractCertInfo)


def test_tls_keys(server):
    s = secret("webapp-credential", {"tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("webapp-credential", [s])
    assert findings == []
    assert (c.cert_chain, c.private_key, c.ca_cert, c.ocsp_staple) == (server.cert, server.key, None, None)
    assert c.origin == "Secret istio-system/webapp-credential (secrets.yaml:3)"
    assert (c.file, c.line, c.name) == ("secrets.yaml", 3, "webapp-credential")


def test_generic_keys_win_over_tls_keys(server, other_server):
    s = secret("c", {"cert": server.cert, "key": server.key, "tls.crt": other_server.cert, "tls.key": other_server.key})
    c, findings = resolve("c", [s])
    assert findings == []
    assert (c.cert_chain, c.private_key) == (server.cert, server.key)


def test_empty_generic_keys_fall_through_to_tls_keys(server):
    # Istio tests hasValue(cert, key) first, then hasValue(tls.crt, tls.key), then the "empty" errors.
    s = secret("c", {"cert": b"", "key": b"", "tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("c", [s])
    assert findings == [] and c.cert_chain == server.cert


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"tls.crt": b"", "tls.key": b""}, "'tls.crt' and 'tls.key', but both are empty"),
        ({"tls.crt": b"x", "tls.key": b""}, "'tls.key' is empty"),
        ({"cert": b"", "key": b"k"}, "'cert' is empty"),
    ],
)
def test_present_but_empty_keys(data, needle):
    c, findings = resolve("c", [secret("c", data)])
    assert c is None
    assert [f.code for f in findings] == ["EG0301"]
    assert needle in findings[0].message
    assert "Secret istio-system/c (secrets.yaml:3)" in findings[0].message
    assert_at_ref(findings)


def test_missing_keys_lists_found_keys():
    c, findings = resolve("c", [secret("c", {"tls.crt": b"x", "password": b"p", "ca.crt": b"y"})])
    assert c is None and [f.code for f in findings] == ["EG0301"]
    assert "found: ca.crt, password, tls.crt" in findings[0].message
    assert "'tls.crt' and 'tls.key'" in findings[0].message


def test_ocsp_staple_only_with_tls_keys(server):
    s = secret("c", {"tls.crt": server.cert, "tls.key": server.key, "tls.ocsp-staple": b"\x30\x03"})
    c, _ = resolve("c", [s])
    assert c.ocsp_staple == b"\x30\x03"
    s = secret("c", {"cert": server.cert, "key": server.key, "tls.ocsp-staple": b"\x30\x03"})
    c, _ = resolve("c", [s])
    assert c.ocsp_staple is None


def test_secret_value_over_1mib_is_refused(server):
    big = server.cert + b"\n" * (cr.MAX_MATERIAL_BYTES + 1)
    c, findings = resolve("c", [secret("c", {"tls.crt": big, "tls.key": server.key})])
    assert c is None and [f.code for f in findings] == ["EG0303"]
    assert "limit" in findings[0].message


# ---------------------------------------------------------------------------
# Secrets: CA (Istio's GetCaCert / ExtractRoot)


def test_cacert_secret_wins_over_base_secret(server, root, other_server):
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": other_server.cert}, line=3)
    cacert = secret("c-cacert", {"ca.crt": root.cert}, line=20)
    c, findings = resolve("c", [base, cacert], need_ca=True)
    assert findings == []
    assert c.ca_cert == root.cert
    assert c.origin == (
        "Secret istio-system/c (secrets.yaml:3); CA from Secret istio-system/c-cacert (secrets.yaml:20)"
    )


def test_base_secret_supplies_ca_without_cacert_secret(server, root, crl):
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": root.cert, "ca.crl": crl})
    c, findings = resolve("c", [base], need_ca=True)
    assert findings == [] and c.ca_cert == root.cert and c.crl == crl
    assert c.origin == "Secret istio-system/c (secrets.yaml:3)"


def test_cacert_key_wins_over_ca_crt_and_brings_its_crl(root, other_server, crl):
    s = secret("c-cacert", {"cacert": root.cert, "crl": crl, "ca.crt": other_server.cert, "ca.crl": b"other"})
    c, findings = resolve("c", [s], need_key=False, need_ca=True)
    assert findings == [] and (c.ca_cert, c.crl) == (root.cert, crl)
    s = secret("c-cacert", {"ca.crt": root.cert, "ca.crl": crl, "crl": b"ignored"})
    c, _ = resolve("c", [s], need_key=False, need_ca=True)
    assert (c.ca_cert, c.crl) == (root.cert, crl)


def test_cacert_secret_without_ca_keys_does_not_fall_back(server, root):
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": root.cert})
    cacert = secret("c-cacert", {"tls.crt": root.cert}, line=30)
    c, findings = resolve("c", [base, cacert], need_ca=True)
    assert c is None and [f.code for f in findings] == ["EG0301"]
    assert "Secret istio-system/c-cacert (secrets.yaml:30) has no CA certificate" in findings[0].message
    assert "found: tls.crt" in findings[0].message


def test_empty_ca_key():
    c, findings = resolve("c", [secret("c-cacert", {"cacert": b""})], need_key=False, need_ca=True)
    assert c is None and "'cacert', but it is empty" in findings[0].message


def test_name_ending_in_cacert_is_looked_up_as_itself_first(root, other_server):
    a = secret("ca-bundle-cacert", {"ca.crt": root.cert})
    b = secret("ca-bundle", {"ca.crt": other_server.cert})
    c, _ = resolve("ca-bundle-cacert", [a, b], need_key=False, need_ca=True)
    assert c.ca_cert == root.cert
    c, _ = resolve("ca-bundle-cacert", [b], need_key=False, need_ca=True)
    assert c.ca_cert == other_server.cert


def test_ca_not_looked_up_when_not_needed(server):
    # A SIMPLE server never asks for the CA, so a broken -cacert Secret does not matter (as in Istio).
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("c", [base, secret("c-cacert", {"junk": b"x"})], need_ca=False)
    assert findings == [] and c.ca_cert is None and c.crl is None


def test_secret_is_read_from_the_gateway_namespace_only(server):
    s = secret("c", {"tls.crt": server.cert, "tls.key": server.key}, namespace="istioinaction")
    c, findings = resolve("c", [s])
    assert c is None and [f.code for f in findings] == ["EG0301"]
    assert "no Secret istio-system/c in the input" in findings[0].message
    assert "istioinaction" in findings[0].hint and "istio-system" in findings[0].hint
    assert_at_ref(findings)
    c, findings = resolve("c", [s], namespace="istioinaction")
    assert findings == [] and c is not None


def test_absent_everywhere_is_one_eg0301_naming_where_it_looked(tmp_path):
    c, findings = resolve("webapp-credential", [], tmp_path, need_ca=True)
    assert c is None and [f.code for f in findings] == ["EG0301"]
    m = findings[0].message
    assert "Secret istio-system/webapp-credential" in m and "Secret istio-system/webapp-credential-cacert" in m
    assert str(tmp_path / "webapp-credential") in m
    assert_at_ref(findings)
    _, findings = resolve("webapp-credential", [], None)
    assert "no --credentials-dir given" in findings[0].message


def test_ca_missing_for_mutual(server):
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("c", [base], need_ca=True)
    assert c is None and [f.code for f in findings] == ["EG0301"]
    assert "no CA certificate" in findings[0].message


# ---------------------------------------------------------------------------
# --credentials-dir


def test_dir_layout(tmp_path, server, root, crl):
    write_dir(tmp_path, "c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": root.cert, "ca.crl": crl})
    c, findings = resolve("c", [], tmp_path, need_ca=True)
    assert findings == []
    assert (c.cert_chain, c.private_key, c.ca_cert, c.crl) == (server.cert, server.key, root.cert, crl)
    assert c.origin == f"credentials-dir {tmp_path / 'c'}"
    assert (c.file, c.line) == (str(tmp_path / "c"), 0)


def test_dir_missing_files(tmp_path, server):
    write_dir(tmp_path, "c", {"tls.crt": server.cert, "notes.txt": b"x"})
    c, findings = resolve("c", [], tmp_path)
    assert c is None and [f.code for f in findings] == ["EG0301"]
    assert "has no tls.key; found: notes.txt, tls.crt" in findings[0].message
    write_dir(tmp_path, "c", {"tls.key": server.key})
    c, findings = resolve("c", [], tmp_path, need_ca=True)
    assert c is None and "ca.crt" in findings[0].message and "MUTUAL" in findings[0].hint
    write_dir(tmp_path, "c", {"tls.key": b""})
    _, findings = resolve("c", [], tmp_path)
    assert "tls.key is empty" in findings[0].message


def test_secret_in_input_wins_over_dir(tmp_path, server, other_server, root):
    write_dir(tmp_path, "c", {"tls.crt": other_server.cert, "tls.key": other_server.key, "ca.crt": other_server.cert})
    base = secret("c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": root.cert})
    c, findings = resolve("c", [base], tmp_path, need_ca=True)
    assert findings == []
    assert (c.cert_chain, c.ca_cert) == (server.cert, root.cert)
    assert "credentials-dir" not in c.origin


def test_precedence_is_per_resource(tmp_path, server, root, other_server):
    # cert/key: no Secret "c" -> directory; CA: Secret "c-cacert" wins over DIR/c/ca.crt.
    write_dir(tmp_path, "c", {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": other_server.cert})
    c, findings = resolve("c", [secret("c-cacert", {"ca.crt": root.cert})], tmp_path, need_ca=True)
    assert findings == []
    assert (c.cert_chain, c.ca_cert) == (server.cert, root.cert)
    assert c.origin == f"credentials-dir {tmp_path / 'c'}; CA from Secret istio-system/c-cacert (secrets.yaml:3)"


def test_secret_with_wrong_keys_is_not_replaced_by_dir(tmp_path, server):
    write_dir(tmp_path, "c", {"tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("c", [secret("c", {"wrong": b"x"})], tmp_path)
    assert c is None and [f.code for f in findings] == ["EG0301"]


def test_symlinked_credential_dir_leaving_dir_is_eg0308(tmp_path, server):
    outside = tmp_path / "outside"
    write_dir(outside, "c", {"tls.crt": server.cert, "tls.key": server.key})
    cdir = tmp_path / "creds"
    cdir.mkdir()
    (cdir / "c").symlink_to(outside / "c")
    c, findings = resolve("c", [], cdir)
    assert c is None and [f.code for f in findings] == ["EG0308"]
    assert "outside" in findings[0].message
    assert_at_ref(findings)


def test_symlinked_file_leaving_dir_is_eg0308(tmp_path, server):
    secret_file = tmp_path / "elsewhere.key"
    secret_file.write_bytes(server.key)
    cdir = tmp_path / "creds"
    d = write_dir(cdir, "c", {"tls.crt": server.cert})
    (d / "tls.key").symlink_to("../../elsewhere.key")
    c, findings = resolve("c", [], cdir)
    assert c is None and [f.code for f in findings] == ["EG0308"]
    assert "tls.key" in findings[0].message


def test_symlinks_inside_dir_are_followed(tmp_path, server):
    # The Kubernetes Secret volume layout: files -> ..data/file, ..data -> ..2024_01_01.
    cdir = tmp_path / "creds"
    real = write_dir(cdir / "c", "..2024_01_01", {"tls.crt": server.cert, "tls.key": server.key})
    (cdir / "c" / "..data").symlink_to(real.name)
    for f in ("tls.crt", "tls.key"):
        (cdir / "c" / f).symlink_to(f"..data/{f}")
    c, findings = resolve("c", [], cdir)
    assert findings == [] and c.private_key == server.key
    # and the credentials dir itself may be a symlink
    link = tmp_path / "link"
    link.symlink_to(cdir)
    c, findings = resolve("c", [], link)
    assert findings == [] and c.cert_chain == server.cert


def test_file_over_1mib_is_refused(tmp_path, server):
    write_dir(tmp_path, "c", {"tls.crt": server.cert + b"\n" * cr.MAX_MATERIAL_BYTES, "tls.key": server.key})
    c, findings = resolve("c", [], tmp_path)
    assert c is None and [f.code for f in findings] == ["EG0308"]
    assert "tls.crt" in findings[0].message and "limit" in findings[0].message


def test_fifo_is_refused_without_hanging(tmp_path, server):
    d = write_dir(tmp_path, "c", {"tls.crt": server.cert})
    os.mkfifo(d / "tls.key")
    c, findings = resolve("c", [], tmp_path)
    assert c is None and [f.code for f in findings] == ["EG0308"]
    assert "not a regular file" in findings[0].message


def test_entry_that_is_a_file_not_a_directory(tmp_path):
    (tmp_path / "c").write_bytes(b"x")
    c, findings = resolve("c", [], tmp_path)
    assert c is None and [f.code for f in findings] == ["EG0308"]


def test_unsafe_dir_entry_ignored_when_secrets_supply_everything(tmp_path, server):
    (tmp_path / "c").symlink_to("/etc")
    s = secret("c", {"tls.crt": server.cert, "tls.key": server.key})
    c, findings = resolve("c", [s], tmp_path)
    assert findings == [] and c.cert_chain == server.cert


# ---------------------------------------------------------------------------
# check_credential


def test_valid_credential_has_no_findings(server, root):
    assert check(cred(server.cert, server.key, root.cert)) == []


@pytest.mark.parametrize("field", ["cert", "key", "ca", "crl"])
@pytest.mark.parametrize("junk", [b"not pem at all", b"\x30\x82\x01\x00\x00binary", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"])
def test_eg0303_for_each_pem(field, junk, server, root, crl):
    parts = dict(cert=server.cert, key=server.key, ca=root.cert, crl=crl)
    parts[field] = junk
    findings = check(cred(**parts))
    assert [f.code for f in findings] == ["EG0303"]
    what = {"cert": "certificate chain", "key": "private key", "ca": "CA certificate", "crl": "CRL"}[field]
    assert what in findings[0].message
    assert "Secret istio-system/webapp-credential (secrets.yaml:3)" in findings[0].message
    assert_at_ref(findings)


def test_der_certificate_gets_a_conversion_hint(server):
    der = x509.load_pem_x509_certificate(server.cert).public_bytes(serialization.Encoding.DER)
    findings = check(cred(der, server.key))
    assert [f.code for f in findings] == ["EG0303"]
    assert "binary" in findings[0].message and "openssl" in findings[0].hint


def test_certificate_block_with_bad_der(server):
    bogus = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(b"\x30\x03\x02\x01\x01") + b"-----END CERTIFICATE-----\n"
    findings = check(cred(bogus, server.key))
    assert [f.code for f in findings] == ["EG0303"] and "does not parse" in findings[0].message


def test_encrypted_key_is_eg0303(server):
    key = serialization.load_pem_private_key(server.key, None)
    enc = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    findings = check(cred(server.cert, enc))
    assert [f.code for f in findings] == ["EG0303"] and "encrypted" in findings[0].message


def test_key_file_holding_a_certificate(server):
    findings = check(cred(server.cert, server.cert))
    assert [f.code for f in findings] == ["EG0303"] and "no private key" in findings[0].message


def test_ocsp_staple_must_parse(server):
    findings = check(cred(server.cert, server.key, ocsp_staple=b"junk"))
    assert [f.code for f in findings] == ["EG0303"] and "OCSP" in findings[0].message
    good = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
        serialization.Encoding.DER
    )
    assert check(cred(server.cert, server.key, ocsp_staple=good)) == []


def test_valid_crl_passes(server, root, crl):
    assert check(cred(server.cert, server.key, root.cert, crl)) == []


def test_eg0304_key_mismatch(inter):
    m = mint_server_with_mismatched_key([HOST], inter)
    findings = check(cred(m.cert, m.key))
    assert codes(findings) == [("EG0304", "error")]
    assert f"CN={HOST}" in findings[0].message
    assert_at_ref(findings)


def test_eg0304_leaf_must_come_first(server, inter):
    leaf, intermediate = x509.load_pem_x509_certificates(server.cert)
    swapped = intermediate.public_bytes(serialization.Encoding.PEM) + leaf.public_bytes(serialization.Encoding.PEM)
    findings = check(cred(swapped, server.key), hosts=[])
    assert [f.code for f in findings] == ["EG0304"]


def test_eg0304_rsa_key_with_ec_cert(inter, server):
    rsa = mint_server([HOST], inter, key_type="rsa")
    assert [f.code for f in check(cred(server.cert, rsa.key))] == ["EG0304"]
    assert check(cred(rsa.cert, rsa.key)) == []


def test_eg0305_expired_is_error_or_warning(inter):
    m = mint_server_with_validity([HOST], inter, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    findings = check(cred(m.cert, m.key))
    assert codes(findings) == [("EG0305", "error")]
    assert "expired at" in findings[0].message and "--allow-expired" in findings[0].hint
    assert_at_ref(findings)
    findings = check(cred(m.cert, m.key), allow_expired=True)
    assert codes(findings) == [("EG0305", "warning")]
    # and checked against `now`, not the wall clock (leaf only: the intermediate is younger than that)
    leaf_only = mint_server_with_validity(
        [HOST], inter, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1), include_chain=False
    )
    assert check(cred(leaf_only.cert, leaf_only.key), now=NOW - timedelta(days=10)) == []
    assert [f.code for f in check(cred(leaf_only.cert, leaf_only.key))] == ["EG0305"]


def test_eg0305_not_yet_valid(inter):
    m = mint_server_with_validity([HOST], inter, not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=9))
    findings = check(cred(m.cert, m.key))
    assert codes(findings) == [("EG0305", "error")] and "not valid before" in findings[0].message
    assert codes(check(cred(m.cert, m.key), allow_expired=True)) == [("EG0305", "warning")]


def test_eg0305_naive_now_is_utc(inter):
    m = mint_server_with_validity([HOST], inter, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    naive = datetime.now(timezone.utc).replace(tzinfo=None)
    assert [f.code for f in check(cred(m.cert, m.key), now=naive)] == ["EG0305"]


def test_eg0305_expired_intermediate_in_chain(root):
    old_inter = mint_ca("old inter", issuer=root, not_before=NOW - timedelta(days=60), not_after=NOW - timedelta(days=1))
    leaf = mint_server_with_validity(
        [HOST], old_inter, not_before=NOW - timedelta(days=50), not_after=NOW + timedelta(days=50)
    )
    findings = check(cred(leaf.cert, leaf.key))
    assert [f.code for f in findings] == ["EG0305"] and "chain certificate 2" in findings[0].message


@pytest.mark.parametrize(
    "sans,host,covered",
    [
        (["webapp.istioinaction.io"], "webapp.istioinaction.io", True),
        (["webapp.istioinaction.io"], "WEBAPP.istioinaction.io", True),
        (["webapp.istioinaction.io"], "catalog.istioinaction.io", False),
        (["*.istioinaction.io"], "webapp.istioinaction.io", True),
        (["*.istioinaction.io"], "*.istioinaction.io", True),
        (["*.istioinaction.io"], "a.b.istioinaction.io", False),
        (["*.istioinaction.io"], "istioinaction.io", False),
        (["webapp.istioinaction.io"], "*.istioinaction.io", False),
        (["*.io"], "*.istioinaction.io", False),
        (["webapp.istioinaction.io"], "*", True),
        (["webapp.istioinaction.io"], "istioinaction/webapp.istioinaction.io", True),
        (["webapp.istioinaction.io"], "./webapp.istioinaction.io", True),
        (["webapp.istioinaction.io"], "*/*", True),
        (["10.0.0.1"], "10.0.0.1", True),
        (["10.0.0.1"], "10.0.0.2", False),
    ],
)
def test_eg0306_san_coverage(inter, sans, host, covered):
    m = mint_server(sans, inter)
    findings = check(cred(m.cert, m.key), hosts=[host])
    if covered:
        assert findings == []
    else:
        assert codes(findings) == [("EG0306", "warning")]
        assert repr(host.rsplit("/", 1)[-1].lower()) in findings[0].message
        assert_at_ref(findings)


def test_eg0306_one_warning_per_uncovered_host(server):
    findings = check(cred(server.cert, server.key), hosts=[HOST, "a.example.com", "b.example.com", "*"])
    assert codes(findings) == [("EG0306", "warning")] * 2
    assert {"'a.example.com'", "'b.example.com'"} == {
        next(w for w in f.message.split() if w.startswith("'") and "example" in w) for f in findings
    }


def test_eg0306_certificate_without_san(inter):
    key = serialization.load_pem_private_key(inter.key, None)
    ic = x509.load_pem_x509_certificate(inter.cert)
    leaf_key = serialization.load_pem_private_key(mint_server([HOST], inter).key, None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ic.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    findings = check(cred(pem, key_pem))
    assert codes(findings) == [("EG0306", "warning")]
    assert "no subjectAltName" in findings[0].message and "CN" in findings[0].hint


@pytest.fixture(params=[True, False], ids=["verification-api", "by-hand"])
def verify_mode(request, monkeypatch):
    monkeypatch.setattr(cr, "_USE_VERIFICATION_API", request.param)
    return request.param


def test_eg0307_chain_verifies_against_root(verify_mode, server, root, inter):
    assert check(cred(server.cert, server.key, root.cert)) == []
    # an intermediate as the trust anchor is fine too
    assert check(cred(server.cert, server.key, inter.cert)) == []


def test_eg0307_unrelated_ca(verify_mode, server):
    other_root = mint_ca("unrelated Root CA")
    findings = check(cred(server.cert, server.key, other_root.cert))
    assert codes(findings) == [("EG0307", "warning")]
    assert "does not verify" in findings[0].message
    assert_at_ref(findings)


def test_eg0307_missing_intermediate(verify_mode, inter, root):
    leaf_only = mint_server([HOST], inter, include_chain=False)
    findings = check(cred(leaf_only.cert, leaf_only.key, root.cert))
    assert [f.code for f in findings] == ["EG0307"]


def test_eg0307_forged_signature(verify_mode, root):
    # Same issuer name, different key: the names chain up, the signatures do not.
    impostor = mint_ca("test Root CA")
    inter2 = mint_ca("test Intermediate CA", issuer=impostor)
    m = mint_server([HOST], inter2)
    findings = check(cred(m.cert, m.key, root.cert))
    assert [f.code for f in findings] == ["EG0307"]


def test_eg0307_not_reported_twice_for_an_expired_leaf(verify_mode, inter, root):
    m = mint_server_with_validity([HOST], inter, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    assert [f.code for f in check(cred(m.cert, m.key, root.cert), allow_expired=True)] == ["EG0305"]


def test_ca_only_credential(root):
    assert check(cred(ca=root.cert)) == []
    findings = check(cred(ca=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
    assert [f.code for f in findings] == ["EG0303"] and "no CERTIFICATE block" in findings[0].message


def test_unparsable_chain_skips_dependent_checks(server, root):
    findings = check(cred(b"garbage", server.key, root.cert), hosts=["not-covered.example.com"])
    assert [f.code for f in findings] == ["EG0303"]


def test_several_problems_at_once(inter):
    other_root = mint_ca("unrelated Root CA")
    m = mint_server_with_validity(["x.example.com"], inter, not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(days=1))
    wrong_key = mint_server([HOST], inter).key
    findings = check(cred(m.cert, wrong_key, other_root.cert))
    assert codes(findings) == [("EG0304", "error"), ("EG0305", "error"), ("EG0306", "warning"), ("EG0307", "warning")]
    assert_at_ref(findings)


def test_resolve_then_check_from_secrets(server, root, inter):
    client = mint_client("webapp-client", inter)
    s = [secret("webapp-credential", {"tls.crt": server.cert, "tls.key": server.key}),
         secret("webapp-credential-cacert", {"ca.crt": root.cert}),
         secret("webapp-client", {"tls.crt": client.cert, "tls.key": client.key, "ca.crt": root.cert})]
    c, findings = resolve("webapp-credential", s, need_ca=True)
    assert findings == [] and check(c) == []
    c, findings = resolve("webapp-client", s, need_ca=True)
    assert findings == [] and check(c, hosts=[]) == []


def test_binary_file_in_dir_is_eg0303_after_resolve(tmp_path, server):
    write_dir(tmp_path, "c", {"tls.crt": os.urandom(600) + b"\x00", "tls.key": server.key})
    c, findings = resolve("c", [], tmp_path)
    assert findings == []
    findings = check(c)
    assert [f.code for f in findings] == ["EG0303"] and f"credentials-dir {tmp_path / 'c'}" in findings[0].message


# ---------------------------------------------------------------------------
# describe_certificate


def test_describe_certificate(server):
    leaf = x509.load_pem_x509_certificates(server.cert)[0]
    # the fixture mints the certificate when first used, maybe long after NOW was read at import
    d = describe_certificate(server.cert, now=datetime.now(timezone.utc))
    assert d["serial"] == format(leaf.serial_number, "x") and not d["serial"].startswith("0")
    assert int(d["serial"], 16) == leaf.serial_number
    assert d["not_before"] == leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert d["not_after"].endswith("Z") and d["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert d["subject"] == f"CN={HOST}"
    assert d["issuer"] == "CN=test Intermediate CA,O=envoygen"
    assert d["sans"] == [HOST]
    assert d["valid"] is True and d["is_ca"] is False


def test_describe_certificate_validity_and_ip(inter, root):
    m = mint_server_with_validity(["a.example.com", "10.1.2.3"], inter, not_before=NOW - timedelta(days=3), not_after=NOW - timedelta(days=1))
    d = describe_certificate(m.cert, now=NOW)
    assert d["valid"] is False and d["sans"] == ["a.example.com", "10.1.2.3"]
    assert describe_certificate(m.cert, now=NOW - timedelta(days=2))["valid"] is True
    assert describe_certificate(root.cert)["is_ca"] is True


@pytest.mark.parametrize("junk", [b"", b"hello", b"\x30\x82garbage"])
def test_describe_certificate_rejects_junk(junk):
    with pytest.raises(ValueError):
        describe_certificate(junk)
