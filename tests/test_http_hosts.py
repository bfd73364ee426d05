"""Hosts, virtual hosts and Gateway/VirtualService binding end to end.

Istio reference: pilot/pkg/networking/core/gateway.go buildGatewayHTTPRouteConfig (host
intersection, vhost merge, blackhole, SortVHostRoutes), pilot/pkg/model/push_context.go
VirtualServicesForGateway (exportTo, creation order), model/gateway.go resolveGatewayName and
sanitizeServerHostNamespace; istio-semantics.md 1.4 and 2.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from harness import http_get, run_envoygen

NS = "test"


# ----------------------------------------------------------------- helpers
def gateway_doc(name: str = "gw", ns: str = NS, hosts: list[str] | None = None, port: int = 80,
                created: str | None = None, port_name: str = "http") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": port, "name": port_name, "protocol": "HTTP"}, "hosts": hosts or ["*"]}],
        },
    }


def vs_doc(name: str, hosts: list[str], http: list[dict], gateways: list[str] | None = None, ns: str = NS,
           created: str | None = None, export_to: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"hosts": hosts, "gateways": gateways or ["gw"], "http": http}
    if export_to is not None:
        spec["exportTo"] = export_to
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": meta, "spec": spec}


def se_doc(name: str, port: int, ns: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hosts": [f"{name}.{NS}.svc.cluster.local"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": port}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1"}],
        },
    }


def to(name: str) -> list[dict]:
    """Destination by FQDN, so VSs in any namespace reach the ServiceEntries of ``test``."""
    return [{"destination": {"host": f"{name}.{NS}.svc.cluster.local"}}]


def dump(*docs: dict) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def start(gateway_factory, backend_factory, names, docs):  # noqa: ANN001, ANN201
    backends = {n: backend_factory(n) for n in names}
    all_docs = [*docs, *(se_doc(n, b.port) for n, b in backends.items())]
    gw = gateway_factory(dump(*all_docs), ports=(80,))
    return gw, backends


def who(gw, host: str, path: str = "/") -> str:  # noqa: ANN001
    status, headers, _ = http_get(gw, 80, path, host=host)
    if "x-backend" in headers:
        assert status == 200
        return headers["x-backend"]
    return f"status:{status}"


def check(gw, cases: list[tuple[str, str, str]]) -> None:  # noqa: ANN001
    bad = []
    for host, path, want in cases:
        got = who(gw, host, path)
        if got != want:
            bad.append(f"{host}{path}: got {got}, want {want}")
    assert not bad, "\n".join(bad)


def route_configs(gw_or_path) -> dict[str, dict]:  # noqa: ANN001
    path = gw_or_path if isinstance(gw_or_path, Path) else gw_or_path.bootstrap_path
    out: dict[str, dict] = {}
    for listener in yaml.safe_load(path.read_text())["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config")
                if rc and rc.get("name"):
                    out[rc["name"]] = rc
    return out


def the_route_config(gw) -> dict:  # noqa: ANN001
    rcs = route_configs(gw)
    name = f"http.{gw.port(80)}"
    assert name in rcs, list(rcs)
    return rcs[name]


# ----------------------------------------------------------------- server host forms
def test_server_host_forms(backend_factory, gateway_factory):
    gw_hosts = ["exact.example.com", "*.wild.example.com", "other/ns-only.example.com",
                "other/only-other.example.com", "./dot.example.com", "./dot-foreign.example.com",
                "*/any-ns.example.com"]
    docs = [
        gateway_doc(hosts=gw_hosts),
        vs_doc("exact", ["exact.example.com"], [{"route": to("exact")}]),
        vs_doc("wild", ["*.wild.example.com"], [{"route": to("wild")}]),
        vs_doc("nsonly", ["ns-only.example.com"], [{"route": to("nsonly")}], gateways=["test/gw"], ns="other"),
        # a VS from a third namespace is not admitted by "other/only-other.example.com"
        vs_doc("intruder", ["only-other.example.com"], [{"route": to("intruder")}], gateways=["test/gw"], ns="third"),
        vs_doc("dot", ["dot.example.com"], [{"route": to("dot")}]),
        # "./dot-foreign.example.com" admits only VSs of the Gateway's namespace (test)
        vs_doc("foreign", ["dot-foreign.example.com"], [{"route": to("foreign")}], gateways=["test/gw"], ns="other"),
        vs_doc("anyns", ["any-ns.example.com"], [{"route": to("anyns")}], gateways=["test/gw"], ns="third"),
    ]
    gw, b = start(gateway_factory, backend_factory,
                  ["exact", "wild", "nsonly", "intruder", "dot", "foreign", "anyns"], docs)
    check(gw, [
        ("exact.example.com", "/", "exact"),
        ("EXACT.Example.COM", "/", "exact"),
        ("exact.example.com:12345", "/", "exact"),  # ignore_port_in_host_matching
        ("a.wild.example.com", "/", "wild"),
        ("a.b.wild.example.com", "/x", "wild"),
        ("wild.example.com", "/", "status:404"),
        ("ns-only.example.com", "/", "nsonly"),
        ("only-other.example.com", "/", "status:404"),
        ("dot.example.com", "/", "dot"),
        ("dot-foreign.example.com", "/", "status:404"),
        ("any-ns.example.com", "/", "anyns"),
        ("unknown.example.com", "/", "status:404"),
    ])
    status, headers, _ = http_get(gw, 80, "/", host="unknown.example.com")
    assert status == 404 and headers["server"] == "istio-envoy"
    assert b["intruder"].count == 0 and b["foreign"].count == 0
    names = sorted(vh["name"] for vh in the_route_config(gw)["virtual_hosts"])
    assert names == sorted(["exact.example.com:80", "*.wild.example.com:80", "ns-only.example.com:80",
                            "dot.example.com:80", "any-ns.example.com:80"]), names


def test_host_intersection_and_gateways_merged_on_one_port(backend_factory, gateway_factory):
    docs = [
        gateway_doc("gw-star", hosts=["*"], created="2024-01-01T00:00:00Z"),
        gateway_doc("gw-foo", hosts=["foo.bar", "example.org"], created="2024-01-02T00:00:00Z", port_name="http-foo"),
        vs_doc("org", ["*.org"], [{"route": to("org")}], gateways=["gw-star"]),
        vs_doc("star", ["*"], [{"route": to("star")}], gateways=["gw-foo"]),
    ]
    gw, _ = start(gateway_factory, backend_factory, ["org", "star"], docs)
    check(gw, [
        ("x.org", "/", "org"),           # server * ∩ VS *.org → *.org
        ("a.b.org", "/p", "org"),
        ("x.org:80", "/", "org"),
        ("foo.bar", "/", "star"),        # server foo.bar ∩ VS * → foo.bar
        ("foo.bar:12345", "/", "star"),
        ("example.org", "/", "star"),    # exact vhost example.org beats *.org
        ("other.bar", "/", "status:404"),
        ("x.com", "/", "status:404"),
    ])
    rc = the_route_config(gw)
    assert sorted(vh["name"] for vh in rc["virtual_hosts"]) == ["*.org:80", "example.org:80", "foo.bar:80"]
    for vh in rc["virtual_hosts"]:
        assert vh["domains"] == [vh["name"].rsplit(":", 1)[0]], vh["domains"]
        assert vh["include_request_attempt_count"] is True
    assert rc["ignore_port_in_host_matching"] is True
    assert rc["validate_clusters"] is False
    # one HTTP listener for both Gateways
    listeners = [lst for lst in yaml.safe_load(gw.bootstrap_path.read_text())["static_resources"]["listeners"]
                 if lst["name"] == f"0.0.0.0_{gw.port(80)}"]
    assert len(listeners) == 1 and len(listeners[0]["filter_chains"]) == 1


# ----------------------------------------------------------------- several VirtualServices for one host
def test_virtual_services_for_one_host_combine_in_creation_order(backend_factory, gateway_factory):
    H = "combo.example.com"
    N = "byname.example.com"
    docs = [
        gateway_doc(),
        # zeta is older than alpha: its routes come first although its name sorts last
        vs_doc("zeta", [H], [{"match": [{"uri": {"prefix": "/a"}}], "route": to("za")}, {"route": to("zdefault")}],
               created="2024-01-01T00:00:00Z"),
        vs_doc("alpha", [H], [{"match": [{"uri": {"prefix": "/a"}}], "route": to("aa")},
                              {"match": [{"uri": {"prefix": "/b"}}], "route": to("ab")},
                              {"route": to("adefault")}],
               created="2024-01-02T00:00:00Z"),
        # same creation time (none): by name
        vs_doc("m1", [N], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("m1x")}]),
        vs_doc("m0", [N], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("m0x")}, {"route": to("m0default")}]),
    ]
    gw, b = start(gateway_factory, backend_factory,
                  ["za", "zdefault", "aa", "ab", "adefault", "m1x", "m0x", "m0default"], docs)
    check(gw, [
        (H, "/a/1", "za"),          # the older VS wins the conflict
        (H, "/b/1", "ab"),          # zeta's catch-all was moved after alpha's /b
        (H, "/c", "zdefault"),      # catch-alls keep their relative (creation) order
        (N, "/x", "m0x"),
        (N, "/y", "m0default"),
    ])
    routes = next(vh for vh in the_route_config(gw)["virtual_hosts"] if vh["name"] == f"{H}:80")["routes"]
    clusters = [r["route"]["cluster"].split("|")[3].split(".")[0] for r in routes]
    assert clusters == ["za", "aa", "ab", "zdefault", "adefault"], clusters
    # the analyzer points at the shadowed routes of the younger VS
    assert "EG0213" in gw.render_result.stderr, gw.render_result.stderr
    assert b["aa"].count == 0 and b["adefault"].count == 0 and b["m1x"].count == 0


# ----------------------------------------------------------------- blackhole, exportTo
def test_no_virtual_service_blackholes_every_request(gateway_factory):
    gw = gateway_factory(dump(gateway_doc(hosts=["*"])), ports=(80,))
    for host in ("a.example.com", "b.example.com", "127.0.0.1"):
        status, headers, _ = http_get(gw, 80, "/", host=host)
        assert status == 404 and headers["server"] == "istio-envoy"
    rc = the_route_config(gw)
    assert rc["virtual_hosts"] == [{"name": "blackhole:80", "domains": ["*"], "routes": []}] or (
        [vh["name"] for vh in rc["virtual_hosts"]] == ["blackhole:80"]
        and rc["virtual_hosts"][0]["domains"] == ["*"] and not rc["virtual_hosts"][0].get("routes"))


def test_export_to_is_relative_to_the_gateway_workload_namespace(backend_factory, gateway_factory):
    docs = [
        gateway_doc(ns="istio-system"),
        # private to test: the gateway pods live in istio-system, so not seen
        vs_doc("private-test", ["private-test.example.com"], [{"route": to("privtest")}],
               gateways=["istio-system/gw"], export_to=["."]),
        # private to istio-system: seen
        vs_doc("private-sys", ["private-sys.example.com"], [{"route": to("privsys")}],
               gateways=["gw"], ns="istio-system", export_to=["."]),
        # exported to istio-system: seen; exported elsewhere only: not seen
        vs_doc("exported", ["exported.example.com"], [{"route": to("exported")}],
               gateways=["istio-system/gw"], export_to=["istio-system"]),
        vs_doc("elsewhere", ["elsewhere.example.com"], [{"route": to("elsewhere")}],
               gateways=["istio-system/gw"], export_to=["other"]),
        vs_doc("public", ["public.example.com"], [{"route": to("public")}],
               gateways=["istio-system/gw"], export_to=["*"]),
    ]
    gw, b = start(gateway_factory, backend_factory,
                  ["privtest", "privsys", "exported", "elsewhere", "public"], docs)
    check(gw, [
        ("private-test.example.com", "/", "status:404"),
        ("private-sys.example.com", "/", "privsys"),
        ("exported.example.com", "/", "exported"),
        ("elsewhere.example.com", "/", "status:404"),
        ("public.example.com", "/", "public"),
    ])
    assert b["privtest"].count == 0 and b["elsewhere"].count == 0


# ----------------------------------------------------------------- gateway references
def test_gateway_reference_forms(backend_factory, gateway_factory):
    docs = [
        gateway_doc("gw", ns="edge"),
        vs_doc("short", ["short.example.com"], [{"route": to("short")}], gateways=["gw"], ns="edge"),
        vs_doc("dotref", ["dotref.example.com"], [{"route": to("dotref")}], gateways=["./gw"], ns="edge"),
        vs_doc("nsref", ["nsref.example.com"], [{"route": to("nsref")}], gateways=["edge/gw"], ns="apps"),
        vs_doc("legacy", ["legacy.example.com"], [{"route": to("legacy")}],
               gateways=["gw.edge.svc.cluster.local"], ns="apps"),
        # bound to the mesh only: never on the ingress gateway
        vs_doc("meshonly", ["meshonly.example.com"], [{"route": to("meshonly")}], gateways=["mesh"], ns="edge"),
        # no gateways at all: the mesh pseudo-gateway only
        {**vs_doc("nogw", ["nogw.example.com"], [{"route": to("meshonly")}], ns="edge"),
         "spec": {"hosts": ["nogw.example.com"], "http": [{"route": to("meshonly")}]}},
    ]
    gw, b = start(gateway_factory, backend_factory, ["short", "dotref", "nsref", "legacy", "meshonly"], docs)
    check(gw, [
        ("short.example.com", "/", "short"),
        ("dotref.example.com", "/", "dotref"),
        ("nsref.example.com", "/", "nsref"),
        ("legacy.example.com", "/", "legacy"),
        ("meshonly.example.com", "/", "status:404"),
        ("nogw.example.com", "/", "status:404"),
    ])
    assert b["meshonly"].count == 0


def test_match_gateways_restricts_a_route_to_one_gateway(backend_factory, gateway_factory):
    docs = [
        gateway_doc("gw-a", hosts=["a.example.com"], created="2024-01-01T00:00:00Z"),
        gateway_doc("gw-b", hosts=["b.example.com"], created="2024-01-02T00:00:00Z", port_name="http-b"),
        vs_doc("both", ["a.example.com", "b.example.com"], [
            {"match": [{"gateways": ["gw-a"], "uri": {"prefix": "/only-a"}}], "route": to("onlya")},
            {"match": [{"gateways": ["test/gw-b"]}], "route": to("onlyb")},
            {"route": to("common")},
        ], gateways=["gw-a", "gw-b"]),
    ]
    gw, b = start(gateway_factory, backend_factory, ["onlya", "onlyb", "common"], docs)
    check(gw, [
        ("a.example.com", "/only-a/x", "onlya"),
        ("a.example.com", "/other", "common"),
        ("b.example.com", "/only-a/x", "onlyb"),
        ("b.example.com", "/other", "onlyb"),
    ])


def test_match_gateways_with_a_host_shared_by_two_gateways(backend_factory, gateway_factory):
    """Istio appends each server's routes for the same VS into the shared vhost
    (gateway.go: vHost.Routes = append(vHost.Routes, routes...)); routes built for gw-b keep
    their gw-b-only match. gw-a: [common(/)]; gw-b: [onlyb(/b), common(/)] → sorted:
    [onlyb /b, common /, common /] so /b reaches onlyb."""
    docs = [
        gateway_doc("gw-a", hosts=["shared.example.com"], created="2024-01-01T00:00:00Z"),
        gateway_doc("gw-b", hosts=["shared.example.com"], created="2024-01-02T00:00:00Z", port_name="http-b"),
        vs_doc("shared", ["shared.example.com"], [
            {"match": [{"gateways": ["gw-b"], "uri": {"prefix": "/b"}}], "route": to("onlyb")},
            {"route": to("common")},
        ], gateways=["gw-a", "gw-b"]),
    ]
    gw, b = start(gateway_factory, backend_factory, ["onlyb", "common"], docs)
    check(gw, [
        ("shared.example.com", "/b/1", "onlyb"),
        ("shared.example.com", "/c", "common"),
    ])


# ----------------------------------------------------------------- names with the default port map
def test_names_with_default_port_map(tmp_path):
    src = tmp_path / "in.yaml"
    src.write_text(dump(
        gateway_doc("coolstore-gateway", ns="istioinaction", hosts=["webapp.istioinaction.io"]),
        vs_doc("webapp-vs", ["webapp.istioinaction.io"], [{"route": [{"destination": {"host": "webapp", "port": {"number": 80}}}]}],
               gateways=["coolstore-gateway"], ns="istioinaction"),
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
         "metadata": {"name": "webapp", "namespace": "istioinaction"},
         "spec": {"hosts": ["webapp.istioinaction.svc.cluster.local"],
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8081}],
                  "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}]}},
    ))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", src, "-o", out])
    assert p.returncode == 0, p.stderr
    boot = yaml.safe_load((out / "envoy.yaml").read_text())
    names = [lst["name"] for lst in boot["static_resources"]["listeners"]]
    assert "0.0.0.0_8080" in names, names
    rcs = route_configs(out / "envoy.yaml")
    assert list(rcs) == ["http.8080"], list(rcs)
    assert [vh["name"] for vh in rcs["http.8080"]["virtual_hosts"]] == ["webapp.istioinaction.io:80"]
    route = rcs["http.8080"]["virtual_hosts"][0]["routes"][0]
    assert route["route"]["cluster"] == "outbound|80||webapp.istioinaction.svc.cluster.local"
    vhost = rcs["http.8080"]["virtual_hosts"][0]
    # the VirtualService of every route of the virtual host: stated once on it (issue 14's lean bootstrap)
    assert "metadata" not in route
    assert vhost["metadata"]["filter_metadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1/namespaces/istioinaction/virtual-service/webapp-vs"

    p = run_envoygen(["proxy-config", "routes", out, "-o", "json"])
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert [rc.get("name", "") for rc in data] == ["http.8080", "", ""]  # then the inline stats and readiness routes
    assert [vh["name"] for vh in data[0]["virtualHosts"]] == ["webapp.istioinaction.io:80"]
    p = run_envoygen(["proxy-config", "routes", out])
    assert p.returncode == 0 and "http.8080" in p.stdout and "webapp.istioinaction.io" in p.stdout, p.stdout


def test_config_dump_names_in_a_running_gateway(backend_factory, gateway_factory):
    be = backend_factory("webapp")
    gw, _ = start(gateway_factory, backend_factory, [], [
        gateway_doc("coolstore-gateway", ns=NS, hosts=["webapp.istioinaction.io"]),
        vs_doc("webapp-vs", ["webapp.istioinaction.io"], [{"route": to("webapp")}], gateways=["coolstore-gateway"]),
        se_doc("webapp", be.port),
    ])
    assert who(gw, "webapp.istioinaction.io") == "webapp"
    dump_ = gw.config_dump()
    text = json.dumps(dump_)
    assert '"webapp.istioinaction.io:80"' in text
    assert f'"http.{gw.port(80)}"' in text
    assert "outbound|80||webapp.test.svc.cluster.local" in gw.admin("clusters")


# ----------------------------------------------------------------- more host shapes
def test_gateway_creation_order_decides_route_order_across_gateways(backend_factory, gateway_factory):
    """Servers are merged in Gateway creation order (then name), and each server's VSs are
    appended in that order: the older Gateway's VS wins a conflicting match."""
    H = "order.example.com"
    T = "tie.example.com"
    docs = [
        gateway_doc("zz-old", hosts=[H], created="2024-01-01T00:00:00Z"),
        gateway_doc("aa-new", hosts=[H], created="2024-02-01T00:00:00Z", port_name="http-new"),
        vs_doc("on-new", [H], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("vnew")}], gateways=["aa-new"],
               created="2023-01-01T00:00:00Z"),
        vs_doc("on-old", [H], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("vold")}], gateways=["zz-old"],
               created="2023-06-01T00:00:00Z"),
        # same creation time: by name (b-gw before c-gw)
        gateway_doc("c-gw", hosts=[T], port_name="http-c"),
        gateway_doc("b-gw", hosts=[T], port_name="http-b"),
        vs_doc("on-c", [T], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("vc")}], gateways=["c-gw"]),
        vs_doc("on-b", [T], [{"match": [{"uri": {"prefix": "/x"}}], "route": to("vb")}], gateways=["b-gw"]),
    ]
    gw, b = start(gateway_factory, backend_factory, ["vnew", "vold", "vc", "vb"], docs)
    check(gw, [(H, "/x", "vold"), (T, "/x", "vb")])
    assert b["vnew"].count == 0 and b["vc"].count == 0


