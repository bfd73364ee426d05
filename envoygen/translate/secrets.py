"""Credentials → IR secrets: one SDS resource per certificate and per CA, each
with the files it names (shared by server TLS and DestinationRule TLS)."""

from __future__ import annotations

from .. import ir, names
from ..credentials import Credential
from .context import Context


# Which SAN types a subjectAltNames entry is matched against, on each side
DOWNSTREAM_SAN_TYPES = ("DNS", "URI", "IP_ADDRESS", "EMAIL")  # client certificates at a Gateway (MUTUAL)
UPSTREAM_SAN_TYPES = ("DNS", "URI")  # backend certificates (DestinationRule tls)


def san_matchers(sans: tuple[str, ...] | list[str], types: tuple[str, ...]) -> tuple[ir.SanMatcher, ...]:
    return tuple(ir.SanMatcher(t, san) for san in sans for t in types)  # type: ignore[arg-type]


def register_cert(ctx: Context, cred_name: str, cred: Credential, resource: str | None = None) -> ir.SdsRef:
    """``resource``: the SDS name when it is not kubernetes://<cred_name> (file-mounted material)."""
    name = resource or names.sds(cred_name)
    files: list[tuple[str, bytes]] = [("tls.crt", cred.cert_chain or b""), ("tls.key", cred.private_key or b"")]
    if cred.ocsp_staple:
        files.append(("tls.ocsp-staple", cred.ocsp_staple))
    ctx.secrets.setdefault(name, ir.Secret(name, names.sds_file(cred_name), names.cert_dir(cred_name), "tls_certificate",
                                           tuple(files), cred_name))
    return ir.SdsRef(name, names.sds_file(cred_name))


def register_ca(ctx: Context, cred_name: str, cred: Credential, resource: str | None = None) -> ir.SdsRef:
    name = resource or names.sds_ca(cred_name)
    files: list[tuple[str, bytes]] = [("ca.crt", cred.ca_cert or b"")]
    if cred.crl:
        files.append(("ca.crl", cred.crl))
    ctx.secrets.setdefault(name, ir.Secret(name, names.sds_ca_file(cred_name), names.cert_dir(cred_name),
                                           "validation_context", tuple(files), cred_name))
    return ir.SdsRef(name, names.sds_ca_file(cred_name))
