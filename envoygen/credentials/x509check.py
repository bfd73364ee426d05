"""X.509 checks of resolved material: parse it, match key and certificate, validity,
SAN coverage of the server's hosts, chain verification; and ``describe_certificate``.

:func:`check_credential` reports what is *wrong* with the material
(EG0303..EG0307); what is absent or unsafe was reported by lookup.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..diagnostics import Finding
from .common import Credential, _Problem
from .pem import _load_certs, _load_crls, _load_key

# Tests flip this to exercise the signature-only path. They set it on the package
# (``envoygen.credentials._USE_VERIFICATION_API``), which forwards it here.
_USE_VERIFICATION_API = True

#: ``find(code, message, severity="error", hint="")``: a finding at the credential's reference.
_Find = Callable[..., Finding]


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


def _parse_material(cred: Credential, find: _Find, out: list[Finding]):
    """Chain, key and CA bundle of ``cred`` (CRL and OCSP staple are only parsed); EG0303 into ``out``."""

    def load(fn, data, what):
        try:
            return fn(data, what)
        except _Problem as p:
            out.append(find(p.code, p.message, hint=p.hint))
            return None

    chain: list[x509.Certificate] = []
    key = None
    cas: list[x509.Certificate] = []
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
    return chain, key, cas


def _key_findings(key, leaf: x509.Certificate, find: _Find) -> list[Finding]:
    """EG0304: the private key does not belong to the leaf."""
    try:
        matches = _spki(key.public_key()) == _spki(leaf.public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        matches = False
    if matches:
        return []
    return [
        find(
            "EG0304",
            f"the private key does not belong to the certificate {_cn(leaf)} (first in the chain)",
            hint="the leaf certificate must come first in tls.crt, with the key in tls.key",
        )
    ]


def _validity_findings(
    chain: list[x509.Certificate], now: datetime, allow_expired: bool, find: _Find
) -> list[Finding]:
    """EG0305: a certificate of the chain is expired or not yet valid at ``now``."""
    out = []
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
    return out


def _san_findings(leaf: x509.Certificate, hosts: Sequence[str], find: _Find) -> list[Finding]:
    """EG0306: a host is not covered by the leaf's SANs."""
    out = []
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
    return out


def _chain_findings(
    chain: list[x509.Certificate], cas: list[x509.Certificate], now: datetime, find: _Find
) -> list[Finding]:
    """EG0307: the chain does not verify against the CA bundle."""
    leaf = chain[0]
    # Expiry of the served chain is EG0305's business: verify at a time at which
    # every certificate of the chain is valid, if there is one.
    lo = max(c.not_valid_before_utc for c in chain)
    hi = min(c.not_valid_after_utc for c in chain)
    if lo <= hi:
        reason = _verify_chain(leaf, chain[1:], cas, min(max(now, lo), hi))
    else:  # no such time: check the signatures only
        reason = _verify_by_hand(leaf, chain[1:], cas)
    if reason is None:
        return []
    return [
        find(
            "EG0307",
            f"the certificate chain does not verify against the CA bundle: {reason}",
            "warning",
            "the CA validates client certificates; this is expected if clients use another PKI",
        )
    ]


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
    chain, key, cas = _parse_material(cred, find, out)
    if not chain:
        return out
    leaf = chain[0]
    if key is not None:
        out += _key_findings(key, leaf, find)
    out += _validity_findings(chain, now, allow_expired, find)
    out += _san_findings(leaf, hosts, find)
    if cas:
        out += _chain_findings(chain, cas, now, find)
    return out


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
