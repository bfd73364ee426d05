"""The Docker engine: connecting to it, streaming a build, pulling.

Shared by :mod:`envoygen.base_image` and :mod:`envoygen.image`. Every engine
failure becomes :class:`~envoygen.errors.EnvironmentProblem` (exit 3) with a
message that says what to do; no traceback reaches the terminal.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from envoygen.errors import EnvironmentProblem

Progress = Callable[[str], None]

_API_TIMEOUT_S = 600  # builds and saves stream for a long time
_CONNECT_TIMEOUT_S = 15
_LOG_TAIL = 25

# ---------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------


def connect():
    """A Docker SDK client for the engine of the environment (``DOCKER_HOST`` or
    the default socket), or :class:`EnvironmentProblem` when none answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise EnvironmentProblem(f"the Docker SDK for Python is not installed ({exc}); pip install docker") from None
    try:
        client = docker.from_env(timeout=_CONNECT_TIMEOUT_S)
        client.ping()
    except DockerException as exc:
        raise EnvironmentProblem(_unreachable_message(exc)) from None
    except Exception as exc:  # requests/urllib3 errors that escape the SDK
        raise EnvironmentProblem(_unreachable_message(exc)) from None
    client.api.timeout = _API_TIMEOUT_S
    return client


def _unreachable_message(exc: BaseException) -> str:
    where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    reason = one_line(str(exc)) or type(exc).__name__
    return (
        f"cannot reach a Docker engine at {where}: {reason}. "
        "`envoygen build` needs a running Docker engine: start Docker (or dockerd), "
        "or set DOCKER_HOST to one that runs. `envoygen render -o OUT` writes the same "
        "bundle without Docker (OUT/Dockerfile builds it later with `docker build OUT`)."
    )


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (runs of whitespace made one space), cut at ``limit``."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# Build, pull
# ---------------------------------------------------------------------------


def build(client, *, path: Path, tag: str, buildargs: dict[str, str], labels: dict[str, str], progress: Progress) -> str:
    """``docker build`` of the context ``path`` as ``tag``, its log passed to
    ``progress``; the image id, or :class:`EnvironmentProblem` with the log's
    last lines (and the failed build's dangling layers removed)."""
    from docker.errors import DockerException

    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    image_id: str | None = None
    error: str | None = None
    last_step: str | None = None  # the legacy builder's " ---> <id>" of the last finished step
    try:
        stream = client.api.build(
            path=str(path),
            tag=tag,
            buildargs=buildargs,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            for line in _chunk_lines(chunk):
                tail.append(line)
                progress(line)
                step = _STEP_RE.match(line)
                if step:
                    last_step = step.group(1)
            if "error" in chunk:
                error = one_line(str(chunk.get("error")), 1000)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except DockerException as exc:
        error = one_line(str(exc), 1000)
    except Exception as exc:  # connection dropped mid-stream, context unreadable, ...
        error = f"{type(exc).__name__}: {one_line(str(exc), 1000)}"
    if error is not None:
        remove_dangling(client, last_step)
        log = "\n".join(f"  {line}" for line in tail)
        raise EnvironmentProblem(f"docker build of {tag} failed: {error}\nlast lines of the build log:\n{log}")
    if image_id is None:
        try:
            image_id = client.images.get(tag).id
        except Exception as exc:
            raise EnvironmentProblem(f"docker build of {tag} reported no image: {one_line(str(exc))}") from None
    return image_id


_STEP_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


def remove_dangling(client, image_ref: str | None) -> None:
    """Remove ``image_ref`` (and so its untagged parents) if no tag names it:
    the last finished step of a failed build, or a replaced base image.
    Images still in use (by a container, or as another image's parent) stay:
    Docker refuses, and that is fine."""
    if not image_ref:
        return
    try:
        img = client.images.get(image_ref)
        if not img.tags:
            client.images.remove(img.id, noprune=False)
    except Exception:
        pass


def _chunk_lines(chunk: dict[str, Any]) -> Iterable[str]:
    text = chunk.get("stream") or chunk.get("status") or ""
    if chunk.get("error"):
        text = f"{text}\nerror: {chunk['error']}"
    for line in str(text).splitlines():
        line = line.rstrip()
        if line.strip():
            yield line


def pull(client, ref: str, progress: Progress) -> str | None:
    """Pull ``ref``; None on success, else the reason in one line."""
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(ref)
    if not tag and "@" not in ref:
        tag = "latest"
    last_status = None
    try:
        for chunk in client.api.pull(repo, tag=tag or None, stream=True, decode=True):
            if "error" in chunk:
                return one_line(str(chunk["error"]))
            status = chunk.get("status")
            if status and status != last_status and not chunk.get("progressDetail"):
                progress(f"  {status}")
                last_status = status
        client.images.get(ref)
    except Exception as exc:
        return one_line(getattr(exc, "explanation", None) or str(exc))
    return None


def short_id(image_id: str) -> str:
    """``sha256:0123456789abcdef...`` -> ``0123456789ab``, as ``docker images`` shows it."""
    return image_id.split(":", 1)[-1][:12]
