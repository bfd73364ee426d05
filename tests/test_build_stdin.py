"""`envoygen build -f -` bakes the gateway that `render -f -` writes.

The bug this pins: `build` ran the pipeline a second time to re-render for the
image's install directory; stdin was already consumed then, so the image held a
bundle with no gateway listener at all, and the command exited 0. Now the
input is read and translated once and rendered twice.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from harness import run_envoygen
from image_fixtures import (  # noqa: F401 - fixtures
    base_image,
    docker_client,
    reaper,
    unique,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "coolstore"
BUILD_TIMEOUT_S = 600


def sample_text() -> str:
    return "\n---\n".join((SAMPLE / f).read_text() for f in ("gateway.yaml", "services.yaml"))


def read_from_image(client, tag: str, path: str) -> bytes:  # noqa: ANN001
    c = client.containers.create(tag, ["--version"], network_mode="none")
    try:
        stream, _ = c.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            f = tar.extractfile(tar.getmembers()[0])
            return f.read() if f else b""
    finally:
        c.remove(force=True)


def test_render_from_stdin_records_stdin_in_the_manifest(tmp_path: Path) -> None:
    text = sample_text()
    p = run_envoygen(["render", "-f", "-", "-o", str(tmp_path / "out")], input=text, cwd=REPO)
    assert p.returncode == 0, p.stderr
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    import hashlib

    assert man["inputs"] == [{"path": "-", "sha256": hashlib.sha256(text.encode()).hexdigest()}]
    boot = (tmp_path / "out" / "envoy.yaml").read_text()
    assert '"0.0.0.0_8080"' in boot and "outbound|80||webapp.istioinaction.svc.cluster.local" in boot


@pytest.mark.docker
@pytest.mark.slow
def test_build_from_stdin_bakes_the_same_gateway_as_from_files(docker_client, base_image, reaper, tmp_path: Path) -> None:  # noqa: ANN001, F811
    from_files = reaper.image(f"envoygen-test/{unique('files')}:test")
    from_stdin = reaper.image(f"envoygen-test/{unique('stdin')}:test")
    p = run_envoygen(["build", "-f", "samples/coolstore", "-t", from_files], cwd=REPO, timeout=BUILD_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    p = run_envoygen(["build", "-f", "-", "-t", from_stdin], input=sample_text(), cwd=REPO, timeout=BUILD_TIMEOUT_S)
    assert p.returncode == 0, p.stderr

    # build's default bootstrap is JSON: the image starts Envoy from it (issue 14)
    boot_files = read_from_image(docker_client, from_files, "/etc/envoy/envoy.json")
    boot_stdin = read_from_image(docker_client, from_stdin, "/etc/envoy/envoy.json")
    assert b'"0.0.0.0_8080"' in boot_stdin, "the image built from stdin has no gateway listener"
    assert b"outbound|80||webapp.istioinaction.svc.cluster.local" in boot_stdin
    assert boot_stdin == boot_files
    # and it is exactly what `render -f -` writes
    p = run_envoygen(["render", "-f", "-", "-o", str(tmp_path / "r"), "--bootstrap-format", "json"],
                     input=sample_text(), cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "envoy.json").read_bytes() == boot_stdin

    man = json.loads(read_from_image(docker_client, from_stdin, "/etc/envoy/manifest.json"))
    assert [i["path"] for i in man["inputs"]] == ["-"]
    assert man["install_dir"] == "/etc/envoy"
    files_man = json.loads(read_from_image(docker_client, from_files, "/etc/envoy/manifest.json"))
    assert [i["path"] for i in files_man["inputs"]] == ["samples/coolstore/gateway.yaml", "samples/coolstore/services.yaml"]
    assert man["files"] == files_man["files"]
    assert "envoy.json" in man["files"] and "envoy.yaml" not in man["files"]
    entry = docker_client.images.get(from_stdin).attrs["Config"]["Entrypoint"]
    assert entry[1:3] == ["-c", "/etc/envoy/envoy.json"]
    # the image label carries the digest of the bundle it holds
    assert docker_client.images.get(from_stdin).labels["io.envoygen.bundle.digest"] == man["digest"]


@pytest.mark.docker
@pytest.mark.slow
def test_build_label_sets_the_image_source(docker_client, base_image, reaper) -> None:  # noqa: ANN001, F811
    """`--label` sets labels on the gateway image, the OCI source (the user's
    config repository: envoygen knows no URL for it) above all; envoygen's
    bundle digest label cannot be overridden by it."""
    tag = reaper.image(f"envoygen-test/{unique('labelled')}:test")
    source = "https://git.example.com/platform/edge"
    p = run_envoygen(["build", "-q", "-f", "samples/coolstore", "-t", tag,
                      "--label", f"org.opencontainers.image.source={source}", "--label", "team=edge",
                      "--label", "io.envoygen.bundle.digest=forged"], cwd=REPO, timeout=BUILD_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    labels = docker_client.images.get(tag).labels
    assert labels["org.opencontainers.image.source"] == source
    assert labels["team"] == "edge"
    assert labels["io.envoygen.bundle.digest"] != "forged"
    assert len(labels["io.envoygen.bundle.digest"]) == 64


def test_build_label_must_be_key_value() -> None:
    p = run_envoygen(["build", "-f", "samples/coolstore", "-t", "x:1", "--label", "novalue"], cwd=REPO)
    assert p.returncode == 2
    assert "'novalue' is not KEY=VALUE" in p.stderr
