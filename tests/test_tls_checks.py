"""Build-time checks of TLS material (render only, no Envoy): EG0301..EG0308, EG0106.

Every finding must name the Gateway file and the line of the reference
(``credentialName``), and a failed render must leave OUT exactly as it was
(here: an earlier good bundle, compared file by file).
Also ``envoygen proxy-config secrets`` on a rendered bundle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from envoygen.certs import (
    Minted,
    mint_ca,
    mint_server,
    mint_server_with_mismatched_key,
    mint_server_with_validity,
)
from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
CERTS = REPO / "certs"
DEV_INTERMEDIATE = Minted((CERTS / "_ca" / "intermediate.crt").read_bytes(), (CERTS / "_ca" / "intermediate.key").read_bytes())
HOST = "app.example.com"


def gateway(cred: str = "app-cred", mode: str = "SIMPLE", host: str = HOST) -> str:
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: app-gateway
  namespace: istioinaction
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - "{host}"
    tls:
      mode: {mode}
      credentialName: "{cred}"
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: app
  namespace: istioinaction
spec:
  hosts: ["{host}"]
  gateways: [app-gateway]
  http:
  - route:
    - destination:
        host: app.istioinaction.svc.cluster.local
        port: {{number: 80}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: app
  namespace: istioinaction
spec:
  hosts: [app.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


CRED_LINE = gateway().splitlines().index('      credentialName: "app-cred"') + 1


def snapshot(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f" {oct(p.stat().st_mode & 0o777)}"
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory) -> Path:
    """An earlier good bundle, copied into OUT before each failing render."""
    d = tmp_path_factory.mktemp("good")
    (d / "gw.yaml").write_text(gateway("webapp-credential", host="webapp.istioinaction.io"))
    out = d / "out"
    p = run_envoygen(["render", "-f", d / "gw.yaml", "-o", out, "--credentials-dir", CERTS])
    assert p.returncode == 0, p.stderr
    return out


class Case:
    def __init__(self, tmp: Path, good: Path) -> None:
        self.tmp = tmp
        self.creds = tmp / "creds"
        self.creds.mkdir()
        self.gw_file = tmp / "in" / "gw.yaml"
        self.gw_file.parent.mkdir()
        self.out = tmp / "out"
        shutil.copytree(good, self.out, symlinks=True)
        self.before = snapshot(self.out)

    def cred(self, name: str, m: Minted, ca: bytes | None = None) -> Path:
        d = self.creds / name
        d.mkdir(parents=True)
        (d / "tls.crt").write_bytes(m.cert)
        (d / "tls.key").write_bytes(m.key)
        if ca is not None:
            (d / "ca.crt").write_bytes(ca)
        return d

    def render(self, yaml_text: str, *extra: str):  # noqa: ANN201
        self.gw_file.write_text(yaml_text)
        return run_envoygen(["render", "-f", self.gw_file, "-o", self.out, "--credentials-dir", self.creds, *extra])

    def where(self, line: int = CRED_LINE) -> str:
        return f"{self.gw_file}:{line}:"

    def assert_error(self, p, code: str, line: int = CRED_LINE) -> str:
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if f" {code} " in ln]
        assert lines, p.stderr
        assert any(ln.startswith(self.where(line)) or self.where(line) in ln for ln in lines), \
            f"expected {self.where(line)} {code} in:\n{p.stderr}"
        assert snapshot(self.out) == self.before, "OUT changed after a failed render"
        return "\n".join(lines)

    def assert_warning(self, p, code: str, line: int = CRED_LINE) -> str:
        assert p.returncode == 0, (p.returncode, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if f" {code} " in ln]
        assert lines, p.stderr
        assert any(self.where(line) in ln for ln in lines), f"expected {self.where(line)} {code} in:\n{p.stderr}"
        assert (self.out / "manifest.json").exists()
        assert snapshot(self.out) != self.before, "a successful render must replace the earlier bundle"
        return "\n".join(lines)


@pytest.fixture
def case(tmp_path, good_bundle) -> Case:
    return Case(tmp_path, good_bundle)


NOW = dt.datetime.now(dt.timezone.utc)


def test_key_mismatch_eg0304(case):
    case.cred("app-cred", mint_server_with_mismatched_key([HOST], DEV_INTERMEDIATE))
    msg = case.assert_error(case.render(gateway()), "EG0304")
    assert "app-cred" in msg


def test_expired_eg0305_and_allow_expired(case):
    case.cred("app-cred", mint_server_with_validity([HOST], DEV_INTERMEDIATE, not_before=NOW - dt.timedelta(days=30),
                                                    not_after=NOW - dt.timedelta(days=1)))
    msg = case.assert_error(case.render(gateway()), "EG0305")
    assert "app-cred" in msg
    p = case.render(gateway(), "--allow-expired")
    warn = case.assert_warning(p, "EG0305")
    assert "warning" in warn.lower(), warn
    assert (case.out / "certs" / "app-cred" / "tls.crt").read_bytes() == (case.creds / "app-cred" / "tls.crt").read_bytes()


def test_not_yet_valid_eg0305(case):
    case.cred("app-cred", mint_server_with_validity([HOST], DEV_INTERMEDIATE, not_before=NOW + dt.timedelta(days=2),
                                                    not_after=NOW + dt.timedelta(days=30)))
    case.assert_error(case.render(gateway()), "EG0305")


def test_host_not_in_sans_eg0306_warning(case):
    case.cred("app-cred", mint_server(["other.example.com"], DEV_INTERMEDIATE))
    msg = case.assert_warning(case.render(gateway()), "EG0306")
    assert HOST in msg, msg


def test_chain_not_verifying_eg0307_warning(case):
    other = mint_ca("unrelated Root CA")
    case.cred("app-cred", mint_server([HOST], DEV_INTERMEDIATE), ca=other.cert)
    msg = case.assert_warning(case.render(gateway(mode="MUTUAL")), "EG0307")
    assert "app-cred" in msg


def test_absent_credential_eg0301(case):
    case.cred("some-other-cred", mint_server([HOST], DEV_INTERMEDIATE))
    msg = case.assert_error(case.render(gateway("missing-cred")), "EG0301")
    assert "missing-cred" in msg


def test_mutual_without_ca_eg0301(case):
    case.cred("app-cred", mint_server([HOST], DEV_INTERMEDIATE))  # no ca.crt, no -cacert Secret
    case.assert_error(case.render(gateway(mode="MUTUAL")), "EG0301")


def test_path_traversal_name_eg0302(case):
    sentinel = case.tmp / "etc"
    sentinel.mkdir()
    (sentinel / "tls.crt").write_bytes(mint_server([HOST], DEV_INTERMEDIATE).cert)
    msg = case.assert_error(case.render(gateway("../etc")), "EG0302")
    assert "../etc" in msg


def test_symlink_leaving_credentials_dir_eg0308(case):
    outside = case.tmp / "outside"
    m = mint_server([HOST], DEV_INTERMEDIATE)
    outside.mkdir()
    (outside / "tls.crt").write_bytes(m.cert)
    (outside / "tls.key").write_bytes(m.key)
    os.symlink(outside, case.creds / "app-cred")  # the credential directory itself
    case.assert_error(case.render(gateway()), "EG0308")
    os.unlink(case.creds / "app-cred")
    d = case.creds / "app-cred"
    d.mkdir()
    os.symlink(outside / "tls.crt", d / "tls.crt")  # one file
    (d / "tls.key").write_bytes(m.key)
    case.assert_error(case.render(gateway()), "EG0308")
    # a symlink that stays inside DIR (Kubernetes ..data style) is fine
    os.unlink(d / "tls.crt")
    (d / "..v1").mkdir()
    (d / "..v1" / "tls.crt").write_bytes(m.cert)
    os.symlink("..v1", d / "..data")
    os.symlink("..data/tls.crt", d / "tls.crt")
    p = case.render(gateway())
    assert p.returncode == 0, p.stderr


def test_malformed_pem_eg0303(case):
    d = case.cred("app-cred", mint_server([HOST], DEV_INTERMEDIATE))
    (d / "tls.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    case.assert_error(case.render(gateway()), "EG0303")
    (d / "tls.crt").write_text("hello\n")
    case.assert_error(case.render(gateway()), "EG0303")


def test_passthrough_with_credential_eg0106(case):
    case.cred("app-cred", mint_server([HOST], DEV_INTERMEDIATE))
    text = f"""\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: app-gateway
  namespace: istioinaction
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    hosts:
    - "{HOST}"
    tls:
      mode: PASSTHROUGH
      credentialName: app-cred
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: app
  namespace: istioinaction
