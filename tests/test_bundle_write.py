"""The restore path of the atomic bundle write (``envoygen.bundle.write_atomically``).

A bundle is written into a temporary directory beside OUT; an earlier OUT is renamed
aside (``.out.old-*``), the temporary directory is renamed to OUT, and only then is the
old one deleted. When the final rename fails, the earlier bundle must be put back
exactly as it was and nothing may be left beside it.

The fault is injected deterministically, in-process: ``os.rename`` (as seen by
``envoygen.bundle``) fails only on the rename of the temporary directory into OUT.
Every other rename (OUT aside, and the restore) is the real one, and each test
asserts that the restore rename really happened, so the test exercises the restore
code and not some earlier exit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from envoygen import bundle
from envoygen.bundle import MANIFEST, manifest_for, write_atomically
from envoygen.errors import InputError

# --------------------------------------------------------------------------
# helpers


def make_tree(tag: str) -> dict[str, tuple[bytes, int]]:
    """A small bundle-shaped tree (a key 0600 in a sub-directory) with a manifest listing every file."""
    files: dict[str, tuple[bytes, int]] = {
        "envoy.yaml": (f"# bootstrap {tag}\n".encode(), 0o644),
        "Dockerfile": (f"FROM scratch # {tag}\n".encode(), 0o644),
        "sds/cred.yaml": (f"resources: [] # {tag}\n".encode(), 0o644),
        "certs/cred/tls.key": (f"key {tag}\n".encode(), 0o600),
        "certs/cred/tls.crt": (f"crt {tag}\n".encode(), 0o644),
    }
    files[MANIFEST] = (manifest_for(files, {"test": tag}), 0o644)
    return files


def snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry under ``root``: relative path → (kind, content, permission bits); ``root`` itself as ".".

    Inode numbers are left out on purpose: a restore renames the very same directory back."""
    out: dict[str, tuple[str, bytes | None, int]] = {".": ("dir", None, stat.S_IMODE(root.stat().st_mode))}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", None, stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


class RenameFault:
    """Wraps the real ``os.rename``: raises ``exc`` on the rename of the temporary directory
    (``.<out>.envoygen-*``) into ``out``; every other call goes through. Records all calls."""

    def __init__(self, out: Path, exc: BaseException) -> None:
        self.out = out
        self.exc = exc
        self.real = os.rename
        self.calls: list[tuple[Path, Path]] = []
        self.fired = 0

    def is_final(self, src: Path, dst: Path) -> bool:
        return dst == self.out and src.name.startswith(f".{self.out.name}.envoygen-")

    def __call__(self, src, dst, *a, **kw):  # noqa: ANN001, ANN204
        s, d = Path(src), Path(dst)
        self.calls.append((s, d))
        if self.is_final(s, d):
            self.fired += 1
            raise self.exc
        return self.real(src, dst, *a, **kw)

    @property
    def restored(self) -> bool:
        """The earlier OUT was renamed aside and then renamed back to OUT."""
        aside = [d for s, d in self.calls if s == self.out and d.name.startswith(f".{self.out.name}.old-")]
        return len(aside) == 1 and (aside[0], self.out) in self.calls


@pytest.fixture
def earlier(tmp_path: Path) -> tuple[Path, dict]:
    """OUT (alone in its own parent directory) holding an earlier bundle written by write_atomically."""
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    write_atomically(out, make_tree("v1"))
    before = snapshot(out)
    assert before["envoy.yaml"] == ("file", b"# bootstrap v1\n", 0o644)
    assert before["certs/cred/tls.key"][2] == 0o600
    assert sorted(os.listdir(parent)) == ["out"]
    return out, before


def assert_untouched(out: Path, before: dict) -> None:
    assert out.is_dir() and not out.is_symlink()
    assert snapshot(out) == before
    # nothing left beside OUT: no .out.envoygen-* temporary, no .out.old-* directory
    assert sorted(os.listdir(out.parent)) == [out.name], sorted(os.listdir(out.parent))


# --------------------------------------------------------------------------
# tests


def test_failed_final_rename_restores_earlier_bundle(earlier, monkeypatch):
    out, before = earlier
    fault = RenameFault(out, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    monkeypatch.setattr(bundle.os, "rename", fault)

    with pytest.raises(InputError) as ei:
        write_atomically(out, make_tree("v2"))
    monkeypatch.undo()

    assert fault.fired == 1
    assert fault.restored, fault.calls
    assert ei.value.exit_code == 1
    assert ei.value.format_message() == f"-o {out}: cannot write the bundle: {os.strerror(errno.ENOSPC)}"
    assert_untouched(out, before)
    # and the restored bundle is still recognised as ours: the next write replaces it
    write_atomically(out, make_tree("v3"))
    assert (out / "envoy.yaml").read_bytes() == b"# bootstrap v3\n"
    assert sorted(os.listdir(out.parent)) == ["out"]


def test_keyboard_interrupt_in_final_rename_restores_earlier_bundle(earlier, monkeypatch):
    out, before = earlier
    fault = RenameFault(out, KeyboardInterrupt())
    monkeypatch.setattr(bundle.os, "rename", fault)

    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, make_tree("v2"))
    monkeypatch.undo()

    assert fault.fired == 1
    assert fault.restored, fault.calls
    assert_untouched(out, before)


def test_failed_final_rename_without_earlier_bundle_leaves_nothing(tmp_path, monkeypatch):
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    for exc, expected in ((OSError(errno.EIO, os.strerror(errno.EIO)), InputError), (KeyboardInterrupt(), KeyboardInterrupt)):
        fault = RenameFault(out, exc)
        monkeypatch.setattr(bundle.os, "rename", fault)
        with pytest.raises(expected) as ei:
            write_atomically(out, make_tree("v1"))
        monkeypatch.undo()
        assert fault.fired == 1
        if expected is InputError:
            assert ei.value.format_message() == f"-o {out}: cannot write the bundle: {os.strerror(errno.EIO)}"
        assert not out.exists()
        assert os.listdir(parent) == [], os.listdir(parent)


def test_failed_rename_aside_leaves_earlier_bundle(earlier, monkeypatch):
    """The first rename (OUT aside) fails: OUT was never moved, and nothing is left beside it."""
    out, before = earlier
    real = os.rename
    calls = []

    def fail_aside(src, dst, *a, **kw):  # noqa: ANN001, ANN202
        calls.append((Path(src), Path(dst)))
        if Path(src) == out:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(bundle.os, "rename", fail_aside)
    with pytest.raises(InputError) as ei:
        write_atomically(out, make_tree("v2"))
    monkeypatch.undo()
    assert len(calls) == 1, calls
    assert ei.value.format_message() == f"-o {out}: cannot write the bundle: {os.strerror(errno.EBUSY)}"
    assert_untouched(out, before)
