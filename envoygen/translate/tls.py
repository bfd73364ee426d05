"""Server TLS settings → DownstreamTlsContext with SDS files
(Istio's listener.go BuildListenerTLSContext and credentials/kube/secrets.go).

Each credential becomes SDS secrets ``kubernetes://<name>`` (certificate and
key) and ``kubernetes://<name>-cacert`` (CA, CRL), each read by Envoy from a
file under ``sds/`` that points at ``certs/<name>/``, a watched directory, so
replacing the files rotates them without a restart.  The file-path mode
(``serverCertificate``/``privateKey``/``caCertificates``) reads those files at
build time and ships them the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ir, names
from ..credentials import Credential, valid_credential_name
from ..resolve.material import Ref
from .context import Context
from .secrets import DOWNSTREAM_SAN_TYPES, register_ca, register_cert, san_matchers

if TYPE_CHECKING:
    from .gateway import BoundServer

# pkg/config/security ValidCipherSuites (OpenSSL names Envoy/BoringSSL accept)
VALID_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
)
ALPN_HTTPS = ("h2", "http/1.1")


def _read_file_material(ctx: Context, bs: "BoundServer", field: str, path: str | None) -> bytes | None:
    ref = Ref(bs.gateway.file, bs.line("tls", field), bs.path("tls", field))
    return ctx.view.material.file(path, ref, f"Gateway {bs.gw_key}: tls.")


def _file_credential(ctx: Context, bs: "BoundServer", mutual: bool) -> tuple[str, Credential] | None:
    tls = bs.server.tls
    assert tls is not None
    if not tls.server_certificate or not tls.private_key:
        ctx.findings.error(bs.gateway.file, bs.line("tls"), "EG0103",
                           f"Gateway {bs.gw_key}: tls mode {tls.mode} needs credentialName, or serverCertificate and privateKey",
                           bs.path("tls"))
        return None
    cert = _read_file_material(ctx, bs, "serverCertificate", tls.server_certificate)
    key = _read_file_material(ctx, bs, "privateKey", tls.private_key)
    ca = _read_file_material(ctx, bs, "caCertificates", tls.ca_certificates)
    crl = _read_file_material(ctx, bs, "caCrl", tls.ca_crl)
    if cert is None or key is None or (tls.ca_certificates and ca is None) or (tls.ca_crl and crl is None):
        return None
    name = names.file_credential(cert, key)
    cred = Credential(name=name, cert_chain=cert, private_key=key, ca_cert=ca, crl=crl, ocsp_staple=None,
                      origin=f"files {tls.server_certificate}, {tls.private_key}", file=bs.gateway.file, line=bs.line("tls"))
    return name, cred


_OTHER_PREFIXES = ("kubernetes-gateway://", "configmap://", "sds://", "builtin://", names.FILE_CERT_PREFIX,
                   names.FILE_ROOT_PREFIX)


def _credential_name(ctx: Context, bs: "BoundServer", raw: str, field: str, index: int | None) -> str | None:
    """ToResourceName/ParseResourceName: ``kubernetes://name`` is the bare name in the workload's
    namespace; other providers (and ``kubernetes://ns/name``) are valid Istio envoygen cannot serve."""
    name = raw
    if name.startswith(names.SDS_PREFIX):
        name = name[len(names.SDS_PREFIX):]
        if "/" in name:
            _refuse(ctx, bs, raw, field, index, "cross-namespace credentials (kubernetes://<ns>/<name>) are not supported; "
                    "put the Secret in the gateway workload's namespace")
            return None
    elif name.startswith(_OTHER_PREFIXES):
        _refuse(ctx, bs, raw, field, index, "only Kubernetes Secrets and --credentials-dir provide credentials")
        return None
    return name


def _refuse(ctx: Context, bs: "BoundServer", raw: str, field: str, index: int | None, why: str) -> None:
    path = bs.path("tls", field) + (f"[{index}]" if index is not None else "")
    ctx.findings.error(bs.gateway.file, bs.line("tls", field), "EG0104",
                       f"Gateway {bs.gw_key}: credential {raw!r} is not supported: {why}", path)


def _named_credentials(ctx: Context, bs: "BoundServer", mutual: bool) -> tuple[list[ir.SdsRef], ir.SdsRef | None] | None:
    """credentialName(s) and caCertCredentialName → (certificates, validation); None after an error."""
    tls = bs.server.tls
    assert tls is not None
    hosts = [h for _, h in bs.hosts]
    field = "credentialNames" if tls.credential_names else "credentialName"
    cred_names: list[str] = []
    for i, raw in enumerate(tls.credential_names or [tls.credential_name or ""]):
        name = _credential_name(ctx, bs, raw, field, i if tls.credential_names else None)
        if name is None:
            return None
        cred_names.append(name)
    certs: list[ir.SdsRef] = []
    validation: ir.SdsRef | None = None
    ok = True
    for i, name in enumerate(cred_names):
        ref = Ref(bs.gateway.file, bs.line("tls", field), bs.path("tls", field) + (f"[{i}]" if tls.credential_names else ""))
        ca_here = mutual and i == 0 and not tls.ca_cert_credential_name
        cred = ctx.view.material.named(name, ref, need_key=True, need_ca=ca_here, hosts=hosts)
        if cred is None:
            ok = False
            continue
        certs.append(register_cert(ctx, name, cred))
        if ca_here:
            validation = register_ca(ctx, name, cred)
    if mutual and tls.ca_cert_credential_name:
        ca_name = _credential_name(ctx, bs, tls.ca_cert_credential_name, "caCertCredentialName", None)
        if ca_name is None:
            return None
        ref = Ref(bs.gateway.file, bs.line("tls", "caCertCredentialName"), bs.path("tls", "caCertCredentialName"))
        cred = ctx.view.material.named(ca_name, ref, need_key=False, need_ca=True)
        if cred is None:
            return None
        validation = register_ca(ctx, ca_name, cred)
    return (certs, validation) if ok else None


def _path_credentials(ctx: Context, bs: "BoundServer", mutual: bool) -> tuple[list[ir.SdsRef], ir.SdsRef | None] | None:
    """serverCertificate/privateKey/caCertificates named by file path, with Istio's SDS names for them."""
    tls = bs.server.tls
    assert tls is not None
    got = _file_credential(ctx, bs, mutual)
    if got is None:
        return None
    name, cred = got
    if mutual and not cred.ca_cert:
        ctx.findings.error(bs.gateway.file, bs.line("tls"), "EG0301",
                           f"Gateway {bs.gw_key}: tls mode {tls.mode} needs caCertificates", bs.path("tls", "caCertificates"))
        return None
    ctx.view.material.check(cred, Ref(bs.gateway.file, bs.line("tls"), bs.path("tls")), [h for _, h in bs.hosts])
    # Istio's names for file-mounted certificates (pkg/security SdsCertificateConfig)
    certs = [register_cert(ctx, name, cred, names.file_cert(tls.server_certificate or "", tls.private_key or ""))]
    validation = register_ca(ctx, name, cred, names.file_root(tls.ca_certificates or "")) if mutual else None
    return certs, validation


def _mesh_credentials(ctx: Context, bs: "BoundServer") -> tuple[list[ir.SdsRef], ir.SdsRef | None] | None:
    """ISTIO_MUTUAL: the mesh certificate (SDS ``default``), clients verified against ``ROOTCA``."""
    cred = ctx.view.material.mesh_identity(Ref(bs.gateway.file, bs.line("tls", "mode"), bs.path("tls", "mode")))
    if cred is None:
        return None
    return ([register_cert(ctx, names.MESH_CREDENTIAL, cred, names.MESH_CERT_SDS)],
            register_ca(ctx, names.MESH_CREDENTIAL, cred, names.MESH_ROOT_SDS))


def downstream_tls(ctx: Context, bs: "BoundServer") -> ir.DownstreamTls | None:
    tls = bs.server.tls
    if tls is None:
        ctx.findings.error(bs.gateway.file, bs.line("port"), "EG0106",
                           f"Gateway {bs.gw_key}: server {bs.server.port.name} ({bs.server.port.protocol}) needs a tls block",
                           bs.path("tls"))
        return None
    mode = tls.mode
    mutual = mode != "SIMPLE"
    if mode == "ISTIO_MUTUAL":
        got = _mesh_credentials(ctx, bs)
    elif mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        ctx.findings.error(bs.gateway.file, bs.line("tls", "mode"), "EG0104",
                           f"Gateway {bs.gw_key}: tls.mode {mode} is not supported on an edge gateway (mesh-only)",
                           bs.path("tls", "mode"))
        return None
    elif tls.credential_names or tls.credential_name:
        got = _named_credentials(ctx, bs, mutual)
    else:
        got = _path_credentials(ctx, bs, mutual)
    if got is None:
        return None
    certs, validation = got
    ciphers = []
    for i, c in enumerate(tls.cipher_suites):
        if c not in VALID_CIPHERS:
            ctx.findings.warning(bs.gateway.file, bs.line("tls", "cipherSuites", i), "EG0106",
                                 f"Gateway {bs.gw_key}: cipher suite {c!r} is not one Istio accepts; dropped as Istio does",
                                 bs.path("tls", "cipherSuites", i))
        elif c not in ciphers:
            ciphers.append(c)
    return ir.DownstreamTls(
        certificates=tuple(certs),
        validation=validation if mutual else None,
        require_client_certificate=mode in ("MUTUAL", "ISTIO_MUTUAL"),
        subject_alt_names=tuple(tls.subject_alt_names) if mutual else (),
        san_matchers=san_matchers(tls.subject_alt_names, DOWNSTREAM_SAN_TYPES) if mutual else (),
        spki=tuple(tls.verify_certificate_spki) if mutual else (),
        hashes=tuple(tls.verify_certificate_hash) if mutual else (),
        min_version=None if tls.min_protocol_version == "TLS_AUTO" else tls.min_protocol_version,
        max_version=None if tls.max_protocol_version == "TLS_AUTO" else tls.max_protocol_version,
        cipher_suites=tuple(ciphers),
        ecdh_curves=tuple(tls.ecdh_curves),
        alpn=ALPN_HTTPS,
    )


__all__ = ["downstream_tls", "valid_credential_name"]
