"""TLS material for gateway servers: find it, read it safely, check it.

Two steps, kept apart so that the translator can decide what to do with each:

* :func:`resolve_credential` finds the bytes for one ``credentialName`` (in the
  input's Kubernetes Secrets or under ``--credentials-dir``). It reports what is
  *absent* or *unsafe* (EG0301, EG0302, EG0308) and never parses PEM.
* :func:`check_credential` parses what was found and reports what is *wrong*
  with it (EG0303..EG0307).

Every finding carries the position of the *reference* (the Gateway server that
names the credential), and its message names where the material came from.

Lookup rules (Istio's ``pilot/pkg/credentials/kube/secrets.go``, see
istio-semantics.md section 3.3):

* Secrets are looked up in the **gateway workload's namespace**, never in the
  Gateway resource's namespace. The Secret ``type`` is not checked.
* Certificate and key: the keys ``cert`` + ``key`` (+ ``crl``, unused: Envoy has
  no CRL on a certificate) are tried first, then ``tls.crt`` + ``tls.key``
  (+ ``tls.ocsp-staple``). A pair that is present but empty is an error; so are
  missing keys, and the message lists the keys the Secret does have.
* CA: the Secret ``<name>-cacert`` is tried first, else the Secret ``<name>``
  itself. Within the Secret that was chosen, ``cacert`` (+ ``crl``) is tried
  first, then ``ca.crt`` (+ ``ca.crl``). As in Istio there is no fallback from a
  ``-cacert`` Secret that lacks CA keys to the base Secret: it exists, so it is
  the one. (A ``name`` that already ends in ``-cacert`` is looked up as itself,
  then without the suffix, which is what Istio's ``GetCaCert`` does.)

``--credentials-dir DIR`` layout: ``DIR/<name>/tls.crt``, ``tls.key``, and
optionally ``ca.crt`` and ``ca.crl``.

Precedence between the input and the directory: **a Secret in the input wins
over the directory**, decided per resource, as Istio has two SDS resources per
credential (``kubernetes://<name>`` and ``kubernetes://<name>-cacert``):

* certificate and key come from the Secret ``<name>`` if the input has it,
  otherwise from ``DIR/<name>/tls.crt`` and ``tls.key``;
* the CA comes from the Secret ``<name>-cacert``, else the Secret ``<name>``,
  else ``DIR/<name>/ca.crt``.

The decision is made on the Secret's *existence*, not its contents: a Secret
with the wrong keys is an error, never silently replaced by files. Explicit
input is what the user most recently wrote about this gateway, while a
credentials directory tends to be a shared, longer-lived store.

Hostile input: a name that is not an RFC 1123 subdomain (``../x``, ``a/b``,
``/abs``) is refused before any filesystem access (EG0302). Inside DIR,
symlinks are followed only while they stay inside DIR (Kubernetes Secret
volumes are built from ``..data`` symlinks inside the volume); a symlink that
leaves DIR, or an entry that is not a regular file or is larger than 1 MiB, is
EG0308. Files are opened with ``O_NOFOLLOW | O_NONBLOCK``, so a FIFO or a
last-moment symlink swap cannot hang or redirect the read.
"""

from __future__ import annotations

import base64
import binascii
import errno
import ipaddress
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .diagnostics import Finding

__all__ = [
    "MAX_MATERIAL_BYTES",
    "Credential",
    "SecretSource",
    "check_credential",
    "describe_certificate",
    "resolve_credential",
    "valid_credential_name",
]

#: Largest certificate, key, CA bundle or CRL accepted (Kubernetes caps a whole Secret at 1 MiB).
MAX_MATERIAL_BYTES = 1024 * 1024

CA_SUFFIX = "-cacert"

# Secret keys, as in Istio.
GENERIC_CERT, GENERIC_KEY, GENERIC_CA, GENERIC_CRL = "cert", "key", "cacert", "crl"
TLS_CERT, TLS_KEY, TLS_OCSP, TLS_CA, TLS_CRL = "tls.crt", "tls.key", "tls.ocsp-staple", "ca.crt", "ca.crl"

