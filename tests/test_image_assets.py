"""The base image's package data (``envoygen/assets/``), without Docker.

``envoygen-init.c`` (the base image's PID 1) and ``base.Dockerfile`` (its
recipe) are files of the package, read with importlib.resources. Here: they are
found as package data, the C source compiles with this machine's ``cc`` and the
program behaves as the images use it (probe, exit status, SIGTERM with and
without a drain, against a fake admin endpoint), the recipe has the expected
instructions, and a built wheel carries both and loads them from itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest

from envoygen import assets, base_image, image

REPO = Path(__file__).resolve().parent.parent
ASSET_NAMES = ("envoygen-init.c", "base.Dockerfile")


# ---------------------------------------------------------------------------
# Package data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ASSET_NAMES)
def test_asset_is_package_data(name: str) -> None:
    res = resources.files("envoygen.assets").joinpath(name)
    assert res.is_file()
    assert assets.read_text(name).encode() == res.read_bytes()


def test_loaded_sources_are_the_asset_files() -> None:
    here = resources.files("envoygen.assets")
    assert image.INIT_C_SOURCE.encode() == here.joinpath(assets.INIT_C_NAME).read_bytes()
    assert image.BASE_DOCKERFILE.encode() == here.joinpath(assets.BASE_DOCKERFILE_NAME).read_bytes()
    assert "int main(int argc, char **argv)" in image.INIT_C_SOURCE
    # The recipe digest covers both, so that editing either rebuilds the base image.
    assert base_image.BASE_DOCKERFILE is image.BASE_DOCKERFILE
    assert base_image.INIT_C_SOURCE is image.INIT_C_SOURCE


# ---------------------------------------------------------------------------
# base.Dockerfile
# ---------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments and blank lines
    dropped, backslash continuations joined; a line that is not an
    instruction fails."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, args = line.partition(" ")
        assert word.isalpha() and word.isupper(), f"not a Dockerfile instruction: {raw!r}"
        out.append((word, args.strip()))
    assert not pending, "a continuation line ends the file"
    return out


def test_dockerfile_asset_instructions() -> None:
    ins = dockerfile_instructions(image.BASE_DOCKERFILE)
    assert [w for w, _ in ins] == ["FROM", "COPY", "COPY", "COPY", "ENV", "USER", "ENTRYPOINT", "CMD"]
    args = dict(ins[:1] + ins[4:])
    assert args["FROM"] == "scratch"
    assert args["USER"] == f"{image.ENVOY_UID}:{image.ENVOY_UID}" == "101:101"
    assert json.loads(args["ENTRYPOINT"]) == [image.INIT_PATH]
    assert json.loads(args["CMD"]) == ["-c", "/etc/envoy/envoy.yaml"]
    # The build context prepare_base_context lays out, and where it lands.
    assert [a for w, a in ins if w == "COPY"] == [
        "rootfs/ /",
        "bin/ /usr/local/bin/",
        f"init/ {os.path.dirname(image.INIT_PATH)}/",
    ]
    assert os.path.dirname(image.ENVOY_PATH) in args["ENV"]


def test_dockerfile_parser_rejects_garbage() -> None:
    with pytest.raises(AssertionError):
        dockerfile_instructions("FROM scratch\nthis is not a dockerfile\n")


# ---------------------------------------------------------------------------
# envoygen-init, compiled with the host's cc
# ---------------------------------------------------------------------------


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc"):
        if cc and shutil.which(cc):
            return cc
    return None


@pytest.fixture(scope="module")
def init_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """envoygen-init compiled by ``image.compile_init`` (as the base image gets it)."""
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler")
    dest = tmp_path_factory.mktemp("init") / "envoygen-init"
    if not image.compile_init(dest, cc=cc):
        src = dest.with_suffix(".c")
        src.write_text(image.INIT_C_SOURCE)
        done = subprocess.run([cc, "-static", "-Os", "-o", str(dest), str(src)], capture_output=True, text=True)
        pytest.fail(f"compile_init failed with {cc}:\n{done.stderr}")
    return dest


def test_init_compiles_to_a_static_executable(init_bin: Path) -> None:
    head = init_bin.read_bytes()[:4]
    assert head == b"\x7fELF"
    assert os.access(init_bin, os.X_OK)
    if shutil.which("ldd"):  # static: ldd finds nothing to load
        out = subprocess.run(["ldd", str(init_bin)], capture_output=True, text=True)
        assert "=>" not in out.stdout


def test_init_runs_envoy_with_its_arguments_and_returns_its_status(init_bin: Path, tmp_path: Path) -> None:
    seen = tmp_path / "args"
    done = subprocess.run(
        [str(init_bin), "-c", f'printf "%s|" "$0" "$@" > {seen}; exit 7', "arg0", "two words"],
        env={**os.environ, "ENVOYGEN_ENVOY": "/bin/sh"}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 7, done.stderr
    assert seen.read_text() == "arg0|two words|"


class _Admin:
    """A fake Envoy admin endpoint (and readiness port) on 127.0.0.1."""

    def __init__(self, stats: str = "", status: int = 200) -> None:
        self.requests: list[tuple[str, str]] = []
        self.stats = stats
        self.status = status
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                admin.requests.append((self.command, self.path))
                body = admin.stats.encode() if self.path.startswith("/stats") else b"OK\n"
                self.send_response(admin.status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin() -> Iterator[_Admin]:
    a = _Admin()
    yield a
    a.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_init_probe(init_bin: Path, admin: _Admin) -> None:
    ok = subprocess.run([str(init_bin), "probe", str(admin.port)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert admin.requests == [("GET", "/healthz/ready")]
    admin.status = 503
    down = subprocess.run([str(init_bin), "probe", str(admin.port), "/other"], capture_output=True, text=True,
                          timeout=30)
    assert down.returncode == 1
    assert admin.requests[-1] == ("GET", "/other")
    assert "not ready (503)" in down.stderr
    gone = subprocess.run([str(init_bin), "probe"], env={**os.environ, "ENVOYGEN_READINESS_PORT": str(_free_port())},
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and "no answer" in gone.stderr


def _run_and_terminate(init_bin: Path, tmp_path: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """Start envoygen-init over a sleeping shell standing in for Envoy, SIGTERM
    it once the child runs; (exit status, stderr, seconds from SIGTERM to exit)."""
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [str(init_bin), "-c", f": > {started}; exec sleep 30"],
        env={**os.environ, "ENVOYGEN_ENVOY": "/bin/sh", **env},
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the child never started"
            time.sleep(0.02)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        return proc.returncode, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_init_sigterm_without_drain_stops_envoy(init_bin: Path, tmp_path: Path) -> None:
    code, err, took = _run_and_terminate(init_bin, tmp_path, {"ENVOYGEN_DRAIN_SECONDS": "0"})
    assert code == 128 + signal.SIGTERM, err
    assert "no drain" in err and took < 5


def test_init_sigterm_without_admin_stops_envoy(init_bin: Path, tmp_path: Path) -> None:
    code, err, _ = _run_and_terminate(init_bin, tmp_path, {"ENVOYGEN_ADMIN_PORT": str(_free_port())})
    assert code == 128 + signal.SIGTERM, err
    assert "did not answer" in err and "without draining" in err


@pytest.mark.parametrize(("own", "drained"), [(0, True), (2, False)])
def test_init_sigterm_drains_through_the_admin_endpoint(
    init_bin: Path, tmp_path: Path, admin: _Admin, own: int, drained: bool,
) -> None:
    # Only the listeners' own totals count: not the admin listener, not per-worker copies.
    admin.stats = (
        "listener.admin.downstream_cx_active: 5\n"
        "listener.0.0.0.0_8080.worker_0.downstream_cx_active: 3\n"
        f"listener.0.0.0.0_8080.downstream_cx_active: {own}\n"
        "http.admin.downstream_cx_active: 4\n"
    )
    code, err, took = _run_and_terminate(
        init_bin, tmp_path, {"ENVOYGEN_ADMIN_PORT": str(admin.port), "ENVOYGEN_DRAIN_SECONDS": "1"},
    )
    assert code == 128 + signal.SIGTERM, err
    assert admin.requests[:3] == [
        ("POST", "/healthcheck/fail"),
        ("POST", "/drain_listeners"),
        ("GET", "/stats?filter=downstream_cx_active$"),
    ]
    if drained:
        assert "drained after" in err and took < 1
    else:
        assert "drain time of 1 s is over with 2 connection(s) open" in err and took >= 1


# ---------------------------------------------------------------------------
# The wheel
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy (setuptools writes build/ and
    egg-info beside the sources) without build isolation (no index needed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("envoygen", "templates"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    out = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (whl,) = out.glob("envoygen-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_the_assets(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "envoygen/assets/__init__.py" in names
        for name in ASSET_NAMES:
            assert z.read(f"envoygen/assets/{name}") == (REPO / "envoygen/assets" / name).read_bytes()


@pytest.mark.slow
def test_wheel_loads_the_assets_from_itself(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    # -S: no .pth, so the editable install's finder cannot answer for envoygen.
    code = (
        "import json, envoygen.image as i, envoygen.base_image as b; "
        "print(json.dumps([b.__file__, b.base_dockerfile(), i.BASE_DOCKERFILE, i.INIT_C_SOURCE]))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *deps])},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    where, recipe, dockerfile, init_c = json.loads(done.stdout)
    assert Path(where).is_relative_to(site)
    assert recipe == dockerfile == image.BASE_DOCKERFILE
    assert init_c == image.INIT_C_SOURCE
