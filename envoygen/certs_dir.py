"""Writing the development PKI directory for ``envoygen certs``: the
``--credentials-dir`` layout (``DIR/<name>/tls.crt``, ``tls.key``, ``ca.crt``),
the reused CA in ``DIR/_ca/``, the ownership marker, and the optional
Kubernetes Secrets file. Minting itself is :mod:`envoygen.certs`.

Files are only ever overwritten if this command wrote them and they are
unchanged since: ``DIR/.envoygen-certs.json`` records the sha256 of every file
written. Anything else is refused before a single byte is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .certs import (
    CA_DIR,
    DEFAULT_CA_NAME,
    MARKER,
    SECRETS_HEADER,
    Minted,
    _cert_pem,
    _first_cert,
    mint_ca,
    mint_client,
    mint_server,
)
from .errors import InputError

__all__ = ["Written", "write_credentials"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Plan:
    """Files to write below DIR (and maybe a Secrets file), checked before anything is written."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.marker_path = out / MARKER
        self.owned: dict[str, str] = {}
        self.files: dict[str, tuple[bytes, int]] = {}  # relpath -> (content, mode)
        self.extra: list[tuple[Path, bytes]] = []
        self._load_marker()

    def _load_marker(self) -> None:
        if self.marker_path.is_symlink():
            raise InputError(f"{self.marker_path} is a symlink; refusing to use it")
        if not self.marker_path.exists():
            return
        try:
            data = json.loads(self.marker_path.read_text(encoding="utf-8"))
            files = data["files"]
            if data.get("tool") != "envoygen certs" or not isinstance(files, dict):
                raise ValueError("not an envoygen certs marker")
            self.owned = {str(k): str(v) for k, v in files.items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{self.marker_path} is not a valid envoygen certs marker ({e}); remove it or use another -o") from None

    def add(self, rel: str, content: bytes, mode: int) -> None:
        self.files[rel] = (content, mode)

    def check(self, rel: str) -> None:
        path = self.out / rel
        if path.is_symlink():
            raise InputError(f"{path} is a symlink; refusing to overwrite it")
        # Directories on the way must be real directories inside DIR.
        parent = path.parent
        while parent != self.out:
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise InputError(f"{parent} is not a plain directory; refusing to write into it")
            parent = parent.parent
        if not path.exists():
            return
        if not path.is_file():
            raise InputError(f"{path} exists and is not a file; refusing to overwrite it")
        known = self.owned.get(rel)
        if known is None:
            raise InputError(
                f"{path} exists and was not written by `envoygen certs`; refusing to overwrite it "
                "(move it away, or choose another -o directory)"
            )
        if _sha256(path.read_bytes()) != known:
            raise InputError(
                f"{path} was changed since `envoygen certs` wrote it; refusing to overwrite it "
                "(delete it to regenerate)"
            )

    def check_secrets_file(self, path: Path) -> None:
        if path.is_symlink():
            raise InputError(f"{path} is a symlink; refusing to overwrite it")
        if path.exists():
            if not path.is_file():
                raise InputError(f"{path} exists and is not a file; refusing to overwrite it")
            with path.open("rb") as f:
                first = f.readline().rstrip(b"\r\n")
            if first != SECRETS_HEADER.encode():
                raise InputError(
                    f"{path} exists and was not written by `envoygen certs`; refusing to overwrite it"
                )

    def commit(self) -> list[Path]:
        for rel in self.files:
            self.check(rel)
        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        for rel, (content, mode) in self.files.items():
            path = self.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.parent.name == CA_DIR:
                os.chmod(path.parent, 0o700)
            _atomic_write(path, content, mode)
            self.owned[rel] = _sha256(content)
            written.append(path)
        marker = json.dumps({"tool": "envoygen certs", "files": dict(sorted(self.owned.items()))}, indent=2) + "\n"
        _atomic_write(self.marker_path, marker.encode(), 0o644)
        for path, content in self.extra:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, content, 0o600)
            written.append(path)
        return written