def test_host_case_short_names_and_wildcard_intersection(backend_factory, gateway_factory):
    docs = [
        gateway_doc(hosts=["*.example.com", "webapp.test.svc.cluster.local", "*.svc.cluster.local"]),
        # Istio lower-cases intersected hostnames: both VSs land in one vhost mixed.example.com
        vs_doc("mixed-upper", ["Mixed.Example.com"], [{"match": [{"uri": {"prefix": "/u"}}], "route": to("upper")}],
               created="2024-01-01T00:00:00Z"),
        vs_doc("mixed-lower", ["mixed.example.com"], [{"route": to("lower")}], created="2024-01-02T00:00:00Z"),
        # a short VS host resolves in the VS namespace
        vs_doc("short", ["webapp"], [{"route": to("short")}]),
        # wildcard ∩ wildcard keeps the more specific one
        vs_doc("deep", ["*.deep.example.com"], [{"route": to("deep")}]),
    ]
    gw, b = start(gateway_factory, backend_factory, ["upper", "lower", "short", "deep"], docs)
    check(gw, [
        ("mixed.example.com", "/u", "upper"),
        ("MIXED.example.com", "/other", "lower"),
        ("webapp.test.svc.cluster.local", "/", "short"),
        ("webapp", "/", "status:404"),
        ("a.deep.example.com", "/", "deep"),
        ("deep.example.com", "/", "status:404"),
    ])
    names = sorted(vh["name"] for vh in the_route_config(gw)["virtual_hosts"])
    assert names == ["*.deep.example.com:80", "mixed.example.com:80", "webapp.test.svc.cluster.local:80"], names