# --credentials-dir file names.
DIR_CERT, DIR_KEY, DIR_CA, DIR_CRL = "tls.crt", "tls.key", "ca.crt", "ca.crl"


@dataclass(frozen=True)
class SecretSource:
    """One Kubernetes Secret document, its ``data`` already base64-decoded."""

    name: str
    namespace: str
    data: Mapping[str, bytes]
    file: str
    line: int

    @property
    def origin(self) -> str:
        return f"Secret {self.namespace}/{self.name} ({_where(self.file, self.line)})"


@dataclass(frozen=True)
class Credential:
    """What SDS needs for one ``credentialName``.

    ``cert_chain`` and ``private_key`` feed ``kubernetes://<name>``; ``ca_cert``
    and ``crl`` feed ``kubernetes://<name>-cacert`` (the CRL belongs to the
    validation context, as in Istio's ``toEnvoyCaSecret``); ``ocsp_staple``
    (DER) belongs to the certificate. A field is ``None`` when it was not asked
    for or is optional and absent. ``file``/``line`` locate the material that was
    used first (the Secret document, or the directory with line 0).
    """

    name: str
    cert_chain: bytes | None
    private_key: bytes | None
    ca_cert: bytes | None
    crl: bytes | None
    ocsp_staple: bytes | None
    origin: str
    file: str
    line: int


# ---------------------------------------------------------------------------
# names

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")


def valid_credential_name(name: str) -> bool:
    """True if ``name`` is a Kubernetes object name (RFC 1123 subdomain, at most 253 characters).

    Such a name has no ``/``, no ``..``, no leading ``.`` or ``-``, no upper case,
    no whitespace and no NUL, so it is always a single, harmless path component.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= 253
        and name.isascii()
        and _DNS1123_SUBDOMAIN.fullmatch(name) is not None
    )


def _name_problem(name: str) -> tuple[str, str]:
    """Message and hint for an invalid name."""
    shown = repr(name) if isinstance(name, str) else repr(str(name))
    if not isinstance(name, str) or not name:
        return "credential name is empty", ""
    if "://" in name:
        return (
            f"credential name {shown} has a URL scheme",
            "only plain Secret names are supported; drop the prefix (e.g. kubernetes://)",
        )
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        if name.count("/") == 1 and not name.startswith("/") and all(valid_credential_name(p) for p in name.split("/")):
            return (
                f"credential name {shown} refers to another namespace",
                "cross-namespace credentials (ns/name) are not supported; put the Secret in the "
                "gateway workload's namespace and use its plain name",
            )
        return (
            f"credential name {shown} is not a valid Kubernetes name (it looks like a path)",
            "use a Secret name: lower-case letters, digits, '-' and '.'",
        )
    if len(name) > 253:
        return f"credential name is {len(name)} characters long (at most 253)", ""
    return (
        f"credential name {shown} is not a valid Kubernetes name (RFC 1123 subdomain)",
        "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
    )


# ---------------------------------------------------------------------------
# resolve


class _Problem(Exception):
    """Internal: a finding about the material, raised while reading it."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def _where(file: str, line: int) -> str:
    return f"{file}:{line}" if line else file


def _keys_found(data: Mapping[str, bytes]) -> str:
    keys = sorted(data)
    if not keys:
        return "no keys at all"
    if len(keys) > 8:
        return ", ".join(keys[:8]) + f", and {len(keys) - 8} more"
    return ", ".join(keys)


def _secret_value(secret: SecretSource, key: str) -> bytes | None:
    value = secret.data.get(key)
    if value is None:
        return None
    if len(value) > MAX_MATERIAL_BYTES:
        raise _Problem(
            "EG0303",
            f"{secret.origin}: key {key!r} holds {len(value)} bytes (limit {MAX_MATERIAL_BYTES})",
        )
    return bytes(value)


def _has_value(data: Mapping[str, bytes], *keys: str) -> bool:
    return all(len(data.get(k) or b"") > 0 for k in keys)


