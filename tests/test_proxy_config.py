"""istioctl proxy-config parity (issue 12): command names and aliases, columns,
sort orders, filters, output modes, and the golden tables of every sample.

Golden tables live in tests/proxy_config_expected/<sample>/<kind>.txt;
ENVOYGEN_UPDATE_GOLDEN=1 rewrites them (review the diff).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
EXPECTED = REPO / "tests" / "proxy_config_expected"
SAMPLES = ["coolstore", "coolstore-https", "coolstore-mtls", "coolstore-multihost", "coolstore-redirect",
           "sni-passthrough", "tcp-echo"]
KINDS = ["listeners", "routes", "clusters", "endpoints", "secrets"]
UPDATE = os.environ.get("ENVOYGEN_UPDATE_GOLDEN") == "1"


def pc(*args: object) -> str:
    p = run_envoygen(["proxy-config", *map(str, args)])
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pc")
    out = {}
    for s in SAMPLES:
        extra = REPO / "samples" / s / "render.args"  # as tests/test_golden.py renders the samples
        args = [ln.strip() for ln in extra.read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")] if extra.is_file() else []
        p = run_envoygen(["render", "-q", "-f", f"samples/{s}", "-o", str(root / s), *args], cwd=REPO)
        assert p.returncode == 0, p.stderr
        out[s] = root / s
    return out


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("kind", KINDS)
def test_golden_tables(bundles, sample: str, kind: str) -> None:
    got = pc(kind, bundles[sample])
    f = EXPECTED / sample / f"{kind}.txt"
    if UPDATE:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(got)
    assert got == f.read_text(), f"{f} differs (ENVOYGEN_UPDATE_GOLDEN=1 to rewrite)"


# The coolstore commands of the istioctl walkthroughs this project starts from
# (deploy/istio-ingressgateway replaced by the bundle; everything else unchanged).
SEED_COMMANDS = [
    "proxy-config routes {b} -n istio-system --name http.8080 -o json",
    "proxy-config listener {b} -n istio-system",
    "proxy-config listeners {b} --port 8080",
    "proxy-config routes {b} --name http.8080",
    "proxy-config cluster {b} --fqdn catalog.istioinaction.svc.cluster.local --port 80",
    "pc clusters {b} --fqdn webapp.istioinaction.svc.cluster.local --port 80 --direction outbound -o json",
    "proxy-config endpoints {b} --cluster outbound|80||webapp.istioinaction.svc.cluster.local",
    "proxy-config endpoint {b} --port 8080",
    "proxy-config secret {b} -n istio-system",
    "pc secrets {b} -o json",
    "proxy-config all {b}",
    "proxy-config bootstrap {b} -o json",
    "proxy-config listeners {b} --address 0.0.0.0 -o yaml",
    "proxy-config listeners {b} --type HTTP --address 0.0.0.0 -o json",
    "proxy-config routes {b} --verbose=false",
]


@pytest.mark.parametrize("line", SEED_COMMANDS)
def test_istioctl_command_lines_run_unchanged(bundles, line: str) -> None:
    args = [a.replace("{b}", str(bundles["coolstore"])) for a in shlex.split(line)]
    p = run_envoygen(args)
    assert p.returncode == 0, (line, p.stderr)
    assert p.stdout.strip(), line
    if "-o json" in line:
        json.loads(p.stdout)
    elif "-o yaml" in line:
        yaml.safe_load(p.stdout)


def test_route_json_is_protobuf_json_like_istioctl(bundles) -> None:
    data = json.loads(pc("routes", bundles["coolstore"], "--name", "http.8080", "-o", "json"))
    assert [rc["name"] for rc in data] == ["http.8080"]
    route = data[0]["virtualHosts"][0]["routes"][0]
    assert route["route"]["cluster"] == "outbound|80||webapp.istioinaction.svc.cluster.local"
    # camelCase field names ... (the default retry policy, on every route, is stated once on the virtual host)
    assert data[0]["virtualHosts"][0]["retryPolicy"]["retryOn"] and "retryPolicy" not in route["route"]
    # the VirtualService every route of the virtual host comes from, stated once there too
    vhost_meta = data[0]["virtualHosts"][0]["metadata"]
    assert vhost_meta["filterMetadata"]["istio"]["config"].endswith("/virtual-service/webapp-vs-from-gw")
    assert "metadata" not in route
    # ... map keys are data (the 'istio' key of filterMetadata stays as written)
    text = json.dumps(data)
    assert "virtual_hosts" not in text and "retry_policy" not in text


def test_singular_plural_and_short_aliases_agree(bundles) -> None:
    b = bundles["coolstore"]
    for names in (["listener", "listeners", "l"], ["route", "routes", "r"], ["cluster", "clusters", "c"],
                  ["endpoint", "endpoints", "ep"], ["secret", "secrets", "s"]):
        outs = {pc(n, b) for n in names}
        assert len(outs) == 1, names
    assert run_envoygen(["pc", "clusters", str(b)]).stdout == pc("clusters", b)


def test_cluster_filters_and_destination_rule_column(bundles) -> None:
    b = bundles["tcp-echo"]
    table = pc("clusters", b).splitlines()
    assert table[0].split() == ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION", "RULE"]
    row = next(ln.split() for ln in table if ln.startswith("tcp-echo."))
    assert row[-1] == "tcp-echo.tcp-echo"  # DestinationRule name.namespace, from the cluster's istio metadata
    names = [ln.split()[0] for ln in table[1:]]
    assert names == sorted(names)  # istioctl sorts by FQDN, subset, port, direction
    assert pc("clusters", b, "--fqdn", "nothing-like-it").splitlines()[1:] == []
    assert len(pc("clusters", b, "--port", "9000").splitlines()) == 2
    assert len(pc("clusters", b, "--direction", "outbound", "--port", "9000").splitlines()) == 2
    assert pc("clusters", b, "--subset", "v9").splitlines()[1:] == []


def test_routes_virtual_service_column_and_inline_rows(bundles) -> None:
    rows = [ln.split() for ln in pc("routes", bundles["coolstore"]).splitlines()]
    assert rows[0] == ["NAME", "VHOST", "NAME", "DOMAINS", "MATCH", "VIRTUAL", "SERVICE"]
    assert ["http.8080", "webapp.istioinaction.io:80", "webapp.istioinaction.io", "/*",
            "webapp-vs-from-gw.istioinaction"] in rows
    assert ["backend", "*", "/stats/prometheus"] in rows and ["backend", "*", "/healthz/ready"] in rows
    only = pc("routes", bundles["coolstore"], "--name", "http.8080").splitlines()
    assert len(only) == 2 and "backend" not in only[1]


def test_listener_and_endpoint_filters(bundles) -> None:
    b = bundles["coolstore"]
    assert [ln.split()[1] for ln in pc("listeners", b, "--port", "15021").splitlines()[1:]] == ["15021"]
    assert pc("listeners", b, "--address", "10.0.0.1").splitlines()[1:] == []
    eps = pc("endpoints", b, "--cluster", "outbound|80||catalog.istioinaction.svc.cluster.local").splitlines()
    assert eps[0].split() == ["ENDPOINT", "STATUS", "OUTLIER", "CHECK", "CLUSTER"]
    assert [ln.split()[:3] for ln in eps[1:]] == [["catalog.istioinaction.svc.cluster.local:3000", "HEALTHY", "OK"]]
    assert pc("endpoints", b, "--status", "UNHEALTHY").splitlines()[1:] == []


def test_secret_serial_is_istioctl_hex_with_status(bundles) -> None:
    rows = [ln.split() for ln in pc("secret", bundles["coolstore-mtls"]).splitlines()]
    assert rows[0] == ["RESOURCE", "NAME", "TYPE", "STATUS", "VALID", "CERT", "SERIAL", "NUMBER", "NOT", "AFTER",
                       "NOT", "BEFORE"]
    data = {s["resource_name"]: s for s in json.loads(pc("secret", bundles["coolstore-mtls"], "-o", "json"))}
    for row in rows[1:]:
        s = data[row[0]]
        assert row[-5:-3] == ["ACTIVE", "true"]
        # istioctl: fmt.Sprintf("%032x", cert.SerialNumber)
        assert row[-3] == s["serial_number"] == format(int(s["serial"], 16), "032x")
        assert "PRIVATE" not in json.dumps(s)


def test_namespace_must_match_the_bundle(bundles) -> None:
    p = run_envoygen(["proxy-config", "routes", str(bundles["coolstore"]), "-n", "default"])
    assert p.returncode == 1 and "istio-system" in p.stderr


def test_listener_type_filter_and_short_forms(bundles) -> None:
    b = bundles["tcp-echo"]
    tcp = pc("listeners", b, "--type", "TCP").splitlines()
    assert [ln.split()[1] for ln in tcp[1:]] == ["31400"]
    short = [ln.split() for ln in pc("listeners", b, "--verbose=false").splitlines()]
    assert short == [["ADDRESSES", "PORT", "TYPE"], ["0.0.0.0", "15021", "HTTP"], ["0.0.0.0", "15090", "HTTP"],
                     ["0.0.0.0", "31400", "TCP"]]
    routes = [ln.split() for ln in pc("routes", bundles["coolstore"], "--verbose=false").splitlines()]
    assert routes[:2] == [["NAME", "VIRTUAL", "HOSTS"], ["http.8080", "1"]]
