"""Finding the bytes for one ``credentialName``: Secrets in the input, else ``--credentials-dir``.

:func:`resolve_credential` reports what is *absent* or *unsafe* (EG0301, EG0302,
EG0308) and never parses PEM. Secrets are looked up in the **gateway workload's
namespace**, never in the Gateway resource's namespace; the key layouts inside
a Secret are in :mod:`.secrets`, the safe reads below DIR in :mod:`.directory`.

``--credentials-dir DIR`` layout: ``DIR/<name>/tls.crt``, ``tls.key``, and
optionally ``ca.crt`` and ``ca.crl``.

Precedence between the input and the directory: **a Secret in the input wins
over the directory**, decided per resource, as Istio has two SDS resources per
credential (``kubernetes://<name>`` and ``kubernetes://<name>-cacert``):

* certificate and key come from the Secret ``<name>`` if the input has it,
  otherwise from ``DIR/<name>/tls.crt`` and ``tls.key``;
* the CA comes from the Secret ``<name>-cacert``, else the Secret ``<name>``,
  else ``DIR/<name>/ca.crt``.

The decision is made on the Secret's *existence*, not its contents: a Secret
with the wrong keys is an error, never silently replaced by files. Explicit
input is what the user most recently wrote about this gateway, while a
credentials directory tends to be a shared, longer-lived store.

A name that is not an RFC 1123 subdomain (``../x``, ``a/b``, ``/abs``) is
refused before any filesystem access (EG0302).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .. import names
from ..diagnostics import Finding
from .common import Credential, _Problem
from .directory import DIR_CA, DIR_CERT, DIR_CRL, DIR_KEY, _CredDir, _dir_optional, _dir_required
from .secrets import SecretSource, _ca_secret_names, _secret_ca, _secret_cert_and_key

_DNS1123_SUBDOMAIN = re.compile(names.DNS1123_SUBDOMAIN_PATTERN)

_MUTUAL_CA_HINT = "MUTUAL and OPTIONAL_MUTUAL servers need the CA that validates client certificates"


def valid_credential_name(name: str) -> bool:
    """True if ``name`` is a Kubernetes object name (RFC 1123 subdomain, at most 253 characters).

    Such a name has no ``/``, no ``..``, no leading ``.`` or ``-``, no upper case,
    no whitespace and no NUL, so it is always a single, harmless path component.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= names.DNS1123_SUBDOMAIN_MAX
        and name.isascii()
        and _DNS1123_SUBDOMAIN.fullmatch(name) is not None  # fullmatch: no trailing "\n" either
    )


def _name_problem(name: str) -> tuple[str, str]:
    """Message and hint for an invalid name."""
    shown = repr(name) if isinstance(name, str) else repr(str(name))
    if not isinstance(name, str) or not name:
        return "credential name is empty", ""
    if "://" in name:
        return (
            f"credential name {shown} has a URL scheme",
            "only plain Secret names are supported; drop the prefix (e.g. kubernetes://)",
        )
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        if name.count("/") == 1 and not name.startswith("/") and all(valid_credential_name(p) for p in name.split("/")):
            return (
                f"credential name {shown} refers to another namespace",
                "cross-namespace credentials (ns/name) are not supported; put the Secret in the "
                "gateway workload's namespace and use its plain name",
            )
        return (
            f"credential name {shown} is not a valid Kubernetes name (it looks like a path)",
            "use a Secret name: lower-case letters, digits, '-' and '.'",
        )
    if len(name) > 253:
        return f"credential name is {len(name)} characters long (at most 253)", ""
    return (
        f"credential name {shown} is not a valid Kubernetes name (RFC 1123 subdomain)",
        "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
    )