def _secret_cert_and_key(secret: SecretSource) -> tuple[bytes, bytes, bytes | None]:
    """Certificate chain, key and OCSP staple from a Secret (Istio's ExtractCertInfo)."""
    data = secret.data
    if _has_value(data, GENERIC_CERT, GENERIC_KEY):
        return _secret_value(secret, GENERIC_CERT), _secret_value(secret, GENERIC_KEY), None  # type: ignore[return-value]
    if _has_value(data, TLS_CERT, TLS_KEY):
        staple = _secret_value(secret, TLS_OCSP) or None
        return _secret_value(secret, TLS_CERT), _secret_value(secret, TLS_KEY), staple  # type: ignore[return-value]
    for cert_key, key_key in ((GENERIC_CERT, GENERIC_KEY), (TLS_CERT, TLS_KEY)):
        if cert_key in data and key_key in data:
            empty = [k for k in (cert_key, key_key) if not data[k]]
            raise _Problem(
                "EG0301",
                f"{secret.origin} has keys {cert_key!r} and {key_key!r}, but "
                + (f"{empty[0]!r} is empty" if len(empty) == 1 else "both are empty"),
            )
    raise _Problem(
        "EG0301",
        f"{secret.origin} has no certificate and key: expected keys ({GENERIC_CERT!r} and {GENERIC_KEY!r}) "
        f"or ({TLS_CERT!r} and {TLS_KEY!r}); found: {_keys_found(data)}",
    )


def _secret_ca(secret: SecretSource) -> tuple[bytes, bytes | None]:
    """CA bundle and CRL from a Secret (Istio's ExtractRoot)."""
    data = secret.data
    if _has_value(data, GENERIC_CA):
        return _secret_value(secret, GENERIC_CA), _secret_value(secret, GENERIC_CRL) or None  # type: ignore[return-value]
    if _has_value(data, TLS_CA):
        return _secret_value(secret, TLS_CA), _secret_value(secret, TLS_CRL) or None  # type: ignore[return-value]
    for key in (GENERIC_CA, TLS_CA):
        if key in data:
            raise _Problem("EG0301", f"{secret.origin} has key {key!r}, but it is empty")
    raise _Problem(
        "EG0301",
        f"{secret.origin} has no CA certificate: expected key {GENERIC_CA!r} or {TLS_CA!r}; "
        f"found: {_keys_found(data)}",
    )


def _ca_secret_names(name: str) -> list[str]:
    if name.endswith(CA_SUFFIX) and len(name) > len(CA_SUFFIX):
        return [name, name[: -len(CA_SUFFIX)]]
    return [name + CA_SUFFIX, name]


