"""What every step of the credentials package shares: the size limit, the
:class:`Credential` that lookup produces and the checks consume, and the internal
exception that carries a finding while material is read or parsed."""

from __future__ import annotations

from dataclasses import dataclass

#: Largest certificate, key, CA bundle or CRL accepted (Kubernetes caps a whole Secret at 1 MiB).
MAX_MATERIAL_BYTES = 1024 * 1024


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


class _Problem(Exception):
    """Internal: a finding about the material, raised while reading it."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
