"""DestinationRule ``tls`` → UpstreamTlsContext (Istio's cluster_tls.go).

SIMPLE and MUTUAL originate TLS.  The CA is ``caCertificates`` or the
credential's CA, else the OS trust bundle (``system`` in Istio).  Without an
explicit ``sni`` Istio sets ``auto_sni``; without SANs and without
``insecureSkipVerify`` also ``auto_san_validation``.  Material named by file
path is read at build time and shipped in the bundle through SDS, like server
credentials, so it rotates the same way.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from .. import ir
from ..credentials import Credential, check_credential, resolve_credential
from ..model.networking import ClientTLS
from .context import Context
from .tls import _register_ca, _register_cert, _secret_sources, read_material

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def _read(ctx: Context, file: str, line: int, path: str, field: str, value: str | None) -> bytes | None:
    return read_material(ctx, file, line, f"{path}.{field}", "tls.", value)


def upstream_tls(ctx: Context, tls: ClientTLS | None, http2: bool, where: tuple[str, int, str]) -> ir.UpstreamTls | None:
    if tls is None or tls.mode == "DISABLE":
        return None
    file, line, path = where
    now = ctx.options.now or datetime.now(timezone.utc)
    mutual = tls.mode == "MUTUAL"
    certificate = validation = None
    skip = bool(tls.insecure_skip_verify)
    if tls.credential_name:
        cred, problems = resolve_credential(tls.credential_name, ctx.workload.namespace, _secret_sources(ctx),
                                            ctx.options.credentials_dir, need_key=mutual, need_ca=False,
                                            ref_file=file, ref_line=line, ref_path=f"{path}.credentialName")
        for f in problems:
            ctx.findings.add(f)
        if cred is None:
            return None
        for f in check_credential(cred, [], now=now, allow_expired=ctx.options.allow_expired,
                                  ref_file=file, ref_line=line, ref_path=f"{path}.credentialName"):
            ctx.findings.add(f)
        if mutual:
            certificate = _register_cert(ctx, tls.credential_name, cred)
        if cred.ca_cert and not skip:
            validation = _register_ca(ctx, tls.credential_name, cred)
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
        digest = hashlib.sha256((cert or b"") + b"\0" + (key or b"") + b"\0" + (ca or b"")).hexdigest()[:12]
        name = f"upstream-{digest}"
        cred = Credential(name=name, cert_chain=cert, private_key=key, ca_cert=ca, crl=crl, ocsp_staple=None,
                          origin="files", file=file, line=line)
        if cert is not None:
            for f in check_credential(cred, [], now=now, allow_expired=ctx.options.allow_expired,
                                      ref_file=file, ref_line=line, ref_path=path):
                ctx.findings.add(f)
        if mutual:
            certificate = _register_cert(ctx, name, cred)
        if ca is not None and not skip:
            validation = _register_ca(ctx, name, cred)
    sans = tuple(tls.subject_alt_names)
    return ir.UpstreamTls(
        sni=tls.sni,
        auto_sni=not tls.sni,
        auto_san_validation=not tls.sni and not sans and not skip,  # only with auto_sni (setAutoSniAndAutoSanValidation)
        certificate=certificate,
        validation=validation,
        system_ca=validation is None and not skip,
        subject_alt_names=sans,
        alpn=("h2",) if http2 else (),
    )
