"""envoygen/image.py against a real Docker engine (and the parts that need none).

Tests marked ``docker`` skip when no engine answers, except with CI=true, where
they fail (.ci/docker.sh starts one). They reach servers on 127.0.0.1 or on
Docker networks they create, nothing else.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_fixtures import (  # noqa: E402
    ADMIN_PORT,
    BACKEND_PORT,
    HTTP_PORT,
    HTTPS_PORT,
    INSTALL_DIR,
    READINESS_PORT,
    REPO,
    STATS_PORT,
    TEST_REPO,
    backend_bootstrap,
    base_image,  # noqa: F401 - fixture
    docker_client,  # noqa: F401 - fixture
    http_get,
    make_network,
    no_response,
    peer_certificate,
    reaper,  # noqa: F401 - fixture
    render_dockerfile,
    self_signed,
    start_container,
    unique,
    wait_ready,
    wait_until,
    write_bundle,
    write_cert_dir,
)

from envoygen import image  # noqa: E402
from envoygen.errors import EXIT_ENVIRONMENT, EnvironmentProblem  # noqa: E402

docker = pytest.mark.docker


class Lines(list):
    """A ``progress`` callback that keeps what it is told."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def gateway_tag(reaper) -> str:  # noqa: ANN001
    return reaper.image(f"{TEST_REPO}/{unique('gw')}:test")


# ---------------------------------------------------------------------------
# Without an engine
# ---------------------------------------------------------------------------


def test_embedded_base_recipe_is_the_top_level_dockerfile() -> None:
    assert (REPO / "Dockerfile").read_text() == image.BASE_DOCKERFILE
    assert image.base_dockerfile() == image.BASE_DOCKERFILE


def test_dockerfile_template_renders_the_image_contract() -> None:
    text = render_dockerfile(install_dir="/opt/gw/", ports=[8080, 15021, 15090], admin_port=15100,
                             readiness_port=15121)
    lines = text.splitlines()
    assert "ARG BASE_IMAGE=envoygen/envoy-base:1.40.0" in lines
    assert "FROM ${BASE_IMAGE}" in lines
    assert 'COPY --chown=101:101 [".", "/opt/gw/"]' in lines
    assert "USER 101:101" in lines
    assert "EXPOSE 8080 15021 15090" in lines
    assert "ENVOYGEN_ADMIN_PORT=15100 \\" in text
    assert "ENVOYGEN_READINESS_PORT=15121 \\" in text
    entry = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert json.loads(entry[len("ENTRYPOINT "):]) == [
        "/usr/local/lib/envoygen/envoygen-init", "-c", "/opt/gw/envoy.yaml", "--disable-hot-restart",
        # as Istio's pilot-agent runs the gateway: 1 s access-log flush, warning level, quiet misc
        "--file-flush-interval-msec", "1000", "--log-level", "warning", "--component-log-level", "misc:error",
    ]
    # the image's own probe is its HEALTHCHECK (no shell, no curl in it)
    hc = text[text.index("HEALTHCHECK "):].split("\n")
    assert hc[0].startswith("HEALTHCHECK --interval=5s") and hc[0].endswith("\\")
    assert json.loads(hc[1].strip()[len("CMD "):]) == ["/usr/local/lib/envoygen/envoygen-init", "probe"]


def test_dockerfile_template_is_strict() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render_dockerfile(drop=("admin_port",))


