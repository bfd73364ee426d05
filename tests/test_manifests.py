"""``envoygen manifests`` (issue 12): Kubernetes manifests validated offline against
the Kubernetes schemas (kubernetes-validate), and a Compose deployment of 3
replicas on this Docker engine where every replica serves traffic."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from harness import run_envoygen
from image_fixtures import require_tool

REPO = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

INPUT = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hello, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - directResponse: {status: 200, body: {string: "hello from a replica\\n"}}
"""


@pytest.fixture(scope="module")
def mtls_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m") / "b"
    p = run_envoygen(["render", "-q", "-f", "samples/coolstore-mtls", "-o", str(out), "--credentials-dir", "certs"],
                     cwd=REPO)
    assert p.returncode == 0, p.stderr
    return out


def docs(d: Path, name: str) -> list[dict]:
    return [x for x in yaml.safe_load_all((d / name).read_text()) if x]


def test_manifests_validate_against_the_kubernetes_schema(mtls_bundle: Path, tmp_path: Path) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils

    out = tmp_path / "k8s"
    p = run_envoygen(["manifests", str(mtls_bundle), "--image", "registry.example/gw:1", "--replicas", "3",
                      "-o", str(out), "--hpa-max", "6", "--service-type", "NodePort"])
    assert p.returncode == 0, p.stderr
    files = sorted(f.name for f in out.iterdir())
    assert files == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "secrets.yaml", "service.yaml"]
    version = utils.latest_version()
    for f in files:
        for d in docs(out, f):
            kubernetes_validate.validate(d, version, strict=True)  # raises on any schema violation
    # the validator is real: a wrong type is refused
    bad = docs(out, "deployment.yaml")[0]
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)

    dep = docs(out, "deployment.yaml")[0]
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert dep["spec"]["replicas"] == 3 and c["image"] == "registry.example/gw:1"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert c["securityContext"]["runAsUser"] == 101 and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"]
    drain = int(next(e["value"] for e in c["env"] if e["name"] == "ENVOYGEN_DRAIN_SECONDS"))
    assert spec["terminationGracePeriodSeconds"] >= c["lifecycle"]["preStop"]["sleep"]["seconds"] + drain
    # credentials: Secrets mounted where the SDS files watch (the ..data swap rotates them)
    sds = (mtls_bundle / "sds").iterdir()
    watched = {line.split("path:")[1].strip(" }\"'") for f in sds for line in f.read_text().splitlines()
               if "watched_directory" in line}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert watched and watched <= mounts, (watched, mounts)
    secrets = {d["metadata"]["name"]: d for d in docs(out, "secrets.yaml")}
    assert secrets["webapp-credential"]["type"] == "kubernetes.io/tls"
    key = (mtls_bundle / "certs" / "webapp-credential" / "tls.key").read_bytes()
    assert base64.b64decode(secrets["webapp-credential"]["data"]["tls.key"]) == key
    assert (out / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    svc = docs(out, "service.yaml")[0]
    assert svc["spec"]["type"] == "NodePort" and [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(443, 8443)]
    hpa = docs(out, "hpa.yaml")[0]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert docs(out, "pdb.yaml")[0]["spec"]["maxUnavailable"] == 1


def _free_block(n: int) -> int:
    for _ in range(50):
        base = 20000 + uuid.uuid4().int % 30000
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port block")


def _get(port: int, path: str = "/") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


@pytest.mark.docker
@pytest.mark.slow
def test_compose_three_replicas_each_serve(tmp_path: Path) -> None:
    if not Path(COMPOSE).exists():
        require_tool("docker-compose", "docker-compose")  # skips, or fails under CI=true (.ci/run installs it)
    src = tmp_path / "in.yaml"
    src.write_text(INPUT)
    tag = f"envoygen-test-compose:{uuid.uuid4().hex[:8]}"
    project = f"egcompose{uuid.uuid4().hex[:8]}"
    iid = tmp_path / "iid"
    b = run_envoygen(["build", "-q", "-f", str(src), "-t", tag, "--iidfile", str(iid)], timeout=600)
    assert b.returncode == 0, b.stderr
    assert b.stdout.strip() == iid.read_text().strip() and iid.read_text().startswith("sha256:")
    compose_file = tmp_path / "k8s" / "compose.yaml"
    try:
        r = run_envoygen(["render", "-q", "-f", str(src), "-o", str(tmp_path / "bundle")])
        assert r.returncode == 0, r.stderr
        base = _free_block(6)
        m = run_envoygen(["manifests", str(tmp_path / "bundle"), "--image", tag, "--replicas", "3", "-o",
                          str(tmp_path / "k8s"), "--compose", "--host-port-base", str(base), "--drain-seconds", "1"])
        assert m.returncode == 0, m.stderr
        ports = {(int(ln.split()[1].rstrip(":")), int(ln.split()[3])): int(ln.rsplit(":", 1)[1])
                 for ln in m.stderr.splitlines() if ln.startswith("replica ")}
        assert len(ports) == 6 and all(h in range(base, base + 6) for h in ports.values())
        up = subprocess.run([COMPOSE, "-f", str(compose_file), "-p", project, "up", "-d"], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "COMPOSE_INTERACTIVE_NO_CLI": "1"})
        assert up.returncode == 0, up.stderr
        ids = subprocess.run([COMPOSE, "-f", str(compose_file), "-p", project, "ps", "-q"], capture_output=True,
                             text=True, timeout=60).stdout.split()
        assert len(set(ids)) == 3
        for replica in (1, 2, 3):
            deadline = time.monotonic() + 60
            while _get(ports[(replica, 15021)], "/healthz/ready")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert _get(ports[(replica, 15021)], "/healthz/ready")[0] == 200, replica
            for _ in range(3):
                assert _get(ports[(replica, 8080)]) == (200, b"hello from a replica\n"), replica
    finally:
        if compose_file.exists():
            subprocess.run([COMPOSE, "-f", str(compose_file), "-p", project, "down", "-t", "5"],
                           capture_output=True, timeout=120)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)
