"""Kubernetes Secrets: where the certificate, key and CA sit inside one Secret.

Key layouts, as in Istio's ``pilot/pkg/credentials/kube/secrets.go`` (see
istio-semantics.md section 3.3). The Secret ``type`` is not checked.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .common import MAX_MATERIAL_BYTES, _Problem

CA_SUFFIX = "-cacert"

# Secret keys, as in Istio.
GENERIC_CERT, GENERIC_KEY, GENERIC_CA, GENERIC_CRL = "cert", "key", "cacert", "crl"
TLS_CERT, TLS_KEY, TLS_OCSP, TLS_CA, TLS_CRL = "tls.crt", "tls.key", "tls.ocsp-staple", "ca.crt", "ca.crl"


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