def test_unreachable_engine_is_an_environment_problem(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(EnvironmentProblem) as err:
        image.connect()
    assert err.value.exit_code == EXIT_ENVIRONMENT == 3
    msg = err.value.format_message()
    assert "no-such-docker.sock" in msg and "Docker engine" in msg and "envoygen render" in msg
    assert "Traceback" not in msg

    bundle = write_bundle(tmp_path / "bundle")
    with pytest.raises(EnvironmentProblem):
        image.build_image(bundle, "envoygen-test/never:1", progress=lambda _l: None)


def test_init_source_compiles_without_warnings(tmp_path) -> None:  # noqa: ANN001
    import shutil
    import subprocess

    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "init.c"
    src.write_text(image.INIT_C_SOURCE)
    done = subprocess.run([gcc, "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(tmp_path / "init"), str(src)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("tag", "title", "version"), [
    ("coolstore:1.2", "coolstore", "1.2"),
    ("registry:5000/shop/coolstore:1.2", "coolstore", "1.2"),
    ("registry:5000/shop/coolstore", "coolstore", "latest"),
    ("gw@sha256:" + "0" * 64, "gw", "latest"),
])
def test_tag_names(tag: str, title: str, version: str) -> None:
    assert image._repository_name(tag) == title
    assert image._tag_version(tag) == version


def test_saved_name_is_the_tag_as_docker_spells_it() -> None:
    assert image._saved_name("gw:1", ["gw:1", "other:2"]) == "gw:1"
    assert image._saved_name("gw", ["other:2", "gw:latest"]) == "gw:latest"
    assert image._saved_name("reg:5000/gw", ["reg:5000/gw:latest"]) == "reg:5000/gw:latest"


def test_base_context_layout(tmp_path) -> None:  # noqa: ANN001
    libs = image.linked_libraries(image._embedded_envoy())
    assert {Path(p).name for p in libs} == {
        "libm.so.6", "librt.so.1", "libdl.so.2", "libpthread.so.0", "libc.so.6", "ld-linux-x86-64.so.2",
    }
    lines = Lines()
    init = image.prepare_base_context(tmp_path, progress=lines)
    assert (tmp_path / "Dockerfile").read_text() == image.BASE_DOCKERFILE
    assert (tmp_path / "bin/envoy").stat().st_size == image._embedded_envoy().stat().st_size
    for lib in libs:  # real files (links resolved) at the loader's paths
        f = tmp_path / "rootfs" / lib.lstrip("/")
        assert f.is_file() and not f.is_symlink()
    assert "envoy:x:101:101:" in (tmp_path / "rootfs/etc/passwd").read_text()
    assert (tmp_path / "rootfs/etc/ssl/certs/ca-certificates.crt").stat().st_size > 0
    assert (tmp_path / "rootfs/tmp").stat().st_mode & 0o7777 == 0o1777
    if init == "drain":
        assert (tmp_path / "init/envoygen-init").read_bytes()[:4] == b"\x7fELF"
    else:
        assert "no working C compiler" in lines.text()


# ---------------------------------------------------------------------------
# Base image
# ---------------------------------------------------------------------------


@docker
def test_base_image_is_scratch_envoy_as_uid_101(docker_client, base_image, reaper) -> None:  # noqa: ANN001, F811
    img = docker_client.images.get(base_image)
    cfg = img.attrs["Config"]
    assert cfg["User"] == "101:101"
    assert cfg["Entrypoint"] == ["/usr/local/lib/envoygen/envoygen-init"]
    labels = img.labels
    assert labels[image.LABEL_ENVOY_VERSION] == image.ENVOY_VERSION
    assert labels[image.LABEL_INIT] == "drain"
    assert labels[image.LABEL_BASE_RECIPE].startswith("sha256:")
    # Small: the Envoy binary plus a few MB (glibc, CA bundle, init).
    envoy_size = image._embedded_envoy().stat().st_size
    assert envoy_size < img.attrs["Size"] < envoy_size + 12_000_000

    out = docker_client.containers.run(base_image, ["--version"], remove=True, network_mode="none")
    assert b"1.40.0" in out

    # Files that must be there, read from a created (never started) container.
    c = docker_client.containers.create(base_image, ["--version"], network_mode="none")
    try:
        def read(path: str) -> bytes:
            stream, _ = c.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.getmembers()[0]
                f = tar.extractfile(member)
                return f.read() if f else b""

        assert b"envoy:x:101:101:" in read("/etc/passwd")
        assert b"envoy:x:101:" in read("/etc/group")
        assert b"-----BEGIN CERTIFICATE-----" in read("/etc/ssl/certs/ca-certificates.crt")
        init = read("/usr/local/lib/envoygen/envoygen-init")
        assert init.startswith(b"\x7fELF") and 100_000 < len(init) < 3_000_000
    finally:
        c.remove(force=True)

    # envoygen-init passes Envoy's exit status on.
    bad = docker_client.containers.run(base_image, ["-c", "/nonexistent.yaml"], detach=True, network_mode="none")
    try:
        assert bad.wait(timeout=30)["StatusCode"] == 1
    finally:
        bad.remove(force=True)


@docker
def test_base_image_is_reused_when_present(docker_client, base_image) -> None:  # noqa: ANN001, F811
    lines = Lines()
    assert image.ensure_local_base_image(docker_client, lines) == base_image
    assert lines == []  # nothing built, nothing said


@docker
def test_stale_base_image_is_rebuilt_and_replaced(docker_client, base_image, reaper) -> None:  # noqa: ANN001, F811
    tag = reaper.image(f"{TEST_REPO}/{unique('stale-base')}:1.40.0")
    dockerfile = f"FROM {base_image}\nLABEL {image.LABEL_BASE_RECIPE}=sha256:older\n"
    stale, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    lines = Lines()
    image.ensure_local_base_image(docker_client, lines, tag=tag)
    assert "was built from another recipe or Envoy binary; rebuilding it" in lines.text()
    fresh = docker_client.images.get(tag)
    assert fresh.id != stale.id
    assert fresh.labels[image.LABEL_BASE_RECIPE] == docker_client.images.get(base_image).labels[image.LABEL_BASE_RECIPE]
    assert stale.id not in {i.id for i in docker_client.images.list(all=True)}  # not left dangling


@docker
def test_base_image_without_c_compiler_runs_envoy_directly(docker_client, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    tag = reaper.image(f"{TEST_REPO}/{unique('base-nocc')}:1.40.0")
    lines = Lines()
    image.ensure_local_base_image(docker_client, lines, tag=tag, cc=str(tmp_path / "no-such-cc"))
    assert "no working C compiler" in lines.text() and "without draining" in lines.text()
    assert docker_client.images.get(tag).labels[image.LABEL_INIT] == "none"
    out = docker_client.containers.run(tag, ["--version"], remove=True, network_mode="none")
    assert b"1.40.0" in out

    # A gateway on it copies the link, not a second Envoy, and serves.
    gw_tag = gateway_tag(reaper)
    image._build(docker_client, path=write_bundle(tmp_path / "b"), tag=gw_tag,
                 buildargs={"BASE_IMAGE": tag, "INIT_IMAGE": tag}, labels={}, progress=lambda _l: None)
    base_size = docker_client.images.get(tag).attrs["Size"]
    assert docker_client.images.get(gw_tag).attrs["Size"] < base_size + 1_000_000
    gw = start_container(reaper, gw_tag, publish=(HTTP_PORT, READINESS_PORT))
    wait_ready(gw)
    assert http_get(gw.port(HTTP_PORT), "/").status == 200


# ---------------------------------------------------------------------------
# Gateway image
# ---------------------------------------------------------------------------


@docker
def test_build_run_ready_serve(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    cert = self_signed("gateway.test")
    bundle = write_bundle(tmp_path / "bundle", cert=cert)
    assert (bundle / "certs/demo/tls.key").stat().st_mode & 0o777 == 0o600
    tag = gateway_tag(reaper)
    lines = Lines()
    image_id = image.build_image(bundle, tag, labels={image.LABEL_BUNDLE_DIGEST: "sha256:" + "ab" * 32},
                                 progress=lines)
    assert image_id.startswith("sha256:")
    assert any("Successfully built" in line for line in lines)  # build output streamed

    img = docker_client.images.get(tag)
    assert img.id == image_id
    labels = img.labels
    assert labels[image.LABEL_BUNDLE_DIGEST] == "sha256:" + "ab" * 32
    assert labels[image.LABEL_ENVOY_VERSION] == "1.40.0"
    assert labels[image.LABEL_TITLE] == tag.split("/")[-1].split(":")[0]
    # a URL when the package declares a repository (pyproject [project.urls]), else empty: never a non-URL
    assert labels[image.LABEL_SOURCE] == "" or labels[image.LABEL_SOURCE].startswith("https://")
    assert labels[image.LABEL_BASE_NAME] == base_image
    assert labels["org.opencontainers.image.version"] == "test"  # the tag's, not the base image's
    assert labels[image.LABEL_INIT] == "drain"
    cfg = img.attrs["Config"]
    assert cfg["User"] == "101:101"
    assert set(cfg["ExposedPorts"]) == {f"{p}/tcp" for p in (HTTP_PORT, HTTPS_PORT, READINESS_PORT, STATS_PORT)}
    assert cfg["Entrypoint"][:3] == ["/usr/local/lib/envoygen/envoygen-init", "-c", f"{INSTALL_DIR}/envoy.yaml"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/usr/local/lib/envoygen/envoygen-init", "probe"]
    assert cfg["Env"] and f"ENVOYGEN_ADMIN_PORT={ADMIN_PORT}" in cfg["Env"]

    gw = start_container(reaper, tag, publish=(HTTP_PORT, HTTPS_PORT, READINESS_PORT, STATS_PORT))
    wait_ready(gw)
    r = http_get(gw.port(HTTP_PORT), "/")
    assert (r.status, r.body) == (200, b"hello from the gateway\n")
    assert r.headers["server"] == "istio-envoy"
    # The 0600 key is readable by uid 101: TLS works, with the baked certificate.
    r = http_get(gw.port(HTTPS_PORT), "/", tls_ca=cert.cert_pem, server_name="gateway.test")
    assert r.status == 200
    r = http_get(gw.port(STATS_PORT), "/stats/prometheus")
    assert r.status == 200 and b"envoy_server_live" in r.body
    # The admin endpoint is not published and listens on the container's loopback only.
    assert f"{ADMIN_PORT}/tcp" not in (gw.wrapped.attrs["NetworkSettings"]["Ports"] or {})
    # The in-image probe for a HEALTHCHECK of one's own.
    assert gw.wrapped.exec_run(["/usr/local/lib/envoygen/envoygen-init", "probe"]).exit_code == 0
    assert gw.wrapped.exec_run(["/usr/local/lib/envoygen/envoygen-init", "probe", "15021", "/nope"]).exit_code == 1
    # Docker runs that probe as the HEALTHCHECK: the container turns healthy (first check after 5 s)
    deadline = time.monotonic() + 30
    while True:
        gw.wrapped.reload()
        health = gw.wrapped.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health == "healthy", gw.wrapped.attrs["State"].get("Health")

    # Idle gateway: `docker stop` is quick (nothing to drain) and clean.
    start = time.monotonic()
    gw.wrapped.stop(timeout=20)
    took = time.monotonic() - start
    assert gw.wrapped.wait(timeout=30)["StatusCode"] == 0
    assert took < 3, took
    assert "drained after" in gw.logs()


@docker
def test_credentials_directory_mounted_over_baked_certs(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    baked = self_signed("gateway.test")
    bundle = write_bundle(tmp_path / "bundle", cert=baked)
    tag = gateway_tag(reaper)
    image.build_image(bundle, tag, progress=lambda _l: None)

    mounted = self_signed("gateway.test")
    creds = write_cert_dir(tmp_path / "creds" / "demo", mounted, key_mode=0o600)
    for f in creds.iterdir():  # readable by uid 101, still not world-readable
        try:
            import os

            os.chown(f, 101, 101)
        except PermissionError:
            f.chmod(0o644)
    gw = start_container(reaper, tag, publish=(HTTPS_PORT, READINESS_PORT),
                         volumes={str(creds): f"{INSTALL_DIR}/certs/demo"})
    wait_ready(gw)
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    served = peer_certificate(gw.port(HTTPS_PORT), "gateway.test")
    assert served == x509.load_pem_x509_certificate(mounted.cert_pem).public_bytes(Encoding.DER)
    assert http_get(gw.port(HTTPS_PORT), "/", tls_ca=mounted.cert_pem, server_name="gateway.test").status == 200


@docker
def test_base_image_present_locally_is_used(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    custom = reaper.image(f"{TEST_REPO}/{unique('custom-base')}:1")
    docker_client.images.get(base_image).tag(custom)
    tag = gateway_tag(reaper)
    lines = Lines()
    image.build_image(write_bundle(tmp_path / "b"), tag, base_image=custom, progress=lines)
    assert f"using base image {custom} (present locally)" in lines.text()
    assert docker_client.images.get(tag).labels[image.LABEL_BASE_NAME] == custom


@docker
def test_unpullable_base_image_falls_back_plainly(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    # A registry on 127.0.0.1 at a port nobody listens on: the pull fails at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    missing = f"127.0.0.1:{closed_port}/{TEST_REPO}/missing:1"
    tag = gateway_tag(reaper)
    lines = Lines()
    image.build_image(write_bundle(tmp_path / "b"), tag, base_image=missing, progress=lines)
    warning = next(line for line in lines if line.startswith("WARNING: base image"))
    assert missing in warning
    assert "is not available locally and could not be pulled" in warning
    assert f"building on the local base image {base_image}" in warning
    assert docker_client.images.get(tag).labels[image.LABEL_BASE_NAME] == base_image


@docker
def test_build_failure_reports_the_log_tail(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    bundle = write_bundle(tmp_path / "b")
    # A label unique to this build right after the final FROM: every image a
    # step of this build commits carries it (and none is a cache hit), so the
    # check below sees only this build's leftovers, whatever other builds run
    # on the engine meanwhile.
    marker = unique("failed-build")
    dockerfile = (bundle / "Dockerfile").read_text()
    head, sep, tail = dockerfile.rpartition("FROM ${BASE_IMAGE}\n")
    assert sep, "the bundle Dockerfile changed shape: update this test"
    (bundle / "Dockerfile").write_text(
        f"{head}{sep}LABEL io.envoygen.test.marker={marker}\n{tail}COPY no-such-file-in-the-bundle /x\n"
    )
    tag = gateway_tag(reaper)
    with pytest.raises(EnvironmentProblem) as err:
        image.build_image(bundle, tag, progress=lambda _l: None)
    msg = err.value.format_message()
    assert f"docker build of {tag} failed" in msg
    assert "no-such-file-in-the-bundle" in msg
    assert "last lines of the build log" in msg
    # The steps that did finish (the marker, both COPYs, ENV, USER, ...) left no
    # untagged image behind.
    assert docker_client.images.list(all=True, filters={"label": f"io.envoygen.test.marker={marker}"}) == []


@docker
def test_save_writes_an_archive_docker_load_accepts(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    tag = reaper.image(f"{TEST_REPO}/{unique('saved')}")  # no version: Docker's "latest"
    dest = tmp_path / "out" / "gateway.tar"
    dest.parent.mkdir()
    image_id = image.build_image(write_bundle(tmp_path / "b"), tag, save=dest, progress=lambda _l: None)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["gateway.tar"]  # no temp file left
    with tarfile.open(dest) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"{tag}:latest"]
    assert docker_client.images.get(tag).labels["org.opencontainers.image.version"] == "latest"

    docker_client.images.remove(tag, force=True)
    loaded = docker_client.images.load(dest.read_bytes())
    assert f"{tag}:latest" in loaded[0].tags
    assert docker_client.images.get(tag).id == image_id


@docker
def test_failed_save_leaves_the_destination_alone(docker_client, tmp_path) -> None:  # noqa: ANN001, F811
    dest = tmp_path / "keep.tar"
    dest.write_bytes(b"earlier archive")
    with pytest.raises(EnvironmentProblem):
        image.save_image(docker_client, f"{TEST_REPO}/{unique('absent')}:1", dest, progress=lambda _l: None)
    assert dest.read_bytes() == b"earlier archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tar"]
    with pytest.raises(EnvironmentProblem):
        image.save_image(docker_client, "whatever:1", tmp_path / "no-such-dir" / "x.tar", progress=lambda _l: None)


# ---------------------------------------------------------------------------
# SIGTERM drain
# ---------------------------------------------------------------------------


@pytest.fixture
def slow_gateway(docker_client, base_image, reaper, tmp_path):  # noqa: ANN001, ANN201, F811
    """A gateway whose /slow/ goes to a backend that delays each request by
    x-envoy-fault-delay-request ms, both on a network the test makes. Returns a
    function starting a gateway container with the given environment."""
    net = make_network(reaper)
    cfg = tmp_path / "backend"
    cfg.mkdir()
    (cfg / "backend.yaml").write_text(backend_bootstrap())
    cfg.chmod(0o755)
    (cfg / "backend.yaml").chmod(0o644)
    backend = start_container(reaper, base_image, command=["-c", "/config/backend.yaml", "--disable-hot-restart"],
                              network=net, aliases=("slow-backend",), volumes={str(cfg): "/config"})
    tag = gateway_tag(reaper)
    image.build_image(write_bundle(tmp_path / "bundle", backend=f"slow-backend:{BACKEND_PORT}"), tag,
                      progress=lambda _l: None)

    def start(**env: str):  # noqa: ANN202
        gw = start_container(reaper, tag, publish=(HTTP_PORT, READINESS_PORT), network=net, env=env)
        wait_ready(gw)
        # The backend answers through the gateway (Docker's DNS from a scratch image).
        wait_until(lambda: http_get(gw.port(HTTP_PORT), "/slow/ping").status == 200, timeout=20,
                   what=f"backend through the gateway\n{backend.logs()}")
        return gw

    return start


def _in_flight(port: int, delay_ms: int) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["reply"] = http_get(port, "/slow/work", headers={"x-envoy-fault-delay-request": str(delay_ms)},
                                       timeout=30)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def _stop_async(gw) -> tuple[threading.Thread, dict]:  # noqa: ANN001
    info: dict = {}

    def run() -> None:
        start = time.monotonic()
        gw.wrapped.stop(timeout=30)  # docker stop: SIGTERM, SIGKILL after 30 s
        info["took"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, info


@docker
@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(slow_gateway) -> None:  # noqa: ANN001
    gw = slow_gateway()
    http_port, ready_port = gw.port(HTTP_PORT), gw.port(READINESS_PORT)
    request, result = _in_flight(http_port, 3000)
    time.sleep(1.0)  # the request is with the backend now
    assert request.is_alive()

    stopper, stop_info = _stop_async(gw)
    sigterm_at = time.monotonic()
    # New connections are refused soon after SIGTERM; readiness goes with them.
    refused_after = wait_until(lambda: no_response(http_port), timeout=3, interval=0.05,
                               what="new connections to be refused")
    assert refused_after < 1.5
    assert no_response(ready_port, "/healthz/ready")
    assert request.is_alive()  # ... while the request in flight carries on

    request.join(timeout=15)
    reply = result.get("reply")
    assert reply is not None, f"in-flight request failed: {result.get('error')!r}\n{gw.logs()}"
    assert (reply.status, reply.body) == (200, b"slow backend\n")
    assert reply.headers.get("connection") == "close"
    assert reply.elapsed >= 2.9

    stopper.join(timeout=40)
    assert gw.wrapped.wait(timeout=10)["StatusCode"] == 0
    # Envoy was stopped once the request had finished, well before the drain limit (5 s).
    assert 1.5 < stop_info["took"] < 4.5, stop_info
    assert time.monotonic() - sigterm_at < 6
    logs = gw.logs()
    assert "draining: listeners closed to new connections" in logs
    assert "drained after" in logs


@docker
@pytest.mark.slow
@pytest.mark.parametrize("drain_seconds", ["1", "0"])
def test_drain_is_bounded_by_envoygen_drain_seconds(slow_gateway, drain_seconds: str) -> None:  # noqa: ANN001
    gw = slow_gateway(ENVOYGEN_DRAIN_SECONDS=drain_seconds)
    request, result = _in_flight(gw.port(HTTP_PORT), 8000)
    time.sleep(1.0)
    stopper, stop_info = _stop_async(gw)
    stopper.join(timeout=40)
    request.join(timeout=15)
    # The request outlives the drain limit: it is cut, and the stop does not wait for it.
    assert "reply" not in result or result["reply"].status != 200
    assert stop_info["took"] < float(drain_seconds) + 2.0, stop_info
    assert gw.wrapped.wait(timeout=10)["StatusCode"] == 0
    logs = gw.logs()
    if drain_seconds == "0":
        assert "no drain" in logs
    else:
        assert "drain time of 1 s is over with 1 connection(s) open" in logs
