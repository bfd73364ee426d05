"""The bundle: its file layout, file modes and manifest, written atomically.

``bundle_files`` lays one workload's rendered files out (``envoy.yaml`` or
``envoy.json``, ``sds/``, ``certs/`` with keys 0600, ``Dockerfile``,
``manifest.json``).  Everything is written into a temporary directory beside OUT and renamed into
place only when complete.  OUT must be absent, empty, or an earlier envoygen
output (recognised by its manifest, every file of which it lists); anything
else is refused, so a user's files are never overwritten or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import __version__, ir
from .errors import InputError
from .render import ENVOY_VERSION, Renderer

GENERATOR = "envoygen"
MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(files: dict[str, tuple[bytes, int]], meta: dict[str, Any]) -> bytes:
    digests = {path: sha256(content) for path, (content, _) in sorted(files.items())}
    digest = sha256("".join(f"{p}\0{d}\n" for p, d in digests.items()).encode())
    doc = {"generator": GENERATOR, **meta, "files": digests, "digest": digest}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def bootstrap_name(bootstrap_format: str) -> str:
    return "envoy.json" if bootstrap_format == "json" else "envoy.yaml"


def bundle_files(
    renderer: Renderer, b: ir.Bootstrap, install_dir: str, bootstrap_format: str, meta: dict[str, Any],
) -> dict[str, tuple[bytes, int]]:
    """Relative path → (content, mode) of one workload's bundle, manifest included.

    ``meta``: what the manifest records besides the files (workload, ports, inputs)."""
    install_dir = install_dir.rstrip("/") or "/"
    name = bootstrap_name(bootstrap_format)
    files: dict[str, tuple[bytes, int]] = {name: (renderer.bootstrap(b, install_dir, bootstrap_format).encode(), 0o644)}
    for s in b.secrets:
        files[s.sds_file] = (renderer.sds(s, install_dir).encode(), 0o644)
        for fname, content in s.files:
            files[f"{s.directory}/{fname}"] = (content, 0o600 if ir.is_private_key_file(fname) else 0o644)
    files["Dockerfile"] = (renderer.dockerfile(b, install_dir, name).encode(), 0o644)
    head = {"version": __version__, "envoy_version": ENVOY_VERSION, "bootstrap": name, "install_dir": install_dir}
    files[MANIFEST] = (manifest_for(files, {**head, **meta}), 0o644)
    return files


def several_bundles(bundles: dict[str, dict[str, tuple[bytes, int]]]) -> dict[str, tuple[bytes, int]]:
    """One tree holding a bundle per workload under ``<workload>/``, and a top manifest naming them."""
    tree: dict[str, tuple[bytes, int]] = {}
    for name, files in bundles.items():
        for rel, v in files.items():
            tree[f"{name}/{rel}"] = v
    top = {"generator": GENERATOR, "version": __version__, "bundles": sorted(bundles)}
    tree[MANIFEST] = ((json.dumps(top, indent=2, sort_keys=True) + "\n").encode(), 0o644)
    return tree


def _is_our_output(out: Path) -> tuple[bool, str]:
    """Is ``out`` an earlier envoygen output whose every file the manifests list?"""
    man = out / MANIFEST
    try:
        doc = json.loads(man.read_text())
    except (OSError, ValueError):
        return False, f"{out} is not empty and has no envoygen {MANIFEST}"
    if not isinstance(doc, dict) or doc.get("generator") != GENERATOR:
        return False, f"{out}/{MANIFEST} was not written by envoygen"
    known: set[str] = {MANIFEST}
    for rel in doc.get("files", {}):
        known.add(rel)
    for sub in doc.get("bundles", []):
        ok, why = _is_our_output(out / sub)
        if not ok:
            return False, why
        for p in (out / sub).rglob("*"):
            known.add(str(p.relative_to(out)))
        known.add(sub)
    for p in out.rglob("*"):
        rel = str(p.relative_to(out))
        if p.is_dir() and not p.is_symlink():
            if any(k.startswith(rel + "/") for k in known) or rel in known:
                continue
            return False, f"{out} holds a directory envoygen did not write: {rel}"
        if rel not in known:
            return False, f"{out} holds a file envoygen did not write: {rel}"
    return True, ""


def check_out(out: Path) -> None:
    """Refuse an OUT that is neither absent, empty, nor an earlier envoygen output."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"-o {out}: exists and is not a directory; refusing to replace it")
    if not out.exists() or not any(out.iterdir()):
        return
    ok, why = _is_our_output(out)
    if not ok:
        raise InputError(f"-o {out}: {why}; refusing to overwrite it (choose an empty or new directory)")


def _write_tree(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for rel, (content, mode) in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(path, mode)


def write_atomically(out: Path, tree: dict[str, tuple[bytes, int]]) -> None:
    """Write ``tree`` (relative path → content, mode) as the whole of ``out``."""
    check_out(out)
    parent = out.resolve().parent if out.exists() else out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.envoygen-", dir=parent))
    except OSError as exc:
        raise InputError(f"-o {out}: cannot create a directory beside it: {exc.strerror or exc}") from None
    old: Path | None = None
    try:
        _write_tree(tmp, tree)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
    except OSError as exc:
        if old is not None and not out.exists():
            os.rename(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"-o {out}: cannot write the bundle: {exc.strerror or exc}") from None
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
