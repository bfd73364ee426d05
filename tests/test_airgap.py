"""The air-gapped story end to end: `envoygen build --save` here, then `docker load`
into a *fresh* Docker engine (its own data root, no images at all, no registry) and
`docker run` serves the sample's routes.

The fresh engine is a second dockerd started by the test with a private data root,
exec root, socket and a bridge of its own (never ``--bridge none``: that makes dockerd
delete the host's ``docker0`` and breaks the main engine), without iptables; the
gateway runs with host networking so that it reaches the test's backend on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness import free_ports, http_get, wait_until
from image_fixtures import docker_client, in_ci, unique  # noqa: F401 - fixtures

YAML = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: coolstore-gateway, namespace: istioinaction}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["webapp.istioinaction.io"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: webapp-vs-from-gw, namespace: istioinaction}}
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {{host: webapp, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def _docker(sock: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fresh_engine(docker_client):  # noqa: ANN001, ANN201, F811 - needs the main engine's binaries
    if shutil.which("dockerd") is None:
        msg = "dockerd is not installed"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    root = Path(tempfile.mkdtemp(prefix="eg-fresh-", dir="/tmp"))  # short path: unix socket limit
    sock = str(root / "d.sock")
    bridge = "egfresh" + root.name[-6:].replace("_", "0")[:6]
    made = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], capture_output=True, text=True)
    if made.returncode != 0:
        msg = f"cannot create a bridge for the fresh engine: {made.stderr.strip()}"
        subprocess.run(["rm", "-rf", str(root)], check=False)
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    log = open(root / "dockerd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--host", f"unix://{sock}",
         "--pidfile", str(root / "d.pid"), "--bridge", bridge, "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _docker(sock, "info", timeout=10).returncode == 0 or proc.poll() is not None,
                   timeout=60, message="the fresh dockerd never answered")
        assert proc.poll() is None, (root / "dockerd.log").read_text()[-2000:]
        yield sock
    finally:
        for cid in _docker(sock, "ps", "-aq").stdout.split():
            _docker(sock, "rm", "-f", cid)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for ns in (root / "exec" / "netns").glob("*"):  # dockerd leaves its netns bind-mounted
            subprocess.run(["umount", str(ns)], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(root)], check=False)
        subprocess.run(["ip", "link", "delete", bridge], check=False, capture_output=True)


@pytest.mark.docker
def test_saved_image_loads_into_a_fresh_engine_and_serves(fresh_engine, docker_client, backend_factory, tmp_path):  # noqa: ANN001, F811
    webapp = backend_factory("webapp")
    src = tmp_path / "coolstore.yaml"
    src.write_text(YAML.format(port=webapp.port))
    http, admin, ready, stats = free_ports(4)
    tag = f"envoygen-test/airgap:{unique('t')}"
    archive = tmp_path / "gateway.tar"
    build = subprocess.run(
        [sys.executable, "-m", "envoygen", "build", "-f", str(src), "-t", tag, "--save", str(archive),
         "--port-map", f"80={http}", "--admin-port", str(admin), "--readiness-port", str(ready), "--stats-port", str(stats)],
        capture_output=True, text=True, timeout=600)
    try:
        assert build.returncode == 0, build.stderr[-3000:]
        assert archive.stat().st_size > 50_000_000  # Envoy and its libraries travel in the archive
    finally:
        docker_client.images.remove(tag, force=True)  # the build engine keeps nothing of it

    sock = fresh_engine
    assert _docker(sock, "images", "-q").stdout.strip() == ""  # nothing there, nothing to pull from
    loaded = _docker(sock, "load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    assert tag in loaded.stdout
    run = _docker(sock, "run", "-d", "--network", "host", tag)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()

    def is_ready() -> bool:
        try:
            return http_get(None, ready, "/healthz/ready", timeout=1).status == 200
        except OSError:
            return False

    t0 = time.monotonic()
    try:
        wait_until(is_ready, timeout=60, message="the loaded gateway never became ready")
    except TimeoutError:
        pytest.fail("not ready; container log:\n" + _docker(sock, "logs", cid).stderr[-3000:])
    print(f"fresh engine: docker run to ready {time.monotonic() - t0:.2f} s, archive {archive.stat().st_size / 1e6:.1f} MB")
    status, headers, body = http_get(None, http, "/api/catalog", host="webapp.istioinaction.io")
    assert status == 200 and headers["x-backend"] == "webapp"
    assert headers["server"] == "istio-envoy"
    assert webapp.requests[-1]["path"] == "/api/catalog"
    assert http_get(None, http, "/", host="unknown.example.com").status == 404
    inspect = _docker(sock, "inspect", "-f", "{{.Config.User}}", cid)
    assert inspect.stdout.strip() == "101:101"