spec:
  hosts: ["{HOST}"]
  gateways: [app-gateway]
  tls:
  - match:
    - sniHosts: ["{HOST}"]
    route:
    - destination:
        host: app.istioinaction.svc.cluster.local
        port: {{number: 443}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: app
  namespace: istioinaction
spec:
  hosts: [app.istioinaction.svc.cluster.local]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    lines = text.splitlines()
    p = case.render(text)
    assert p.returncode == 1, p.stderr
    msg = [ln for ln in p.stderr.splitlines() if " EG0106 " in ln]
    assert msg, p.stderr
    # the finding points into the server's tls block (tls:, mode: or credentialName: line)
    allowed = {i + 1 for i, ln in enumerate(lines) if ln.strip() in ("tls:", "mode: PASSTHROUGH", "credentialName: app-cred")}
    assert any(any(f"{case.gw_file}:{n}:" in m for n in allowed) for m in msg), (allowed, p.stderr)
    assert snapshot(case.out) == case.before


# --------------------------------------------------------------------------
# proxy-config secrets


def test_proxy_config_secrets(tmp_path):
    (tmp_path / "gw.yaml").write_text(gateway("webapp-credential", mode="MUTUAL", host="webapp.istioinaction.io"))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", tmp_path / "gw.yaml", "-o", out, "--credentials-dir", CERTS])
    assert p.returncode == 0, p.stderr
    leaf = x509.load_pem_x509_certificate((CERTS / "webapp-credential" / "tls.crt").read_bytes())
    root = x509.load_pem_x509_certificate((CERTS / "webapp-credential" / "ca.crt").read_bytes())

    # the bundle: keys 0600, no private key inside the bootstrap
    assert (out / "certs" / "webapp-credential" / "tls.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in (out / "envoy.yaml").read_text()
    assert "PRIVATE KEY" not in "".join(f.read_text() for f in (out / "sds").iterdir())

    p = run_envoygen(["proxy-config", "secrets", out])
    assert p.returncode == 0, p.stderr
    rows = {ln.split()[0]: ln for ln in p.stdout.splitlines()[1:] if ln.strip()}
    assert p.stdout.splitlines()[0].split()[:2] == ["RESOURCE", "NAME"], p.stdout
    cert_row = rows["kubernetes://webapp-credential"]
    assert "Cert Chain" in cert_row and " true " in cert_row, cert_row
    assert f"{leaf.serial_number:x}" in cert_row.lower(), cert_row
    assert leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S") in cert_row, cert_row
    assert leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%S") in cert_row, cert_row
    ca_row = rows["kubernetes://webapp-credential-cacert"]
    assert " CA " in ca_row and " true " in ca_row and f"{root.serial_number:x}" in ca_row.lower(), ca_row

    p = run_envoygen(["proxy-config", "secrets", out, "-o", "json"])
    assert p.returncode == 0, p.stderr
    by_name = {s["name"]: s for s in json.loads(p.stdout)}
    s = by_name["kubernetes://webapp-credential"]
    assert (s["type"], s["valid"], int(s["serial"], 16)) == ("Cert Chain", True, leaf.serial_number)
    assert s["sans"] == ["webapp.istioinaction.io"]
    ca = by_name["kubernetes://webapp-credential-cacert"]
    assert (ca["type"], ca["valid"], int(ca["serial"], 16)) == ("CA", True, root.serial_number)

    # an expired certificate rendered with --allow-expired is listed as not valid
    exp = tmp_path / "creds" / "webapp-credential"
    exp.mkdir(parents=True)
    m = mint_server_with_validity(["webapp.istioinaction.io"], DEV_INTERMEDIATE,
                                  not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1))
    (exp / "tls.crt").write_bytes(m.cert)
    (exp / "tls.key").write_bytes(m.key)
    (tmp_path / "gw2.yaml").write_text(gateway("webapp-credential", host="webapp.istioinaction.io"))
    out2 = tmp_path / "out2"
    p = run_envoygen(["render", "-f", tmp_path / "gw2.yaml", "-o", out2, "--credentials-dir", exp.parent,
                      "--allow-expired"])
    assert p.returncode == 0, p.stderr
    p = run_envoygen(["proxy-config", "secrets", out2, "-o", "json"])
    by_name = {s["name"]: s for s in json.loads(p.stdout)}
    assert by_name["kubernetes://webapp-credential"]["valid"] is False


def _secret(name: str, ns: str, data: dict[str, bytes]) -> str:
    import base64

    body = "".join(f"  {k}: \"{base64.b64encode(v).decode()}\"\n" for k, v in data.items())
    return f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: Opaque\ndata:\n{body}"


def test_secret_in_gateway_namespace_is_not_used_eg0301(case):
    """Istio reads kubernetes://<name> from the gateway *workload's* namespace (istio-system), not the Gateway's."""
    m = mint_server([HOST], DEV_INTERMEDIATE)
    p = case.render(gateway() + _secret("app-cred", "istioinaction", {"tls.crt": m.cert, "tls.key": m.key}))
    msg = case.assert_error(p, "EG0301")
    assert "istio-system" in msg, msg


def test_secret_with_empty_keys_eg0301(case):
    m = mint_server([HOST], DEV_INTERMEDIATE)
    p = case.render(gateway() + _secret("app-cred", "istio-system", {"tls.crt": m.cert, "tls.key": b""}))
    case.assert_error(p, "EG0301")
    p = case.render(gateway() + _secret("app-cred", "istio-system", {"crt": m.cert, "private": m.key}))
    msg = case.assert_error(p, "EG0301")
    assert "crt" in msg and "private" in msg, "the message lists the keys the Secret has"


def test_wildcard_san_covers_one_label_only(case):
    case.cred("app-cred", mint_server(["*.example.com"], DEV_INTERMEDIATE))
    p = case.render(gateway(host="app.example.com"))
    assert p.returncode == 0, p.stderr
    assert "EG0306" not in p.stderr, p.stderr
    p = case.render(gateway(host="a.b.example.com"))
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if " EG0306 " in ln]
    assert lines and "a.b.example.com" in lines[0] and case.where() in lines[0], p.stderr
    # a server wildcard host inside the certificate's wildcard is covered too
    p = case.render(gateway(host="*.example.com"))
    assert p.returncode == 0 and "EG0306" not in p.stderr, p.stderr


def test_explicit_kubernetes_prefix_is_the_same_credential(tmp_path):
    """Istio's ToResourceName keeps an explicit kubernetes:// prefix: `kubernetes://webapp-credential` names the
    same Secret (in the workload namespace) and the same SDS resource as `webapp-credential`."""
    (tmp_path / "gw.yaml").write_text(gateway("kubernetes://webapp-credential", host="webapp.istioinaction.io"))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", tmp_path / "gw.yaml", "-o", out, "--credentials-dir", CERTS])
    assert p.returncode == 0, p.stderr
    p = run_envoygen(["proxy-config", "secrets", out, "-o", "json"])
    assert [s["name"] for s in json.loads(p.stdout)] == ["kubernetes://webapp-credential"], p.stdout
