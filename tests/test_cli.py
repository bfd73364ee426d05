"""The command-line contract: options, inputs, exit codes, OUT handling,
determinism, validate, proxy-config, and the IstioOperator sample.

Everything runs the real CLI as a subprocess (``python -m envoygen``).
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import yaml

from harness import http_get, run_envoygen

REPO = Path(__file__).resolve().parent.parent
FINDING_RE = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+): (?P<severity>error|warning|info) (?P<code>EG\d{4}) (?P<rest>.*)$")

GW = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: coolstore-gateway, namespace: istioinaction}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["webapp.istioinaction.io"]
"""

VS = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: webapp-vs-from-gw, namespace: istioinaction}
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {host: webapp, port: {number: 80}}
"""

SE = """\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: webapp, namespace: istioinaction}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""

GOOD = GW + "---\n" + VS + "---\n" + SE


def cli(*args, cwd=REPO, input=None):  # noqa: A002
    return run_envoygen([str(a) for a in args], cwd=cwd, input=input)


def tree(d: Path) -> dict[str, bytes]:
    """Relative path → bytes of every file under d (symlinks followed)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def findings(stderr: str) -> list[re.Match]:
    return [m for m in (FINDING_RE.match(ln) for ln in stderr.splitlines()) if m]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------
# help


CONTRACT = {
    "render": ["-f", "--filename", "-o", "--out", "-n", "--namespace", "--gateway", "--install-dir",
               "--port-map", "--admin-port", "--readiness-port", "--stats-port", "--credentials-dir",
               "--allow-expired", "--templates", "--bootstrap-format", "--access-log"],
    "validate": ["-f", "-n", "--gateway", "--port-map", "--credentials-dir", "--format", "--fail-on",
                 "--skip-envoy"],
    "build": ["-f", "-t", "--base-image", "--save", "--port-map", "--gateway"],
    "run": ["-f", "--port-map", "--gateway", "--admin-port"],
    "proxy-config": ["-o", "--output", "listeners", "routes", "clusters", "endpoints", "secrets", "--name", "--port",
                     "--fqdn", "--subset", "--direction", "--address"],
    "certs": ["-o"],
}


@pytest.mark.parametrize("command", sorted(CONTRACT))
def test_help_lists_contract_options(command):
    p = cli(command, "--help")
    assert p.returncode == 0, p.stderr
    for opt in CONTRACT[command]:
        assert re.search(rf"(^|[\s,\[{{|]){re.escape(opt)}([\s,=|}}\]]|$)", p.stdout, re.M), (opt, p.stdout)


def test_top_level_help_lists_commands():
    p = cli("--help")
    assert p.returncode == 0
    for c in ("render", "validate", "build", "run", "proxy-config", "certs"):
        assert re.search(rf"^\s+{c}\s", p.stdout, re.M), p.stdout


# --------------------------------------------------------------------------
# inputs


def test_stdin_input(tmp_path):
    out = tmp_path / "out"
    p = cli("render", "-f", "-", "-o", out, input=GOOD)
    assert p.returncode == 0, p.stderr
    boot = (out / "envoy.yaml").read_text()
    assert '"webapp.istioinaction.io:80"' in boot
    assert '"outbound|80||webapp.istioinaction.svc.cluster.local"' in boot


def test_directory_input_recurses_yaml_and_yml_only(tmp_path):
    src = tmp_path / "in"
    write(src / "a" / "b" / "gateway.yaml", GW)
    write(src / "vs.yml", VS)
    write(src / "c" / "se.YAML.txt", "this: [is not: yaml")  # not *.yaml: never read
    write(src / "c" / "d" / "e" / "se.yaml", SE)
    out = tmp_path / "out"
    p = cli("render", "-f", src, "-o", out)
    assert p.returncode == 0, p.stderr
    boot = (out / "envoy.yaml").read_text()
    assert '"webapp.istioinaction.io:80"' in boot  # from a/b/gateway.yaml and vs.yml
    assert "port_value: 8080" in boot and '"127.0.0.1"' in boot  # from c/d/e/se.yaml
    inputs = [i["path"] for i in json.loads((out / "manifest.json").read_text())["inputs"]]
    assert len(inputs) == 3 and not any("txt" in i for i in inputs), inputs


def test_namespace_option_for_documents_without_one(tmp_path):
    text = "\n".join(ln for ln in GOOD.splitlines() if "namespace" not in ln)
    text = text.replace("metadata: {name: coolstore-gateway, namespace: istioinaction}", "")
    text = re.sub(r"metadata: \{name: ([\w-]+), namespace: istioinaction\}", r"metadata: {name: \1}", GOOD)
    text = text.replace("webapp.istioinaction.svc.cluster.local", "webapp.shop.svc.cluster.local")
    assert "namespace" not in text
    out = tmp_path / "out"
    p = cli("render", "-f", "-", "-n", "shop", "-o", out, input=text)
    assert p.returncode == 0, p.stderr
    boot = (out / "envoy.yaml").read_text()
    # the short name "webapp" of a VS in namespace shop resolves to webapp.shop.svc.cluster.local
    assert 'cluster: "outbound|80||webapp.shop.svc.cluster.local"' in boot
    assert "/namespaces/shop/virtual-service/webapp-vs-from-gw" in boot
    # without -n the documents are in "default", and the short name resolves there: nothing serves it
    p = cli("render", "-f", "-", "-o", tmp_path / "out2", input=text)
    assert p.returncode == 1
    assert any(m["code"] == "EG0203" and "webapp.default.svc.cluster.local" in m["rest"] for m in findings(p.stderr)), p.stderr


# --------------------------------------------------------------------------
# exit codes


@pytest.mark.parametrize("args", [
    ["--port-map", "80=abc"],
    ["--port-map", "eighty"],
    ["--port-map", "80=70000"],
    ["--bootstrap-format", "toml"],
    ["--port-map", "80=9000", "--port-map", "80=9001"],  # one server port, two binds
])
def test_usage_errors_exit_2(tmp_path, args):
    out = tmp_path / "out"
    p = cli("render", "-f", "samples/coolstore", "-o", out, *args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    assert not out.exists()


def test_missing_filename_exit_2(tmp_path):
    p = cli("render", "-o", tmp_path / "out")
    assert p.returncode == 2
    assert "-f" in p.stderr or "--filename" in p.stderr
    assert not (tmp_path / "out").exists()
    p = cli("render", "-f", "samples/coolstore")
    assert p.returncode == 2 and ("-o" in p.stderr or "--out" in p.stderr)


def test_bad_input_exit_1_nothing_written(tmp_path):
    bad = write(tmp_path / "bad.yaml", GOOD.replace("  resolution: STATIC", "  resolution: STATIC\n  colour: red"))
    out = tmp_path / "out"
    p = cli("render", "-f", bad, "-o", out)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    (m,) = [m for m in findings(p.stderr) if m["code"] == "EG0101"]
    assert m["file"] == str(bad)
    assert int(m["line"]) == GOOD.splitlines().index("  resolution: STATIC") + 2  # the colour: line
    assert "colour" in m["rest"] and "[spec.colour]" in m["rest"], m.group(0)
    assert not out.exists()

    # an earlier bundle in OUT stays byte-identical
    good = write(tmp_path / "good.yaml", GOOD)
    assert cli("render", "-f", good, "-o", out).returncode == 0
    before = tree(out)
    p = cli("render", "-f", bad, "-o", out)
    assert p.returncode == 1
    assert tree(out) == before


def test_out_empty_or_nested_new_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("render", "-f", "samples/coolstore", "-o", empty).returncode == 0
    nested = tmp_path / "a" / "b" / "c"
    assert cli("render", "-f", "samples/coolstore", "-o", nested).returncode == 0
    assert tree(empty) == tree(nested)
    assert sorted(tree(empty)) == ["Dockerfile", "envoy.yaml", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty"]  # no temp dirs left


def test_out_with_foreign_file_refused(tmp_path):
    out = tmp_path / "out"
    write(out / "notes.txt", "mine")
    p = cli("render", "-f", "samples/coolstore", "-o", out)
    assert p.returncode != 0
    assert "refus" in p.stderr, p.stderr
    assert tree(out) == {"notes.txt": b"mine"}
    # a file named OUT is refused too
    f = write(tmp_path / "file-out", "x")
    p = cli("render", "-f", "samples/coolstore", "-o", f)
    assert p.returncode != 0 and f.read_text() == "x"


def test_earlier_bundle_replaced(tmp_path):
    out = tmp_path / "out"
    p = cli("render", "-f", "samples/coolstore-https", "--credentials-dir", "certs", "-o", out)
    assert p.returncode == 0, p.stderr
    assert any(k.startswith("certs/") for k in tree(out)), tree(out).keys()
    p = cli("render", "-f", "samples/coolstore", "-o", out)
    assert p.returncode == 0, p.stderr
    files = tree(out)
    assert not any(k.startswith(("certs/", "sds/")) for k in files), files.keys()  # stale files gone
    assert set(files) == {"envoy.yaml", "manifest.json", "Dockerfile"}
    mf = json.loads(files["manifest.json"])
    assert set(mf["files"]) == {"envoy.yaml", "Dockerfile"}


def test_bundle_with_added_foreign_file_refused(tmp_path):
    out = tmp_path / "out"
    assert cli("render", "-f", OPERATOR, "-o", out).returncode == 0
    write(out / "my-user-gateway" / "local-notes.txt", "keep me")
    before = tree(out)
    p = cli("render", "-f", "samples/coolstore", "-o", out)
    assert p.returncode != 0
    assert "local-notes.txt" in p.stderr and "refus" in p.stderr, p.stderr
    assert tree(out) == before
    # without the foreign file, a multi-workload bundle is replaced by a single one
    (out / "my-user-gateway" / "local-notes.txt").unlink()
    p = cli("render", "-f", "samples/coolstore", "-o", out)
    assert p.returncode == 0, p.stderr
    assert sorted(tree(out)) == ["Dockerfile", "envoy.yaml", "manifest.json"]
    assert not any(tmp_path.glob(".out*")), list(tmp_path.iterdir())  # no temp dirs left beside OUT


def test_rerender_is_byte_identical_and_keys_are_0600(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        p = cli("render", "-f", "samples/coolstore-https", "--credentials-dir", "certs", "-o", out)
        assert p.returncode == 0, p.stderr
    a, b = tree(outs[0]), tree(outs[1])
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k
    keys = [p for p in outs[0].rglob("*") if p.is_file() and p.name.endswith(".key")]
    assert keys, sorted(a)
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
    # no private key inside the bootstrap or SDS files
    for name, data in a.items():
        if not name.endswith(".key"):
            assert b"PRIVATE KEY" not in data, name
    # re-render over the first: still identical
    p = cli("render", "-f", "samples/coolstore-https", "--credentials-dir", "certs", "-o", outs[0])
    assert p.returncode == 0
    assert tree(outs[0]) == b


def test_bootstrap_format_json(tmp_path):
    out = tmp_path / "out"
    p = cli("render", "-f", "samples/coolstore", "--bootstrap-format", "json", "-o", out)
    assert p.returncode == 0, p.stderr
    assert not (out / "envoy.yaml").exists()
    boot = json.loads((out / "envoy.json").read_text())
    names = [lst["name"] for lst in boot["static_resources"]["listeners"]]
    assert "0.0.0.0_8080" in names
    mf = json.loads((out / "manifest.json").read_text())
    assert mf["bootstrap"] == "envoy.json"
    assert "envoy.json" in mf["files"]
    assert "envoy.json" in (out / "Dockerfile").read_text()
    # the JSON path reads the templates' YAML without a YAML parser: same values as the YAML bootstrap
    p = cli("render", "-f", "samples/coolstore", "-o", tmp_path / "y")
    assert p.returncode == 0, p.stderr
    assert boot == yaml.safe_load((tmp_path / "y" / "envoy.yaml").read_text())


# --------------------------------------------------------------------------
# findings and validate


def test_validate_coolstore_envoy_accepts():
    p = cli("validate", "-f", "samples/coolstore")
    assert p.returncode == 0, p.stderr
    assert "Envoy accepted" in p.stdout + p.stderr
    # skipped kinds: info, not fatal
    infos = [m for m in findings(p.stderr) if m["code"] == "EG0005"]
    assert len(infos) == 4, p.stderr
    assert all(m["severity"] == "info" for m in infos)
    assert any("Deployment webapp" in m["rest"] for m in infos)


def test_validate_json():
    p = cli("validate", "-f", "samples/coolstore", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True
    codes = [f["code"] for f in doc["findings"]]
    assert codes.count("EG0005") == 4
    f0 = doc["findings"][0]
    assert set(f0) >= {"file", "line", "code", "severity", "message", "path"}
    assert f0["file"] == "samples/coolstore/services.yaml" and f0["severity"] == "info"
    assert [e["ok"] for e in doc["envoy"]] == [True]


def test_validate_json_with_errors_is_parseable(tmp_path):
    bad = write(tmp_path / "bad.yaml", GOOD.replace("host: webapp,", "host: nowhere,"))
    p = cli("validate", "-f", bad, "--format", "json", "--skip-envoy")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["ok"] is False
    (f,) = [f for f in doc["findings"] if f["code"] == "EG0203"]
    assert f["severity"] == "error" and f["file"] == str(bad) and f["line"] > 0
    assert f["path"] == "spec.http[0].route[0].destination.host"


def test_fail_on_warning(tmp_path):
    # The VS host is served by none of its Gateway's servers: EG0202, a warning.
    text = GOOD.replace('hosts: ["webapp.istioinaction.io"]\n  gateways', 'hosts: ["other.example.com"]\n  gateways')
    src = write(tmp_path / "in.yaml", text)
    p = cli("validate", "-f", src, "--skip-envoy")
    assert p.returncode == 0, p.stderr
    (m,) = [m for m in findings(p.stderr) if m["code"] == "EG0202"]
    assert m["severity"] == "warning", m.group(0)
    p = cli("validate", "-f", src, "--skip-envoy", "--fail-on", "warning")
    assert p.returncode == 1, p.stderr
    assert any(m["code"] == "EG0202" for m in findings(p.stderr))


def test_unused_port_map_is_warning(tmp_path):
    out = tmp_path / "out"
    p = cli("render", "-f", "samples/coolstore", "--port-map", "9999=1", "-o", out)
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if "EG0211" in ln]
    assert len(warn) == 1 and "warning" in warn[0] and "9999" in warn[0], p.stderr
    assert json.loads((out / "manifest.json").read_text())["ports"]["servers"] == {"80": 8080}


@pytest.mark.parametrize("args, port", [
    (["--port-map", "80=15000"], "15000"),           # the listener on the admin port
    (["--stats-port", "8080"], "8080"),               # Prometheus on the 80→8080 listener
    (["--readiness-port", "15090"], "15090"),         # readiness on the stats port
])
def test_port_collisions_refused(tmp_path, args, port):
    # Envoy would exit at start-up with "cannot bind '0.0.0.0:PORT': Address already in use";
    # Envoy's --mode validate does not bind, so only envoygen can catch it.
    out = tmp_path / "out"
    p = cli("render", "-f", "samples/coolstore", "-o", out, *args)
    assert p.returncode in (1, 2), (p.returncode, p.stderr)
    assert port in p.stderr
    assert not out.exists()
    p = cli("validate", "-f", "samples/coolstore", *args)
    assert p.returncode in (1, 2), (p.returncode, p.stderr)


# --------------------------------------------------------------------------
# proxy-config


@pytest.fixture(scope="module")
def coolstore_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pc") / "out"
    p = cli("render", "-f", "samples/coolstore", "-o", out)
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.parametrize("kind, expected", [
    ("listeners", [r"^0\.0\.0\.0\s+8080\s+ALL\s+Route: http\.8080\s*$"]),
    ("routes", [r"^http\.8080\s+webapp\.istioinaction\.io:80\s+webapp\.istioinaction\.io\s+/\*\s+"
                r"webapp-vs-from-gw\.istioinaction\s*$"]),
    ("clusters", [r"^webapp\.istioinaction\.svc\.cluster\.local\s+80\s+-\s+outbound\s+STRICT_DNS\s*$",
                  r"^catalog\.istioinaction\.svc\.cluster\.local\s+80\s+-\s+outbound\s+STRICT_DNS\s*$"]),
    ("endpoints", [r"^webapp\.istioinaction\.svc\.cluster\.local:8080\s+HEALTHY\s+OK\s+"
                   r"outbound\|80\|\|webapp\.istioinaction\.svc\.cluster\.local\s*$"]),
])
def test_proxy_config_tables(coolstore_bundle, kind, expected):
    p = cli("proxy-config", kind, coolstore_bundle)
    assert p.returncode == 0, p.stderr
    for rx in expected:
        assert re.search(rx, p.stdout, re.M), (rx, p.stdout)


def test_proxy_config_json(coolstore_bundle):
    def js(kind):
        p = cli("proxy-config", kind, coolstore_bundle, "-o", "json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    assert "0.0.0.0_8080" in [x["name"] for x in js("listeners")]
    routes = js("routes")
    assert "http.8080" in [r.get("name") for r in routes], routes
    assert "outbound|80||webapp.istioinaction.svc.cluster.local" in [c["name"] for c in js("clusters")]
    assert "webapp.istioinaction.io:80" in json.dumps(routes)
    assert "outbound|80||webapp.istioinaction.svc.cluster.local" in json.dumps(js("endpoints"))
    p = cli("proxy-config", "clusters", coolstore_bundle, "-o", "yaml")
    assert p.returncode == 0 and "outbound|80||webapp.istioinaction.svc.cluster.local" in p.stdout


def test_proxy_config_bad_bundle(tmp_path):
    p = cli("proxy-config", "listeners", tmp_path)
    assert p.returncode in (1, 2), p
    assert "Traceback" not in p.stderr
    p = cli("proxy-config", "nonsense", tmp_path)
    assert p.returncode == 2


# --------------------------------------------------------------------------
# IstioOperator sample: two gateway workloads


OPERATOR = "samples/coolstore-operator"


def test_operator_sample_renders_one_bundle_per_gateway(tmp_path):
    out = tmp_path / "out"
    p = cli("render", "-f", OPERATOR, "-o", out)
    assert p.returncode == 0, p.stderr
    top = json.loads((out / "manifest.json").read_text())
    assert top["bundles"] == ["istio-ingressgateway", "my-user-gateway"]
    default = json.loads((out / "istio-ingressgateway" / "manifest.json").read_text())
    user = json.loads((out / "my-user-gateway" / "manifest.json").read_text())
    assert default["workload"]["name"] == "istio-ingressgateway"
    assert default["workload"]["namespace"] == "istio-system"
    assert default["ports"]["servers"] == {"80": 8080}
    assert user["workload"] == {"name": "my-user-gateway", "namespace": "istioinaction",
                                "labels": user["workload"]["labels"]}
    assert user["workload"]["labels"]["istio"] == "my-user-gateway"
    assert user["ports"]["servers"] == {"80": 8081}
    assert user["ports"]["listeners"] == [8081]
    d_boot = (out / "istio-ingressgateway" / "envoy.yaml").read_text()
    u_boot = (out / "my-user-gateway" / "envoy.yaml").read_text()
    assert '"webapp.istioinaction.io:80"' in d_boot and "user.istioinaction.io" not in d_boot
    assert '"user.istioinaction.io:80"' in u_boot and '"webapp.istioinaction.io:80"' not in u_boot
    assert 'name: "0.0.0.0_8081"' in u_boot and 'name: "http.8081"' in u_boot
    assert 'path: "/dev/stdout"' in u_boot and 'path: "/dev/stdout"' in d_boot

    # proxy-config wants one bundle: the parent refuses and names them
    p = cli("proxy-config", "listeners", out)
    assert p.returncode == 1 and "istio-ingressgateway" in p.stderr and "my-user-gateway" in p.stderr
    p = cli("proxy-config", "listeners", out / "my-user-gateway")
    assert p.returncode == 0 and re.search(r"^0\.0\.0\.0\s+8081\s+ALL\s+Route: http\.8081\s*$", p.stdout, re.M), p.stdout
    # validate checks every workload with Envoy
    p = cli("validate", "-f", OPERATOR, "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [(e["workload"], e["ok"]) for e in doc["envoy"]] == [("istio-ingressgateway", True), ("my-user-gateway", True)]

    # --gateway picks one workload; its bundle is OUT itself
    out2 = tmp_path / "only-user"
    p = cli("render", "-f", OPERATOR, "--gateway", "istio=my-user-gateway", "-o", out2)
    assert p.returncode == 0, p.stderr
    assert sorted(tree(out2)) == ["Dockerfile", "envoy.yaml", "manifest.json"]
    assert (out2 / "envoy.yaml").read_bytes() == (out / "my-user-gateway" / "envoy.yaml").read_bytes()

    # a selector no workload has
    p = cli("render", "-f", OPERATOR, "--gateway", "istio=nope", "-o", tmp_path / "none")
    assert p.returncode in (1, 2) and not (tmp_path / "none").exists()


def test_operator_access_log_on_stdout(backend_factory, gateway_factory):
    web = backend_factory("webapp")
    se = f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: webapp-local, namespace: istioinaction}}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {web.port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    files = sorted((REPO / OPERATOR).glob("*.yaml"))
    gw = gateway_factory([se, *files], ports=(80,), args=["--gateway", "istio=my-user-gateway"])
    assert gw.manifest["workload"]["name"] == "my-user-gateway"
    r = http_get(gw, 80, "/api/catalog?x=1", host="user.istioinaction.io", headers={"user-agent": "cli-test/1"})
    assert r.status == 200 and r.headers["x-backend"] == "webapp"
    assert http_get(gw, 80, "/missing", host="nobody.example.com").status == 404
    # Envoy buffers file access logs (flushed every --file-flush-interval-msec, 10 s by
    # default); stopping it flushes them.
    gw.stop()
    log = gw.log_text()
    (line,) = [ln for ln in log.splitlines() if '"GET /api/catalog?x=1 HTTP/1.1" 200' in ln]
    # Istio's EnvoyTextLogFormat: user agent, authority, upstream host, upstream cluster, route
    assert '"cli-test/1"' in line and '"user.istioinaction.io"' in line, line
    assert f'"127.0.0.1:{web.port}"' in line, line
    assert " outbound|80||webapp.istioinaction.svc.cluster.local " in line, line
    assert re.search(r'"GET /missing HTTP/1\.1" 404 NR route_not_found ', log), log


EXPORT_TO = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: all-gw, namespace: istioinaction}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["private.example.com", "public.example.com"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: private-vs, namespace: istioinaction}
spec:
  hosts: ["private.example.com"]
  gateways: [all-gw]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: webapp, port: {number: 80}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: public-vs, namespace: istioinaction}
spec:
  hosts: ["public.example.com"]
  gateways: [all-gw]
  http:
  - route:
    - destination: {host: webapp, port: {number: 80}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: webapp-private, namespace: istioinaction}
spec:
  host: webapp
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
"""


def test_operator_workload_namespace_decides_export_to_visibility(tmp_path):
    # exportTo "." (VirtualService and DestinationRule in istioinaction) is visible only to
    # gateway pods in istioinaction: my-user-gateway, not istio-system/istio-ingressgateway.
    out = tmp_path / "out"
    p = cli("render", "-f", OPERATOR, "-f", "-", "-o", out, input=EXPORT_TO)
    assert p.returncode == 0, p.stderr
    default = (out / "istio-ingressgateway" / "envoy.yaml").read_text()
    user = (out / "my-user-gateway" / "envoy.yaml").read_text()
    assert '"public.example.com:80"' in default and '"private.example.com:80"' not in default
    assert '"public.example.com:80"' in user and '"private.example.com:80"' in user

    def lb(text):
        m = re.search(r'name: "outbound\|80\|\|webapp\.istioinaction\.svc\.cluster\.local"\n(?:    .*\n)*?    lb_policy: (\w+)', text)
        return m and m.group(1)

    assert lb(default) == "LEAST_REQUEST"
    assert lb(user) == "RANDOM"
