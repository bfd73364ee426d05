"""TLS material a workload's configuration names, read from disk and checked.

Every read of certificate, key, CA or CRL bytes happens here: Kubernetes
Secrets in the input, ``--credentials-dir``, and files named by path in a
Gateway server or a DestinationRule. Each answer is parsed and checked
(EG0301-EG0308) before the translator sees it, and every problem becomes a
finding at the field that named the material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from .. import credentials
from ..credentials import Credential, SecretSource, resolve_credential
from ..diagnostics import Findings
from ..model import Resources

MAX_MATERIAL_FILE = 1024 * 1024


@dataclass(frozen=True)
class MaterialOptions:
    credentials_dir: Path | None = None
    allow_expired: bool = False
    now: datetime | None = None  # the clock certificates are checked against (tests pin it)
    jwks_files: tuple[tuple[str, str], ...] = ()  # --jwks URI=FILE
    jwks_fetch: bool = True  # fetch a jwksUri no --jwks file covers (off: --no-jwks-fetch)
    mesh_identity: Path | None = None  # --mesh-identity DIR: cert-chain.pem, key.pem, root-cert.pem


@dataclass(frozen=True)
class Ref:
    """Where a credential is named: file, line and field path."""

    file: str
    line: int
    path: str


@dataclass
class Material:
    resources: Resources
    namespace: str  # the workload's: where credentialName Secrets are looked up
    options: MaterialOptions
    findings: Findings
    _sources: dict[tuple[str, str], SecretSource] | None = field(default=None, repr=False)
    _mesh: dict[str, Credential | None] = field(default_factory=dict, repr=False)

    @property
    def now(self) -> datetime:
        return self.options.now or datetime.now(timezone.utc)

    def _secret_sources(self) -> dict[tuple[str, str], SecretSource]:
        if self._sources is None:
            data = self.resources.secret_data
            self._sources = {(s.namespace, s.name): SecretSource(s.name, s.namespace, data.get((s.namespace, s.name), {}),
                                                                 s.file, s.doc.line)
                             for s in self.resources.secrets}
        return self._sources

    def named(self, name: str, ref: Ref, *, need_key: bool, need_ca: bool, hosts: Sequence[str] = ()) -> Credential | None:
        """``credentialName: name``: found (Secret or --credentials-dir), parsed and checked."""
        cred, problems = resolve_credential(name, self.namespace, self._secret_sources(), self.options.credentials_dir,
                                            need_key=need_key, need_ca=need_ca,
                                            ref_file=ref.file, ref_line=ref.line, ref_path=ref.path)
        for f in problems:
            self.findings.add(f)
        if cred is None:
            return None
        self.check(cred, ref, hosts)
        return cred

    def check(self, cred: Credential, ref: Ref, hosts: Sequence[str] = ()) -> None:
        # credentials.check_credential imports cryptography on first use
        for f in credentials.check_credential(cred, hosts, now=self.now, allow_expired=self.options.allow_expired,
                                              ref_file=ref.file, ref_line=ref.line, ref_path=ref.path):
            self.findings.add(f)

    def file(self, value: str | None, ref: Ref, who: str) -> bytes | None:
        """A certificate, key, CA or CRL named by file path (read at build time, at most 1 MiB)."""
        if not value:
            return None
        try:
            p = Path(value)
            if p.stat().st_size > MAX_MATERIAL_FILE:
                raise OSError("larger than 1 MiB")
            return p.read_bytes()
        except OSError as exc:
            self.findings.error(ref.file, ref.line, "EG0301", f"{who}{ref.path.rsplit('.', 1)[-1]} {value!r} cannot be read: "
                                f"{getattr(exc, 'strerror', None) or exc}", ref.path,
                                "paths are read on the machine that runs envoygen")
            return None

    def mesh_identity(self, ref: Ref) -> Credential | None:
        """The workload certificate, key and root certificate of ``--mesh-identity`` (ISTIO_MUTUAL), checked."""
        from .. import names

        d = self.options.mesh_identity
        if d is None:  # reported at every rule that needs it (the scope rule may demote some)
            self.findings.error(ref.file, ref.line, "EG0301", "tls mode ISTIO_MUTUAL needs the mesh identity: pass "
                                f"--mesh-identity DIR with Istio's file-mounted {', '.join(names.MESH_FILES)} "
                                "(the workload certificate chain, its key, and the mesh root certificate)", ref.path)
            return None
        if "identity" in self._mesh:
            return self._mesh["identity"]
        cred = None
        data = [self.file(str(d / n), Ref(ref.file, ref.line, f"--mesh-identity {n}"), "") for n in names.MESH_FILES]
        if all(x is not None for x in data):
            cred = Credential(name=names.MESH_CREDENTIAL, cert_chain=data[0], private_key=data[1], ca_cert=data[2],
                              crl=None, ocsp_staple=None, origin="files", file=ref.file, line=ref.line)
            self.check(cred, ref)
        self._mesh["identity"] = cred
        return cred
