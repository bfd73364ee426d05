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

from . import x509check as _x509check
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
    """The package module, with ``_USE_VERIFICATION_API`` read from and written to
    :mod:`.x509check`, the module that uses it: tests flip the flag with
    ``monkeypatch.setattr(envoygen.credentials, "_USE_VERIFICATION_API", ...)``."""

    @property
    def _USE_VERIFICATION_API(self) -> bool:
        return _x509check._USE_VERIFICATION_API

    @_USE_VERIFICATION_API.setter
    def _USE_VERIFICATION_API(self, value: bool) -> None:
        _x509check._USE_VERIFICATION_API = value


sys.modules[__name__].__class__ = _Package
