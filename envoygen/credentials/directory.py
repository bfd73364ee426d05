"""``--credentials-dir DIR``: safe reads of ``DIR/<name>/tls.crt``, ``tls.key``,
``ca.crt`` and ``ca.crl``.

Hostile input: the caller refuses a name that is not an RFC 1123 subdomain
(``../x``, ``a/b``, ``/abs``) before any filesystem access (EG0302), so ``<name>``
is always a single path component. Inside DIR, symlinks are followed only while
they stay inside DIR (Kubernetes Secret volumes are built from ``..data``
symlinks inside the volume); a symlink that leaves DIR, or an entry that is not
a regular file or is larger than 1 MiB, is EG0308. Files are opened with
``O_NOFOLLOW | O_NONBLOCK``, so a FIFO or a last-moment symlink swap cannot hang
or redirect the read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .common import MAX_MATERIAL_BYTES, _Problem

# --credentials-dir file names.
DIR_CERT, DIR_KEY, DIR_CA, DIR_CRL = "tls.crt", "tls.key", "ca.crt", "ca.crl"


class _CredDir:
    """Safe reads below ``DIR/<name>/``."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.entry = root / name
        self.origin = f"credentials-dir {self.entry}"

    def _root_real(self) -> str:
        return os.path.realpath(self.root)

    def exists(self) -> bool:
        """True if ``DIR/<name>`` exists (as anything); a dangling or escaping link counts."""
        return os.path.lexists(self.entry)

    def _inside(self, real: str, root_real: str) -> bool:
        return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)

    def check_entry(self) -> None:
        """The entry must be a directory that stays inside DIR."""
        root_real = self._root_real()
        real = os.path.realpath(self.entry)
        if not self._inside(real, root_real) or real == root_real:
            raise _Problem(
                "EG0308",
                f"{self.origin} is a symlink to {real}, outside {self.root}; refusing to follow it",
                "credentials must live inside --credentials-dir (symlinks within it are fine)",
            )
        if not os.path.isdir(real):
            raise _Problem("EG0308", f"{self.origin} is not a directory")

    def listing(self) -> str:
        try:
            names = sorted(os.listdir(self.entry))
        except OSError:
            return "nothing readable"
        names = [n for n in names if not n.startswith("..")]  # hide Kubernetes volume internals
        return ", ".join(names) if names else "nothing"

    def has(self, filename: str) -> bool:
        return os.path.lexists(self.entry / filename)

    def read(self, filename: str) -> bytes:
        path = self.entry / filename
        root_real = self._root_real()
        real = os.path.realpath(path)
        if not self._inside(real, root_real):
            raise _Problem(
                "EG0308",
                f"{self.origin}: {filename} is a symlink to {real}, outside {self.root}; refusing to read it",
                "credentials must live inside --credentials-dir (symlinks within it are fine)",
            )
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise _Problem("EG0301", f"{self.origin}: {filename} is a dangling symlink") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _Problem("EG0308", f"{self.origin}: {filename} changed into a symlink while reading") from None
            raise _Problem("EG0301", f"{self.origin}: cannot read {filename}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Problem("EG0308", f"{self.origin}: {filename} is not a regular file")
            if st.st_size > MAX_MATERIAL_BYTES:
                raise _Problem(
                    "EG0308", f"{self.origin}: {filename} is {st.st_size} bytes (limit {MAX_MATERIAL_BYTES})"
                )
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_MATERIAL_BYTES:  # grew while reading
                    raise _Problem("EG0308", f"{self.origin}: {filename} is larger than {MAX_MATERIAL_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as e:
            raise _Problem("EG0301", f"{self.origin}: cannot read {filename}: {e.strerror}") from None
        finally:
            os.close(fd)


def _dir_required(d: _CredDir, filename: str) -> bytes:
    if not d.has(filename):
        raise _Problem("EG0301", f"{d.origin} has no {filename}; found: {d.listing()}")
    data = d.read(filename)
    if not data:
        raise _Problem("EG0301", f"{d.origin}: {filename} is empty")
    return data


def _dir_optional(d: _CredDir, filename: str) -> bytes | None:
    if not d.has(filename):
        return None
    return d.read(filename) or None
