"""DestinationRule ``tls`` → UpstreamTlsContext (Istio's cluster_tls.go).

SIMPLE and MUTUAL originate TLS.  The CA is ``caCertificates`` or the
credential's CA, else the OS trust bundle (``system`` in Istio).  Without an
explicit ``sni`` Istio sets ``auto_sni``; without SANs and without
``insecureSkipVerify`` also ``auto_san_validation``.  Material named by file
path is read at build time and shipped in the bundle through SDS, like server
credentials, so it rotates the same way.
"""

from __future__ import annotations

from .. import ir, names
from ..credentials import Credential
from ..model.networking import ClientTLS
from ..resolve.material import Ref
from .context import Context
from .secrets import UPSTREAM_SAN_TYPES, register_ca, register_cert, san_matchers

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def _read(ctx: Context, file: str, line: int, path: str, field: str, value: str | None) -> bytes | None:
    return ctx.view.material.file(value, Ref(file, line, f"{path}.{field}"), "tls.")


def _istio_mutual(ctx: Context, tls: ClientTLS, http2: bool, where: tuple[str, int, str], sni: str) -> ir.UpstreamTls | None:
    """buildIstioMutualTLS: the mesh certificate (SDS ``default``), verified against ``ROOTCA``, SNI
    ``outbound_.<port>_.<subset>_.<host>``, ALPN with Istio's peer-exchange protocol first."""
    file, line, path = where
    cred = ctx.view.material.mesh_identity(Ref(file, line, f"{path}.mode"))
    if cred is None:
        return None
    certificate = register_cert(ctx, names.MESH_CREDENTIAL, cred, names.MESH_CERT_SDS)
    validation = register_ca(ctx, names.MESH_CREDENTIAL, cred, names.MESH_ROOT_SDS)
    sans = tuple(tls.subject_alt_names)
    return ir.UpstreamTls(sni=tls.sni or sni, auto_sni=False, auto_san_validation=False, certificate=certificate,
                          validation=validation, system_ca=False, subject_alt_names=sans,
                          san_matchers=san_matchers(sans, UPSTREAM_SAN_TYPES),
                          alpn=("istio-peer-exchange", "h2") if http2 else ("istio-peer-exchange", "istio"))


def upstream_tls(ctx: Context, tls: ClientTLS | None, http2: bool, where: tuple[str, int, str],
                 mesh_sni: str = "") -> ir.UpstreamTls | None:
    if tls is None or tls.mode == "DISABLE":
        return None
    if tls.mode == "ISTIO_MUTUAL":
        return _istio_mutual(ctx, tls, http2, where, mesh_sni)
    file, line, path = where
    mutual = tls.mode == "MUTUAL"
    certificate = validation = None
    skip = bool(tls.insecure_skip_verify)
    if tls.credential_name:
        cred = ctx.view.material.named(tls.credential_name, Ref(file, line, f"{path}.credentialName"),
                                       need_key=mutual, need_ca=False)
        if cred is None:
            return None
        if mutual:
            certificate = register_cert(ctx, tls.credential_name, cred)
        if cred.ca_cert and not skip:
            validation = register_ca(ctx, tls.credential_name, cred)
    else:
        cert = _read(ctx, file, line, path, "clientCertificate", tls.client_certificate)
        key = _read(ctx, file, line, path, "privateKey", tls.private_key)
        ca = _read(ctx, file, line, path, "caCertificates", tls.ca_certificates)
        crl = _read(ctx, file, line, path, "caCrl", tls.ca_crl)
        if mutual and (cert is None or key is None):
            if not tls.client_certificate or not tls.private_key:
                ctx.findings.error(file, line, "EG0103", "tls mode MUTUAL needs credentialName, or clientCertificate and privateKey",
                                   path)
            return None
        name = names.upstream_file_credential(cert, key, ca)
        cred = Credential(name=name, cert_chain=cert, private_key=key, ca_cert=ca, crl=crl, ocsp_staple=None,
                          origin="files", file=file, line=line)
        if cert is not None:
            ctx.view.material.check(cred, Ref(file, line, path))
        if mutual:
            certificate = register_cert(ctx, name, cred)
        if ca is not None and not skip:
            validation = register_ca(ctx, name, cred)
    sans = tuple(tls.subject_alt_names)
    return ir.UpstreamTls(
        sni=tls.sni,
        auto_sni=not tls.sni,
        auto_san_validation=not tls.sni and not sans and not skip,  # only with auto_sni (setAutoSniAndAutoSanValidation)
        certificate=certificate,
        validation=validation,
        system_ca=validation is None and not skip,
        subject_alt_names=sans,
        san_matchers=san_matchers(sans, UPSTREAM_SAN_TYPES),
        alpn=("h2",) if http2 else (),
    )