def _atomic_write(path: Path, content: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------------
# CA reuse


def _read_ca(out: Path, stem: str) -> tuple[bytes | None, bytes | None]:
    crt, key = out / CA_DIR / f"{stem}.crt", out / CA_DIR / f"{stem}.key"
    for p in (crt, key):
        if p.is_symlink():
            raise InputError(f"{p} is a symlink; refusing to use it")
    return (crt.read_bytes() if crt.is_file() else None), (key.read_bytes() if key.is_file() else None)


def _check_ca(cert_pem: bytes, key_pem: bytes | None, label: str, path: Path) -> x509.Certificate:
    try:
        cert = _first_cert(cert_pem)
    except ValueError as e:
        raise InputError(f"{path}: the existing {label} certificate does not parse: {e}") from None
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise InputError(f"{path}: the existing {label} certificate is not a CA (basicConstraints CA:TRUE)")
    if cert.not_valid_after_utc <= datetime.now(timezone.utc):
        raise InputError(f"{path}: the existing {label} certificate expired at {cert.not_valid_after_utc:%Y-%m-%d}")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: the existing {label} key does not parse: {e}") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ):
            raise InputError(f"{path}: the existing {label} key does not match its certificate")
    return cert


# ---------------------------------------------------------------------------
# credentials directory


class Written(NamedTuple):
    """What :func:`write_credentials` wrote, for the command's summary."""

    ca_subject: str  # the root CA's subject, RFC 4514
    summary: list[str]  # a line a credential: "server NAME: HOST, ..." or "client NAME: CN=CN"
    secrets: int  # Secret documents (written only with a secrets file)


def _secret_doc(name: str, namespace: str, type_: str, data: dict[str, bytes]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    }


def _ca_pair(
    plan: _Plan, out: Path, ca_name: str | None, ca_days: int, key_type: str
) -> tuple[x509.Certificate, Minted]:
    """The root CA certificate and the intermediate CA: reused from ``OUT/_ca/``, or minted into ``plan``."""
    base = ca_name or DEFAULT_CA_NAME
    root_cn, inter_cn = f"{base} Root CA", f"{base} Intermediate CA"

    root_crt, root_key = _read_ca(out, "root")
    inter_crt, inter_key = _read_ca(out, "intermediate")
    if root_crt is None and (root_key is not None or inter_crt is not None):
        raise InputError(f"{out / CA_DIR} has CA material but no root.crt; complete it or remove it")
    if root_crt is None:
        root = mint_ca(root_cn, days=ca_days, key_type=key_type)
        plan.add(f"{CA_DIR}/root.crt", root.cert, 0o644)
        plan.add(f"{CA_DIR}/root.key", root.key, 0o600)
        root_cert = _first_cert(root.cert)
    else:
        root_cert = _check_ca(root_crt, root_key, "root CA", out / CA_DIR / "root.crt")
        root = Minted(root_crt, root_key or b"")
        existing = root_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if ca_name is not None and (not existing or existing[0].value != root_cn):
            raise InputError(
                f"{out / CA_DIR / 'root.crt'} is a different CA ({root_cert.subject.rfc4514_string()}), "
                f"not {root_cn!r}; use another -o directory"
            )
    if inter_crt is None or inter_key is None:
        if inter_crt is not None or inter_key is not None:
            raise InputError(f"{out / CA_DIR} has only half of the intermediate CA (crt and key go together)")
        if not root.key:
            raise InputError(f"{out / CA_DIR} has no root.key to sign a new intermediate CA with")
        inter = mint_ca(inter_cn, issuer=root, days=ca_days, key_type=key_type)
        plan.add(f"{CA_DIR}/intermediate.crt", inter.cert, 0o644)
        plan.add(f"{CA_DIR}/intermediate.key", inter.key, 0o600)
    else:
        inter_cert = _check_ca(inter_crt, inter_key, "intermediate CA", out / CA_DIR / "intermediate.crt")
        try:
            inter_cert.verify_directly_issued_by(root_cert)
        except Exception:  # noqa: BLE001 - any failure means "not issued by this root"
            raise InputError(f"{out / CA_DIR / 'intermediate.crt'} was not issued by {out / CA_DIR / 'root.crt'}") from None
        inter = Minted(inter_crt, inter_key)
    return root_cert, inter


def write_credentials(
    out: Path,
    servers: Sequence[tuple[str, Sequence[str]]],
    clients: Sequence[tuple[str, str]],
    *,
    ca_name: str | None,
    days: int,
    ca_days: int | None,
    key_type: str,
    namespace: str,
    secrets_file: Path | None,
) -> Written:
    """Mint ``servers`` (name, hosts) and ``clients`` (name, CN) into ``out`` (the ``--credentials-dir`` layout).

    Creates, or reuses, a root and an intermediate CA in ``out/_ca/`` (named after
    ``ca_name``, valid ``ca_days``, default the larger of 3650 and ``days``), then
    writes ``out/NAME/tls.crt`` (leaf + intermediate), ``tls.key`` and ``ca.crt``
    (the root) for each credential and, with ``secrets_file``, the same as
    Kubernetes Secrets in ``namespace``. Names, hosts and the namespace are the
    caller's to validate. Raises :class:`InputError`, before writing anything, for
    files this module did not write or that changed since.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")

    plan = _Plan(out)
    root_cert, inter = _ca_pair(plan, out, ca_name, ca_days or max(3650, days), key_type)

    root_pem = _cert_pem(root_cert)
    docs: list[dict] = []
    summary: list[str] = []
    for kind, pairs in (("server", servers), ("client", clients)):
        for name, value in pairs:
            if kind == "server":
                m = mint_server(value, inter, days=days, key_type=key_type)
                summary.append(f"server {name}: {', '.join(value)}")
            else:
                m = mint_client(value, inter, days=days, key_type=key_type)
                summary.append(f"client {name}: CN={value}")
            plan.add(f"{name}/tls.crt", m.cert, 0o644)
            plan.add(f"{name}/tls.key", m.key, 0o600)
            plan.add(f"{name}/ca.crt", root_pem, 0o644)
            docs.append(_secret_doc(name, namespace, "kubernetes.io/tls", {"tls.crt": m.cert, "tls.key": m.key}))
            docs.append(_secret_doc(f"{name}-cacert", namespace, "Opaque", {"ca.crt": root_pem}))

    if secrets_file is not None:
        plan.check_secrets_file(secrets_file)
        text = SECRETS_HEADER + "\n" + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
        plan.extra.append((secrets_file, text.encode()))

    plan.commit()
    return Written(root_cert.subject.rfc4514_string(), summary, len(docs))
