"""TLS material for gateway servers: find it, read it safely, check it.

Two steps, kept apart so that the translator can decide what to do with each:

* :func:`resolve_credential` finds the bytes for one ``credentialName`` (in the
  input's Kubernetes Secrets or under ``--credentials-dir``). It reports what is
  *absent* or *unsafe* (EG0301, EG0302, EG0308) and never parses PEM.
* :func:`check_credential` parses what was found and reports what is *wrong*
  with it (EG0303..EG0307).

Every finding carries the position of the *reference* (the Gateway server that
names the credential), and its message names where the material came from.

Modules, one concern each; imports run one way (``common``; ``secrets``,
``directory`` and ``pem`` on it; ``resolve`` and ``x509check`` on those):

* :mod:`.common`: the size limit, :class:`Credential` and the internal problem;
* :mod:`.secrets`: Kubernetes Secrets, their key layouts and ``-cacert`` companions;
* :mod:`.directory`: safe reads below ``--credentials-dir``;
* :mod:`.resolve`: which source wins, name checks, :func:`resolve_credential`;
* :mod:`.pem`: PEM parsing of certificates, keys and CRLs;
* :mod:`.x509check`: :func:`check_credential` and :func:`describe_certificate`.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from .common import MAX_MATERIAL_BYTES, Credential
from .directory import DIR_CA, DIR_CERT, DIR_CRL, DIR_KEY
from .resolve import resolve_credential, valid_credential_name
from .secrets import (
    CA_SUFFIX,
    GENERIC_CA,
    GENERIC_CERT,
    GENERIC_CRL,
    GENERIC_KEY,
    TLS_CA,
    TLS_CERT,
    TLS_CRL,
    TLS_KEY,
    TLS_OCSP,
    SecretSource,
)

if TYPE_CHECKING:  # at run time, properties of _Package below import them on first use
    from .x509check import check_credential, describe_certificate

__all__ = [
    "MAX_MATERIAL_BYTES",
    "Credential",
    "SecretSource",
    "check_credential",
    "describe_certificate",
    "resolve_credential",
    "valid_credential_name",
]


class _Package(types.ModuleType):
    """The package module.  :mod:`.x509check` (and with it ``cryptography``, ~50 ms to
    import) is imported the first time one of its names is read: a gateway without TLS
    material never needs it.  ``_USE_VERIFICATION_API`` is read from and written to
    :mod:`.x509check`, the module that uses it: tests flip the flag with
    ``monkeypatch.setattr(envoygen.credentials, "_USE_VERIFICATION_API", ...)``."""

    @property
    def check_credential(self) -> Any:
        from .x509check import check_credential

        return check_credential

    @property
    def describe_certificate(self) -> Any:
        from .x509check import describe_certificate

        return describe_certificate

    @property
    def _USE_VERIFICATION_API(self) -> bool:
        from . import x509check

        return x509check._USE_VERIFICATION_API

    @_USE_VERIFICATION_API.setter
    def _USE_VERIFICATION_API(self, value: bool) -> None:
        from . import x509check

        x509check._USE_VERIFICATION_API = value


sys.modules[__name__].__class__ = _Package