class _Lookup:
    """One :func:`resolve_credential` call: where it looks, where the material came from, what is wrong."""

    def __init__(
        self,
        name: str,
        namespace: str,
        secrets: Mapping[tuple[str, str], SecretSource],
        cdir: _CredDir | None,
        ref: tuple[str, int, str],
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.secrets = secrets
        self.cdir = cdir
        self.ref = ref  # file, line and path of the reference, where every finding goes
        self.findings: list[Finding] = []
        self.origins: list[str] = []
        self.first: tuple[str, int] | None = None

    def finding(self, code: str, message: str, hint: str = "") -> Finding:
        file, line, path = self.ref
        return Finding(file, line, code, message, path, "error", hint)

    def problem(self, p: _Problem) -> Finding:
        return self.finding(p.code, f"credential {self.name!r}: {p.message}", p.hint)

    def note(self, origin: str, file: str, line: int) -> None:
        if origin not in self.origins:
            self.origins.append(origin)
        if self.first is None:
            self.first = (file, line)

    def note_dir(self) -> None:
        assert self.cdir is not None
        self.note(self.cdir.origin, str(self.cdir.entry), 0)

    def dir_present(self) -> bool:
        return self.cdir is not None and self.cdir.exists()

    def has_secret(self, secret_name: str) -> bool:
        return (self.namespace, secret_name) in self.secrets

    def absent(self, what: str, secret_names: list[str], fallback_hint: str = "") -> Finding:
        looked = " or ".join(f"Secret {self.namespace}/{n}" for n in secret_names)
        where = f"no {looked} in the input"
        if self.cdir is None:
            where += " and no --credentials-dir given"
        elif not self.cdir.exists():
            where += f", and no {self.cdir.entry}"
        hint = fallback_hint
        others = sorted(ns for (ns, n) in self.secrets if n in secret_names and ns != self.namespace)
        if others:
            hint = (
                f"a Secret of that name exists in namespace {others[0]}, but credentials are read from "
                f"the gateway workload's namespace {self.namespace}"
            )
        return self.finding("EG0301", f"credential {self.name!r}: {what} not found: {where}", hint)

    def unsafe_dir(self, need_key: bool, need_ca: bool) -> list[Finding]:
        """An unsafe ``DIR/<name>`` entry; only an error if we would actually read from it."""
        try:
            if self.dir_present():
                self.cdir.check_entry()  # type: ignore[union-attr]
        except _Problem as p:
            uses_dir = (need_key and not self.has_secret(self.name)) or (
                need_ca and not any(self.has_secret(n) for n in _ca_secret_names(self.name))
            )
            if uses_dir:
                return [self.finding(p.code, p.message, p.hint)]
            self.cdir = None
        return []

    def nothing_anywhere(self, need_key: bool, need_ca: bool) -> list[Finding]:
        """Nothing anywhere: one finding rather than one per resource."""
        ca_names = _ca_secret_names(self.name)
        anything = self.has_secret(self.name) or any(self.has_secret(n) for n in ca_names) or self.dir_present()
        if anything or not (need_key or need_ca):
            return []
        looked = [self.name] + ([n for n in ca_names if n != self.name] if need_ca else [])
        what = {(True, True): "certificate, key and CA", (True, False): "certificate and key"}.get(
            (need_key, need_ca), "CA certificate"
        )
        return [self.absent(what, looked)]

    def cert_and_key(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """Certificate chain, key and OCSP staple, or ``None``\\ s and a finding."""
        secret = self.secrets.get((self.namespace, self.name))
        try:
            if secret is not None:
                cert_chain, private_key, ocsp = _secret_cert_and_key(secret)
                self.note(secret.origin, secret.file, secret.line)
                return cert_chain, private_key, ocsp
            if self.dir_present():
                cert_chain = _dir_required(self.cdir, DIR_CERT)  # type: ignore[arg-type]
                private_key = _dir_required(self.cdir, DIR_KEY)  # type: ignore[arg-type]
                self.note_dir()
                return cert_chain, private_key, None
            self.findings.append(self.absent("certificate and key", [self.name]))
        except _Problem as p:
            self.findings.append(self.problem(p))
        return None, None, None

    def ca(self) -> tuple[bytes | None, bytes | None]:
        """CA bundle and CRL, or ``None``\\ s and a finding."""
        names = _ca_secret_names(self.name)
        secret = next((self.secrets[(self.namespace, n)] for n in names if self.has_secret(n)), None)
        try:
            if secret is not None:
                ca_cert, crl = _secret_ca(secret)
                self.note(secret.origin, secret.file, secret.line)
                return ca_cert, crl
            if self.dir_present():
                return self.dir_ca(names)
            self.findings.append(self.absent("CA certificate", names, _MUTUAL_CA_HINT))
        except _Problem as p:
            self.findings.append(self.problem(p))
        return None, None

    def dir_ca(self, names: list[str]) -> tuple[bytes, bytes | None]:
        cdir = self.cdir
        assert cdir is not None
        if not cdir.has(DIR_CA):
            raise _Problem(
                "EG0301",
                f"CA certificate not found: no {' or '.join(f'Secret {self.namespace}/{n}' for n in names)} "
                f"in the input, and {cdir.origin} has no {DIR_CA}; found: {cdir.listing()}",
                _MUTUAL_CA_HINT,
            )
        ca_cert = _dir_required(cdir, DIR_CA)
        crl = _dir_optional(cdir, DIR_CRL)
        self.note_dir()
        return ca_cert, crl

    def note_unrequested(self) -> bool:
        """Nothing was asked for: note where it would have come from; False if from nowhere."""
        secret = self.secrets.get((self.namespace, self.name))
        if secret is not None:
            self.note(secret.origin, secret.file, secret.line)
        elif self.dir_present():
            self.note_dir()
        else:
            return False
        return True

    def origin(self) -> str:
        return self.origins[0] if len(self.origins) == 1 else f"{self.origins[0]}; CA from {self.origins[1]}"


def resolve_credential(
    name: str,
    namespace: str,
    secrets: Mapping[tuple[str, str], SecretSource],
    credentials_dir: Path | None,
    *,
    need_key: bool,
    need_ca: bool,
    ref_file: str,
    ref_line: int,
    ref_path: str,
) -> tuple[Credential | None, list[Finding]]:
    """Find the material for ``credentialName: name`` of a gateway workload in ``namespace``.

    ``secrets`` maps ``(namespace, name)`` to the input's Secrets. ``need_key``:
    a certificate chain and private key are required (a server credential);
    ``need_ca``: a CA bundle is required (MUTUAL / OPTIONAL_MUTUAL). Material not
    asked for is not looked up, so a broken ``-cacert`` Secret does not matter to
    a SIMPLE server, as in Istio.

    Returns the credential, or ``None`` and at least one error finding. Findings
    are at ``ref_file:ref_line`` with ``ref_path``. PEM is not parsed here; call
    :func:`check_credential` on the result. See the module docstrings of
    :mod:`.resolve` and :mod:`.secrets` for the lookup order and for why Secrets
    win over ``credentials_dir``.
    """
    if not valid_credential_name(name):
        message, hint = _name_problem(name)
        return None, [Finding(ref_file, ref_line, "EG0302", message, ref_path, "error", hint)]

    cdir = _CredDir(Path(credentials_dir), name) if credentials_dir is not None else None
    lookup = _Lookup(name, namespace, secrets, cdir, (ref_file, ref_line, ref_path))
    stop = lookup.unsafe_dir(need_key, need_ca) or lookup.nothing_anywhere(need_key, need_ca)
    if stop:
        return None, stop

    cert_chain, private_key, ocsp = lookup.cert_and_key() if need_key else (None, None, None)
    ca_cert, crl = lookup.ca() if need_ca else (None, None)
    if lookup.findings:
        return None, lookup.findings
    if lookup.first is None and not lookup.note_unrequested():
        return None, [lookup.absent("credential", [name])]
    assert lookup.first is not None
    return (
        Credential(
            name=name,
            cert_chain=cert_chain,
            private_key=private_key,
            ca_cert=ca_cert,
            crl=crl,
            ocsp_staple=ocsp,
            origin=lookup.origin(),
            file=lookup.first[0],
            line=lookup.first[1],
        ),
        [],
    )