def test_export_to_dot_among_other_namespaces(backend_factory, gateway_factory):
    """``.`` in a longer exportTo list still means the VS's own namespace (Istio resolves it when
    building the visibility set: model/virtualservice.go / push_context.go initVirtualServices)."""
    docs = [
        gateway_doc(ns="istio-system"),
        vs_doc("dot-and-other", ["dot-and-other.example.com"], [{"route": to("dotother")}],
               gateways=["gw"], ns="istio-system", export_to=[".", "other"]),
        vs_doc("test-dot-and-sys", ["test-dot-sys.example.com"], [{"route": to("testdotsys")}],
               gateways=["istio-system/gw"], export_to=[".", "istio-system"]),
    ]
    gw, _ = start(gateway_factory, backend_factory, ["dotother", "testdotsys"], docs)
    check(gw, [
        ("dot-and-other.example.com", "/", "dotother"),
        ("test-dot-sys.example.com", "/", "testdotsys"),
    ])


def test_two_servers_of_one_gateway_on_port_80(backend_factory, gateway_factory):
    gw_doc = gateway_doc("multi", hosts=["a.multi.example.com"])
    gw_doc["spec"]["servers"].append({"port": {"number": 80, "name": "http-b", "protocol": "HTTP"},
                                      "hosts": ["b.multi.example.com"]})
    gw, b = start(gateway_factory, backend_factory, ["anyhost"], [
        gw_doc, vs_doc("anyhost", ["*"], [{"route": to("anyhost")}], gateways=["multi"])])
    check(gw, [
        ("a.multi.example.com", "/", "anyhost"),
        ("b.multi.example.com", "/", "anyhost"),
        ("c.multi.example.com", "/", "status:404"),
    ])
    assert sorted(vh["name"] for vh in the_route_config(gw)["virtual_hosts"]) == [
        "a.multi.example.com:80", "b.multi.example.com:80"]


def test_short_gateway_name_resolves_in_the_vs_namespace(gateway_factory):
    """``gateways: [gw]`` in namespace apps means apps/gw (resolveGatewayName), not edge/gw:
    Istio would bind nothing; envoygen reports the dangling reference as EG0201."""
    docs = [gateway_doc("gw", ns="edge"),
            vs_doc("wrongns", ["wrongns.example.com"], [{"route": to("x")}], gateways=["gw"], ns="apps"),
            se_doc("x", 9)]
    gw = gateway_factory(dump(*docs), ports=(80,), start=False)
    code, _, stderr, _ = gw.render()
    assert code == 1, stderr
    assert "EG0201" in stderr and "apps/gw" in stderr and "spec.gateways[0]" in stderr, stderr
