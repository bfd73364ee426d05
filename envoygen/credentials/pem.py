"""PEM parsing: certificates, private keys and CRLs, with EG0303 for what does not parse."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Callable, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .common import _Problem

T = TypeVar("T")

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


def _load_der_blocks(data: bytes, what: str, labels: tuple[str, ...], noun: str, load: Callable[[bytes], T]) -> list[T]:
    """Every PEM block of ``labels`` in ``data``, each parsed from DER by ``load``."""
    blocks = [b for b in _pem_blocks(data, what) if b.label in labels]
    if not blocks:
        raise _Problem("EG0303", f"{what} contains no {labels[0]} block")
    out = []
    for n, b in enumerate(blocks, 1):
        try:
            out.append(load(b.der))
        except ValueError as e:
            raise _Problem("EG0303", f"{what}: {noun} {n} does not parse: {e}") from None
    return out


def _load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    return _load_der_blocks(data, what, ("CERTIFICATE", "X509 CERTIFICATE"), "certificate", x509.load_der_x509_certificate)


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
    return _load_der_blocks(data, what, ("X509 CRL",), "CRL", x509.load_der_x509_crl)