class _CredDir:
    """Safe reads below ``DIR/<name>/``."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.entry = root / name
        self.origin = f"credentials-dir {self.entry}"

    def _root_real(self) -> str:
        return os.path.realpath(self.root)

    def exists(self) -> bool:
        """True if ``DIR/<name>`` exists (as anything); a dangling or escaping link counts."""
        return os.path.lexists(self.entry)

    def _inside(self, real: str, root_real: str) -> bool:
        return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)

    def check_entry(self) -> None:
        """The entry must be a directory that stays inside DIR."""
        root_real = self._root_real()
        real = os.path.realpath(self.entry)
        if not self._inside(real, root_real) or real == root_real:
            raise _Problem(
                "EG0308",
                f"{self.origin} is a symlink to {real}, outside {self.root}; refusing to follow it",
                "credentials must live inside --credentials-dir (symlinks within it are fine)",
            )
        if not os.path.isdir(real):
            raise _Problem("EG0308", f"{self.origin} is not a directory")

    def listing(self) -> str:
        try:
            names = sorted(os.listdir(self.entry))
        except OSError:
            return "nothing readable"
        names = [n for n in names if not n.startswith("..")]  # hide Kubernetes volume internals
        return ", ".join(names) if names else "nothing"

    def has(self, filename: str) -> bool:
        return os.path.lexists(self.entry / filename)

    def read(self, filename: str) -> bytes:
        path = self.entry / filename
        root_real = self._root_real()
        real = os.path.realpath(path)
        if not self._inside(real, root_real):
            raise _Problem(
                "EG0308",
                f"{self.origin}: {filename} is a symlink to {real}, outside {self.root}; refusing to read it",
                "credentials must live inside --credentials-dir (symlinks within it are fine)",
            )
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise _Problem("EG0301", f"{self.origin}: {filename} is a dangling symlink") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _Problem("EG0308", f"{self.origin}: {filename} changed into a symlink while reading") from None
            raise _Problem("EG0301", f"{self.origin}: cannot read {filename}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Problem("EG0308", f"{self.origin}: {filename} is not a regular file")
            if st.st_size > MAX_MATERIAL_BYTES:
                raise _Problem(
                    "EG0308", f"{self.origin}: {filename} is {st.st_size} bytes (limit {MAX_MATERIAL_BYTES})"
                )
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_MATERIAL_BYTES:  # grew while reading
                    raise _Problem("EG0308", f"{self.origin}: {filename} is larger than {MAX_MATERIAL_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as e:
            raise _Problem("EG0301", f"{self.origin}: cannot read {filename}: {e.strerror}") from None
        finally:
            os.close(fd)


def _dir_required(d: _CredDir, filename: str) -> bytes:
    if not d.has(filename):
        raise _Problem("EG0301", f"{d.origin} has no {filename}; found: {d.listing()}")
    data = d.read(filename)
    if not data:
        raise _Problem("EG0301", f"{d.origin}: {filename} is empty")
    return data


def _dir_optional(d: _CredDir, filename: str) -> bytes | None:
    if not d.has(filename):
        return None
    return d.read(filename) or None


def resolve_credential(
    name: str,
    namespace: str,
    secrets: Mapping[tuple[str, str], SecretSource],
    credentials_dir: Path | None,
    *,
    need_key: bool,
    need_ca: bool,
    ref_file: str,
    ref_line: int,
    ref_path: str,
) -> tuple[Credential | None, list[Finding]]:
    """Find the material for ``credentialName: name`` of a gateway workload in ``namespace``.

    ``secrets`` maps ``(namespace, name)`` to the input's Secrets. ``need_key``:
    a certificate chain and private key are required (a server credential);
    ``need_ca``: a CA bundle is required (MUTUAL / OPTIONAL_MUTUAL). Material not
    asked for is not looked up, so a broken ``-cacert`` Secret does not matter to
    a SIMPLE server, as in Istio.

    Returns the credential, or ``None`` and at least one error finding. Findings
    are at ``ref_file:ref_line`` with ``ref_path``. PEM is not parsed here; call
    :func:`check_credential` on the result. See the module docstring for the
    lookup order and for why Secrets win over ``credentials_dir``.
    """

    def finding(code: str, message: str, hint: str = "") -> Finding:
        return Finding(ref_file, ref_line, code, message, ref_path, "error", hint)

    if not valid_credential_name(name):
        message, hint = _name_problem(name)
        return None, [finding("EG0302", message, hint)]

    cdir = _CredDir(Path(credentials_dir), name) if credentials_dir is not None else None
    findings: list[Finding] = []
    cert_chain = private_key = ocsp = ca_cert = crl = None
    origins: list[str] = []
    first: tuple[str, int] | None = None

    def note(origin: str, file: str, line: int) -> None:
        nonlocal first
        if origin not in origins:
            origins.append(origin)
        if first is None:
            first = (file, line)

    def absent(what: str, secret_names: list[str]) -> Finding:
        looked = " or ".join(f"Secret {namespace}/{n}" for n in secret_names)
        where = f"no {looked} in the input"
        if cdir is None:
            where += " and no --credentials-dir given"
        elif not cdir.exists():
            where += f", and no {cdir.entry}"
        hint = ""
        others = sorted(ns for (ns, n) in secrets if n in secret_names and ns != namespace)
        if others:
            hint = (
                f"a Secret of that name exists in namespace {others[0]}, but credentials are read from "
                f"the gateway workload's namespace {namespace}"
            )
        return finding("EG0301", f"credential {name!r}: {what} not found: {where}", hint)

    try:
        if cdir is not None and cdir.exists():
            cdir.check_entry()
    except _Problem as p:
        # An unsafe entry is only an error if we would actually read from it.
        uses_dir = (need_key and (namespace, name) not in secrets) or (
            need_ca and not any((namespace, n) in secrets for n in _ca_secret_names(name))
        )
        if uses_dir:
            return None, [finding(p.code, p.message, p.hint)]
        cdir = None

    # Nothing anywhere: one finding rather than one per resource.
    ca_names = _ca_secret_names(name)
    anything = (namespace, name) in secrets or any((namespace, n) in secrets for n in ca_names) or (
        cdir is not None and cdir.exists()
    )
    if not anything and (need_key or need_ca):
        looked = [name] + ([n for n in ca_names if n != name] if need_ca else [])
        what = {(True, True): "certificate, key and CA", (True, False): "certificate and key"}.get(
            (need_key, need_ca), "CA certificate"
        )
        return None, [absent(what, looked)]

    # --- certificate and key
    if need_key:
        secret = secrets.get((namespace, name))
        try:
            if secret is not None:
                cert_chain, private_key, ocsp = _secret_cert_and_key(secret)
                note(secret.origin, secret.file, secret.line)
            elif cdir is not None and cdir.exists():
                cert_chain = _dir_required(cdir, DIR_CERT)
                private_key = _dir_required(cdir, DIR_KEY)
                note(cdir.origin, str(cdir.entry), 0)
            else:
                findings.append(absent("certificate and key", [name]))
        except _Problem as p:
            findings.append(finding(p.code, f"credential {name!r}: {p.message}", p.hint))

    # --- CA
    if need_ca:
        names = _ca_secret_names(name)
        secret = next((secrets[(namespace, n)] for n in names if (namespace, n) in secrets), None)
        try:
            if secret is not None:
                ca_cert, crl = _secret_ca(secret)
                note(secret.origin, secret.file, secret.line)
            elif cdir is not None and cdir.exists():
                if not cdir.has(DIR_CA):
                    raise _Problem(
                        "EG0301",
                        f"CA certificate not found: no {' or '.join(f'Secret {namespace}/{n}' for n in names)} "
                        f"in the input, and {cdir.origin} has no {DIR_CA}; found: {cdir.listing()}",
                        "MUTUAL and OPTIONAL_MUTUAL servers need the CA that validates client certificates",
                    )
                ca_cert = _dir_required(cdir, DIR_CA)
                crl = _dir_optional(cdir, DIR_CRL)
                note(cdir.origin, str(cdir.entry), 0)
            else:
                f = absent("CA certificate", names)
                findings.append(
                    Finding(
                        f.file, f.line, f.code, f.message, f.path, f.severity,
                        f.hint or "MUTUAL and OPTIONAL_MUTUAL servers need the CA that validates client certificates",
                    )
                )
        except _Problem as p:
            findings.append(finding(p.code, f"credential {name!r}: {p.message}", p.hint))

    if findings:
        return None, findings
    if first is None:  # nothing was asked for: say where it would have come from
        secret = secrets.get((namespace, name))
        if secret is not None:
            note(secret.origin, secret.file, secret.line)
        elif cdir is not None and cdir.exists():
            note(cdir.origin, str(cdir.entry), 0)
        else:
            return None, [absent("credential", [name])]
    assert first is not None
    origin = origins[0] if len(origins) == 1 else f"{origins[0]}; CA from {origins[1]}"
    return (
        Credential(
            name=name,
            cert_chain=cert_chain,
            private_key=private_key,
            ca_cert=ca_cert,
            crl=crl,
            ocsp_staple=ocsp,
            origin=origin,
            file=first[0],
            line=first[1],
        ),
        [],
    )


# ---------------------------------------------------------------------------
# PEM


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----[ \t]*\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}


@dataclass(frozen=True)
class _Block:
    label: str
    der: bytes
    text: bytes  # the block itself, BEGIN to END


def _pem_blocks(data: bytes, what: str) -> list[_Block]:
    """Split PEM text into blocks. Raises _Problem for binary data or bad base64."""
    if b"\x00" in data or (data[:1] == b"\x30" and b"-----BEGIN" not in data):
        raise _Problem(
            "EG0303",
            f"{what} is binary, not PEM (DER?)",
            "Envoy needs PEM; convert with e.g. `openssl x509 -inform der -in FILE -out FILE.pem`",
        )
    blocks = []
    for n, m in enumerate(_PEM_BLOCK.finditer(data), 1):
        label = m.group(1).decode("ascii")
        body = b"".join(line.strip() for line in m.group(2).splitlines() if b":" not in line)
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise _Problem("EG0303", f"{what}: PEM block {n} ({label}) is not valid base64") from None
        blocks.append(_Block(label, der, m.group(0)))
    if not blocks:
        raise _Problem("EG0303", f"{what} contains no PEM block (no '-----BEGIN ...-----' line)")
    return blocks


def _load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    blocks = [b for b in _pem_blocks(data, what) if b.label in ("CERTIFICATE", "X509 CERTIFICATE")]
    if not blocks:
        raise _Problem("EG0303", f"{what} contains no CERTIFICATE block")
    certs = []
    for n, b in enumerate(blocks, 1):
        try:
            certs.append(x509.load_der_x509_certificate(b.der))
        except ValueError as e:
            raise _Problem("EG0303", f"{what}: certificate {n} does not parse: {e}") from None
    return certs


def _load_key(data: bytes, what: str):
    blocks = _pem_blocks(data, what)
    if any(b.label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in b.text for b in blocks):
        raise _Problem("EG0303", f"{what} is encrypted", "Envoy needs an unencrypted private key")
    keys = [b for b in blocks if b.label.encode() in _KEY_LABELS]
    if not keys:
        labels = ", ".join(sorted({b.label for b in blocks}))
        raise _Problem("EG0303", f"{what} contains no private key (found PEM blocks: {labels})")
    if len(keys) > 1:
        raise _Problem("EG0303", f"{what} contains {len(keys)} private keys; expected one")
    try:
        return serialization.load_pem_private_key(keys[0].text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise _Problem("EG0303", f"{what} does not parse: {e}") from None


def _load_crls(data: bytes, what: str) -> list[x509.CertificateRevocationList]:
    blocks = [b for b in _pem_blocks(data, what) if b.label == "X509 CRL"]
    if not blocks:
        raise _Problem("EG0303", f"{what} contains no X509 CRL block")
    crls = []
    for n, b in enumerate(blocks, 1):
        try:
            crls.append(x509.load_der_x509_crl(b.der))
        except ValueError as e:
            raise _Problem("EG0303", f"{what}: CRL {n} does not parse: {e}") from None
    return crls


# ---------------------------------------------------------------------------
# checks


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cn(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unprintable subject)"


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _sans(cert: x509.Certificate) -> tuple[list[str], list[ipaddress._BaseAddress]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [d.lower().rstrip(".") for d in ext.get_values_for_type(x509.DNSName)], list(
        ext.get_values_for_type(x509.IPAddress)
    )


def _host_covered(host: str, dns_sans: Sequence[str], ip_sans: Sequence) -> bool:
    """Whether a Gateway server host is covered by the SANs.

    ``*`` is covered by anything. A wildcard host ``*.example.com`` is covered by
    the SAN ``*.example.com`` (and ``*`` matches nothing narrower). A plain host is
    covered by an equal SAN or by a wildcard SAN for exactly one more label.
    """
    if host == "*":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in ip_sans
    for san in dns_sans:
        if san == host:
            return True
        if san.startswith("*.") and not host.startswith("*"):
            head, _, tail = host.partition(".")
            if tail and head and tail == san[2:]:
                return True
    return False


def _normalize_host(host: str) -> str:
    # Gateway server hosts may carry a namespace: "ns/host", "./host", "*/host".
    return host.rsplit("/", 1)[-1].strip().lower().rstrip(".")


def _verify_with_api(leaf, intermediates, cas, at: datetime) -> str | None:
    """None if the chain verifies, else the reason (cryptography.x509.verification)."""
    from cryptography.x509 import verification as v

    ca_policy = v.ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, v.Criticality.AGNOSTIC, None)
    builder = (
        v.PolicyBuilder()
        .store(v.Store(cas))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=v.ExtensionPolicy.permit_all())
    )
    try:
        builder.build_client_verifier().verify(leaf, intermediates)
    except v.VerificationError as e:
        return str(e)
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _verify_by_hand(leaf, intermediates, cas) -> str | None:
    """Signature-only chain walk: leaf -> intermediates -> a certificate in the CA bundle."""
    current, pool, seen = leaf, list(intermediates), set()
    for _ in range(10):
        for ca in cas:
            if _issued_by(current, ca) or current == ca:
                return None
        step = next((c for c in pool if id(c) not in seen and _issued_by(current, c)), None)
        if step is None:
            return f"no issuer for {_cn(current)} (issuer {current.issuer.rfc4514_string()}) in the chain or the CA"
        seen.add(id(step))
        current = step
    return "chain is too long"


def _verify_chain(leaf, intermediates, cas, at: datetime) -> str | None:
    try:
        from cryptography.x509 import verification as v  # noqa: F401

        has_api = hasattr(v, "ExtensionPolicy") and hasattr(v.PolicyBuilder, "build_client_verifier")
    except ImportError:
        has_api = False
    if not _USE_VERIFICATION_API or not has_api:
        return _verify_by_hand(leaf, intermediates, cas)
    reason = _verify_with_api(leaf, intermediates, cas, at)
    if reason is None:
        return None
    by_hand = _verify_by_hand(leaf, intermediates, cas)
    return reason if by_hand is None else f"{by_hand} ({reason})"


# Tests flip this to exercise the signature-only path.
_USE_VERIFICATION_API = True


def check_credential(
    cred: Credential,
    hosts: Sequence[str],
    *,
    now: datetime,
    allow_expired: bool,
    ref_file: str,
    ref_line: int,
    ref_path: str,
) -> list[Finding]:
    """Parse and check a resolved credential for a server with ``hosts``.

    * EG0303 (error): the certificate chain, key, CA bundle, CRL or OCSP staple does not parse.
    * EG0304 (error): the private key does not belong to the leaf certificate.
    * EG0305: a certificate of the chain is expired or not yet valid at ``now``
      (error; warning with ``allow_expired``; Istio itself only logs).
    * EG0306 (warning): a host (``ns/`` prefixes are ignored) is not covered by the leaf's SANs.
    * EG0307 (warning): the chain does not verify against ``ca_cert``. A warning, because
      in Istio that CA validates *peer* (client) certificates and need not have issued
      the server's own; with a single development PKI the two agree, and a mismatch is
      worth knowing about.
    """

    def find(code: str, message: str, severity: str = "error", hint: str = "") -> Finding:
        return Finding(ref_file, ref_line, code, f"credential {cred.name!r} ({cred.origin}): {message}",
                       ref_path, severity, hint)

    now = _utc(now)
    out: list[Finding] = []
    chain: list[x509.Certificate] = []
    key = None
    cas: list[x509.Certificate] = []

    def load(fn, data, what):
        try:
            return fn(data, what)
        except _Problem as p:
            out.append(find(p.code, p.message, hint=p.hint))
            return None

    if cred.cert_chain is not None:
        chain = load(_load_certs, cred.cert_chain, "certificate chain") or []
    if cred.private_key is not None:
        key = load(_load_key, cred.private_key, "private key")
    if cred.ca_cert is not None:
        cas = load(_load_certs, cred.ca_cert, "CA certificate") or []
    if cred.crl is not None:
        load(_load_crls, cred.crl, "CRL")
    if cred.ocsp_staple is not None:
        from cryptography.x509 import ocsp

        try:
            ocsp.load_der_ocsp_response(cred.ocsp_staple)
        except ValueError as e:
            out.append(find("EG0303", f"OCSP staple (DER) does not parse: {e}"))

    if not chain:
        return out
    leaf = chain[0]

    if key is not None:
        try:
            matches = _spki(key.public_key()) == _spki(leaf.public_key())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            matches = False
        if not matches:
            out.append(
                find(
                    "EG0304",
                    f"the private key does not belong to the certificate {_cn(leaf)} (first in the chain)",
                    hint="the leaf certificate must come first in tls.crt, with the key in tls.key",
                )
            )

    severity = "warning" if allow_expired else "error"
    for n, cert in enumerate(chain):
        what = "certificate" if n == 0 else f"chain certificate {n + 1}"
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        if now > na:
            out.append(find("EG0305", f"{what} {_cn(cert)} expired at {_iso(na)}", severity,
                            "" if allow_expired else "renew it, or pass --allow-expired"))
        elif now < nb:
            out.append(find("EG0305", f"{what} {_cn(cert)} is not valid before {_iso(nb)}", severity,
                            "" if allow_expired else "check the clock, or pass --allow-expired"))

    dns_sans, ip_sans = _sans(leaf)
    for raw in hosts:
        host = _normalize_host(raw)
        if not host or _host_covered(host, dns_sans, ip_sans):
            continue
        if not dns_sans and not ip_sans:
            msg = f"certificate {_cn(leaf)} has no subjectAltName, so it covers no host ({host!r} here)"
            hint = "clients ignore the CN; add a DNS SAN"
        else:
            shown = ", ".join(dns_sans + [str(i) for i in ip_sans])
            msg = f"host {host!r} is not covered by the certificate's SANs ({shown})"
            hint = "clients will reject the certificate for this host"
        out.append(find("EG0306", msg, "warning", hint))

    if cas:
        # Expiry of the served chain is EG0305's business: verify at a time at which
        # every certificate of the chain is valid, if there is one.
        lo = max(c.not_valid_before_utc for c in chain)
        hi = min(c.not_valid_after_utc for c in chain)
        if lo <= hi:
            reason = _verify_chain(leaf, chain[1:], cas, min(max(now, lo), hi))
        else:  # no such time: check the signatures only
            reason = _verify_by_hand(leaf, chain[1:], cas)
        if reason is not None:
            out.append(
                find(
                    "EG0307",
                    f"the certificate chain does not verify against the CA bundle: {reason}",
                    "warning",
                    "the CA validates client certificates; this is expected if clients use another PKI",
                )
            )
    return out


# ---------------------------------------------------------------------------
# describe


def describe_certificate(pem: bytes, *, now: datetime | None = None) -> dict:
    """Describe the first certificate of ``pem``, for ``proxy-config secrets``.

    Keys: ``serial`` (lower-case hex without leading zeros, as istioctl prints it),
    ``not_before``/``not_after`` (ISO-8601, ``Z``), ``subject``/``issuer``
    (RFC 4514), ``sans`` (DNS names, IPs and URIs, as strings), ``valid`` (at
    ``now``, default the current time), ``is_ca``. Raises ``ValueError`` if
    ``pem`` holds no parsable certificate.
    """
    try:
        cert = _load_certs(pem, "certificate")[0]
    except _Problem as p:
        raise ValueError(p.message) from None
    at = _utc(now) if now is not None else datetime.now(timezone.utc)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [
            *san.get_values_for_type(x509.DNSName),
            *(str(i) for i in san.get_values_for_type(x509.IPAddress)),
            *san.get_values_for_type(x509.UniformResourceIdentifier),
        ]
    except x509.ExtensionNotFound:
        sans = []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    return {
        "serial": format(cert.serial_number, "x"),
        "not_before": _iso(nb),
        "not_after": _iso(na),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "valid": nb <= at <= na,
        "is_ca": is_ca,
    }

