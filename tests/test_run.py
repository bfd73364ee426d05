"""``envoygen run``: the embedded Envoy in the foreground on a temporary bundle."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from harness import free_ports, http_get, wait_until

YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["run.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: ["run.example.com"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: app.example.com}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [app.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def test_run_serves_until_sigterm_and_cleans_up(backend_factory, tmp_path):
    app = backend_factory("app")
    src = tmp_path / "in.yaml"
    src.write_text(YAML.format(port=app.port))
    http, admin, ready, stats = free_ports(4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "envoygen", "run", "-f", str(src), "--port-map", f"80={http}",
         "--admin-port", str(admin), "--readiness-port", str(ready), "--stats-port", str(stats), "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: _ready(ready) or proc.poll() is not None, timeout=30, message="envoygen run never got ready")
        assert proc.poll() is None, "".join(lines)
        status, headers, _ = http_get(None, http, "/", host="run.example.com")
        assert status == 200 and headers["x-backend"] == "app"
        assert http_get(None, http, "/", host="other.example.com").status == 404
        # "listening" is printed by run's own readiness poll (every 0.1 s), maybe after ours saw it
        wait_until(lambda: any(f"listening on 0.0.0.0:{http}" in ln for ln in lines), timeout=10,
                   message="envoygen run never said it was listening")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    err = "".join(lines)
    assert code == 0, err
    # the temporary bundle named on stderr is gone
    bundle = err.split("bundle ", 1)[1].split()[0]
    deadline = time.monotonic() + 5
    import os

    while os.path.exists(bundle) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(bundle)


def test_relative_install_dir_is_a_usage_error(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "envoygen", "render", "-f", "samples/coolstore", "-o", str(out),
                           "--install-dir", "relative/dir"], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert proc.returncode == 2, proc.stderr
    assert "--install-dir relative/dir: must be an absolute path" in proc.stderr
    assert not out.exists()


def test_proxy_config_listeners_table_reads_like_istioctl(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "envoygen", "render", "-q", "-f", "samples/coolstore", "-o", str(out)],
                   check=True, capture_output=True, cwd=str(root), timeout=120)
    table = subprocess.run([sys.executable, "-m", "envoygen", "proxy-config", "listeners", str(out)],
                           check=True, capture_output=True, text=True, timeout=120).stdout.splitlines()
    rows = [line.split() for line in table[1:]]
    assert table[0].split() == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    # exact paths (Istio's are prefixes): only these two admin endpoints get through (test_admin_exposure)
    # istioctl's describeRouteConfig: every route's match (GET, and the 405 for other methods)
    assert ["0.0.0.0", "15021", "ALL", "Inline", "Route:", "/healthz/ready,", "/healthz/ready"] in rows
    assert ["0.0.0.0", "15090", "ALL", "Inline", "Route:", "/stats/prometheus,", "/stats/prometheus"] in rows
    assert ["0.0.0.0", "8080", "ALL", "Route:", "http.8080"] in rows
