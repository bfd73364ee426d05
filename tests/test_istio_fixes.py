"""Issue 10's fixes: inputs Istio accepts that envoygen refused, and mistakes that exited 0.

Each test drives the real CLI; the ones that build run the stock Envoy and a real client.
Istio references: pilot/pkg/networking/core/listener.go (toFilterChainMatch), gateway.go
(route names with ``.<bind>``), model/virtualservice.go (gateways that exist), istio/api
virtual_service.proto (HTTPRedirect.prefix_rewrite).
"""

from __future__ import annotations

import yaml

from harness import LOCALHOST, http_get, run_envoygen, tls_exchange, tls_handshake

from istio_docs import NS, dump, gateway_doc, se_doc, start, to, vs_doc


def _render(tmp_path, text: str, *args: str):  # noqa: ANN202
    f = tmp_path / "in.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    return run_envoygen(["render", "-f", str(f), "-o", str(out), *args]), out


def _tree(d) -> dict:  # noqa: ANN001
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _keep_out(tmp_path) -> dict:  # noqa: ANN001
    """A good bundle in ``tmp_path/out`` (what a refused input must leave untouched); its files."""
    p, out = _render(tmp_path, dump(gateway_doc(), vs_doc("vs", ["a.example.com"], [{"directResponse": {"status": 200}}])))
    assert p.returncode == 0, p.stderr
    return _tree(out)


def test_misspelt_kind_in_an_istio_group_is_an_error_with_a_suggestion(tmp_path):
    before = _keep_out(tmp_path)
    text = dump(gateway_doc(), {"apiVersion": "networking.istio.io/v1", "kind": "VirtualSevice",
                                "metadata": {"name": "vs", "namespace": NS}, "spec": {"hosts": ["a"]}},
                {"apiVersion": "security.istio.io/v1", "kind": "Mesh", "metadata": {"name": "p"}})
    p, out = _render(tmp_path, text)
    assert p.returncode == 1, p.stderr
    assert "EG0007 VirtualSevice vs: networking.istio.io has no kind VirtualSevice; did you mean VirtualService? [kind]" in p.stderr
    assert "EG0007 Mesh p: security.istio.io has no kind Mesh; its kinds are AuthorizationPolicy, PeerAuthentication" in p.stderr
    assert _tree(out) == before
    # a kind of another group is still skipped (info), not refused
    p, _ = _render(tmp_path, dump(gateway_doc(), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
                                  vs_doc("vs", ["a.example.com"], [{"directResponse": {"status": 200}}])))
    assert p.returncode == 0, p.stderr
    assert "info EG0005 ConfigMap c (v1) does not configure the gateway; skipped" in p.stderr


def test_no_gateway_at_all_is_an_error_and_out_is_untouched(tmp_path):
    before = _keep_out(tmp_path)
    for text in ("", "# only a comment\n", dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})):
        p, out = _render(tmp_path, text)
        assert p.returncode == 1, p.stderr
        assert "EG0212 no Gateway selects gateway workload istio-system/istio-ingressgateway" in p.stderr, p.stderr
        assert _tree(out) == before


def test_gateway_whose_every_server_has_no_listener_is_an_error(tmp_path):
    """A TLS SIMPLE-less PASSTHROUGH server with no TLS route: Istio omits the listener; with
    nothing else on the gateway the bundle would serve nothing."""
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
          "spec": {"selector": {"istio": "ingressgateway"},
                   "servers": [{"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["*"],
                                "tls": {"mode": "PASSTHROUGH"}}]}}
    before = _keep_out(tmp_path)
    p, out = _render(tmp_path, dump(gw))
    assert p.returncode == 1, p.stderr
    assert "warning EG0212 no listener for 0.0.0.0_8443" in p.stderr
    assert ("EG0212 gateway workload istio-system/istio-ingressgateway (app=istio-ingressgateway,istio=ingressgateway): "
            "no server of its Gateways produces a listener") in p.stderr
    assert _tree(out) == before


def test_null_optional_fields_are_unset(backend_factory, gateway_factory):
    """Kubernetes treats ``field:`` with no value as unset (Istio's samples/addons/kiali.yaml has
    ``annotations:``); so does envoygen, in every object it models."""
    text = f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: {NS}
  annotations:
  labels:
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
    tls:
    bind:
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: {NS}, annotations: }}
spec:
  hosts: [null.example.com]
  gateways: [gw]
  exportTo:
  http:
  - match:
    route:
    - destination: {{host: be, subset: }}
      headers:
    timeout:
---
apiVersion: v1
kind: Service
metadata: {{name: other, namespace: {NS}, annotations: }}
spec:
  selector:
  ports: [{{port: 80, name: http}}]
"""
    be = backend_factory("be")
    gw = gateway_factory(text + "---\n" + dump(se_doc("be", be.port)), ports=(80,))
    status, headers, _ = http_get(gw, 80, "/", host="null.example.com")
    assert (status, headers["x-backend"]) == (200, "be")


def test_passthrough_sni_star_leaves_server_names_out(backend_factory, gateway_factory, cert_authority, tmp_path):
    """``sniHosts: ["*"]``: Istio's toFilterChainMatch leaves server_names out (Envoy refuses a
    partial wildcard); the chain then takes every SNI."""
    d = cert_authority.issue("any.example.com").write(tmp_path / "c", ca=False)
    be = backend_factory.tls("be", cert=d / "tls.crt", key=d / "tls.key")
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    docs = [
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["*"],
                               "tls": {"mode": "PASSTHROUGH"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs", "namespace": NS},
         "spec": {"hosts": ["*"], "gateways": ["gw"],
                  "tls": [{"match": [{"sniHosts": ["*"]}], "route": to("be", port={"number": 443})}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "be", "namespace": NS},
         "spec": {"hosts": [f"be.{NS}.svc.cluster.local"], "resolution": "STATIC",
                  "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": be.port}],
                  "endpoints": [{"address": "127.0.0.1"}]}},
    ]
    gw = gateway_factory(dump(*docs), ports=(443,))
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    (lst,) = [x for x in boot["static_resources"]["listeners"] if x["name"] == f"0.0.0.0_{gw.port(443)}"]
    assert all("server_names" not in c.get("filter_chain_match", {}) for c in lst["filter_chains"]), lst
    for sni in ("any.example.com", "other.example.org"):
        hs = tls_handshake(LOCALHOST, gw.port(443), sni, ca=ca, verify=False)
        assert hs.ok and hs.subject_cn == "any.example.com", (sni, hs.error)
    assert tls_exchange(gw.port(443), "x.example.com", b"hi\n", verify=False) == b"be\n"


def test_same_port_on_two_bind_addresses_gives_two_listeners(backend_factory, gateway_factory):
    """Istio emits a listener per (bind, port) and suffixes the route name with ``.<bind>``; Envoy binds
    0.0.0.0:P and 127.0.0.2:P side by side (SO_REUSEPORT).  The client only uses 127.0.0.1, which the
    0.0.0.0 listener answers; the other is checked in Envoy's own listener list."""
    a, b = backend_factory("a"), backend_factory("b")
    gws = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
           "spec": {"selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["a.example.com"]},
                                {"port": {"number": 80, "name": "http-local", "protocol": "HTTP"},
                                 "hosts": ["b.example.com"], "bind": "127.0.0.2"}]}}
    docs = [gws, vs_doc("a", ["a.example.com"], [{"route": to("a")}]), vs_doc("b", ["b.example.com"], [{"route": to("b")}]),
            se_doc("a", a.port), se_doc("b", b.port)]
    gw = gateway_factory(dump(*docs), ports=(80,))
    port = gw.port(80)
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    names = sorted(x["name"] for x in boot["static_resources"]["listeners"] if x["name"].endswith(f"_{port}"))
    assert names == [f"0.0.0.0_{port}", f"127.0.0.2_{port}"]
    listeners = gw.admin("listeners")
    assert f"0.0.0.0_{port}::0.0.0.0:{port}" in listeners and f"127.0.0.2_{port}::127.0.0.2:{port}" in listeners, listeners
    rcs = {f["typed_config"]["route_config"].get("name") for x in boot["static_resources"]["listeners"]
           for c in x["filter_chains"] for f in c["filters"] if "route_config" in f.get("typed_config", {})}
    assert {f"http.{port}", f"http.{port}.127.0.0.2"} <= rcs, rcs
    status, headers, _ = http_get(gw, 80, "/", host="a.example.com")
    assert (status, headers["x-backend"]) == (200, "a")
    assert http_get(gw, 80, "/", host="b.example.com").status == 404  # b is served on 127.0.0.2 only


def test_same_bind_and_port_twice_is_still_eg0214(tmp_path):
    text = dump(gateway_doc(), vs_doc("vs", ["a.example.com"], [{"directResponse": {"status": 200}}]))
    p, out = _render(tmp_path, text, "--port-map", "80=15000", "--admin-port", "15000")
    assert p.returncode == 1, p.stderr
    assert "EG0214" in p.stderr and "Envoy could not bind it twice" in p.stderr, p.stderr
    assert not out.exists()


def test_virtual_service_with_some_missing_gateways_binds_to_those_that_exist(backend_factory, gateway_factory, tmp_path):
    docs = [gateway_doc(), vs_doc("vs", ["a.example.com"], [{"route": to("a")}], gateways=["gw", "other-team/gw"])]
    gw, _ = start(gateway_factory, backend_factory, ["a"], docs)
    status, headers, _ = http_get(gw, 80, "/", host="a.example.com")
    assert (status, headers["x-backend"]) == (200, "a")
    assert "warning EG0201 VirtualService test/vs: gateway other-team/gw does not exist in the input; " \
           f"it binds to {NS}/gw only [spec.gateways[1]]" in gw.render_result.stderr
    # none of them exists: an error
    p, out = _render(tmp_path, dump(gateway_doc(), vs_doc("vs", ["a.example.com"], [{"directResponse": {"status": 200}}],
                                                          gateways=["other-team/gw"])))
    assert p.returncode == 1
    assert "EG0201 VirtualService test/vs: gateway other-team/gw does not exist in the input (none of its gateways does)" in p.stderr


def test_redirect_prefix_rewrite(backend_factory, gateway_factory):
    """istio/api HTTPRedirect.prefix_rewrite (Istio's integration test "redirect prefix_rewrite")."""
    H = "redir.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/old/"}}], "redirect": {"prefixRewrite": "/new/"}},
        {"match": [{"uri": {"prefix": "/moved"}}], "redirect": {"prefixRewrite": "/here", "redirectCode": 308,
                                                                "authority": "b.example.com"}},
    ]
    gw, _ = start(gateway_factory, backend_factory, [], [gateway_doc(), vs_doc("redir", [H], http)])
    status, headers, _ = http_get(gw, 80, "/old/a/b?x=1", host=H)
    assert (status, headers.get("location")) == (301, f"http://{H}/new/a/b?x=1")
    status, headers, _ = http_get(gw, 80, "/moved/p", host=H)
    assert (status, headers.get("location")) == (308, "http://b.example.com/here/p")


def test_redirect_uri_and_prefix_rewrite_are_exclusive(tmp_path):
    text = dump(gateway_doc(), vs_doc("vs", ["a.example.com"], [{"redirect": {"uri": "/a", "prefixRewrite": "/b"}}]))
    p, _ = _render(tmp_path, text)
    assert p.returncode == 1
    assert "EG0102" in p.stderr and "set only one of uri and prefixRewrite" in p.stderr, p.stderr


def test_new_istio_api_fields_are_named_refusals(tmp_path):
    """Fields of istio/api 1.31 envoygen does not implement: EG0104 naming the field, never 'unknown'."""
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr", "namespace": NS},
          "spec": {"host": "a", "trafficPolicy": {
              "connectionPool": {"http": {"http2KeepAlive": {"interval": "10s"}}},
              "loadBalancer": {"zoneAwareLbSetting": {"enabled": True}},
              "outlierDetection": {"outlierDetectionHttpErrorCodes": [503]}}}}
    p, _ = _render(tmp_path, dump(gateway_doc(), dr, se_doc("a", 9), vs_doc("vs", ["a.example.com"], [{"route": to("a")}])))
    assert p.returncode == 1
    for field in ("http2KeepAlive", "zoneAwareLbSetting", "outlierDetectionHttpErrorCodes"):
        assert f"EG0104 DestinationRule dr: field '{field}' is not supported" in p.stderr, (field, p.stderr)


SCOPE_INPUT = f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress, namespace: {NS}}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 443, name: tls, protocol: TLS}}
    hosts: ["*"]
    tls: {{mode: PASSTHROUGH}}
    defaultEndpoint: 127.0.0.1:8080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: egress-vs, namespace: {NS}}}
spec:
  hosts: [x.example.com]
  gateways: [egress]
  http:
  - route: [{{destination: {{host: nowhere.example.com}}}}]
    delegate: {{name: x}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr, namespace: {NS}}}
spec:
  host: HOST
  trafficPolicy:
    loadBalancer: {{localityLbSetting: {{enabled: true}}}}
    connectionPool: {{http: {{http2KeepAlive: {{interval: 1s}}}}}}
"""


def test_settings_in_resources_no_built_gateway_uses_are_warnings(backend_factory, gateway_factory):
    """An egress Gateway (selects no workload being built; defaultEndpoint), its VirtualService and a DestinationRule
    for a host no route reaches: their unsupported settings are warnings naming the resource."""
    docs = [gateway_doc(), vs_doc("vs", ["a.example.com"], [{"route": to("a")}])]
    text = SCOPE_INPUT.replace("HOST", "unused")
    be = backend_factory("a")
    gw = gateway_factory(text + "---\n" + dump(*docs, se_doc("a", be.port)), ports=(80,))
    assert http_get(gw, 80, "/", host="a.example.com").headers["x-backend"] == "a"
    err = gw.render_result.stderr
    assert ("warning EG0104 Gateway egress: field 'defaultEndpoint' is not supported: defaultEndpoint applies to sidecars "
            "only; not fatal: Gateway test/egress selects none of the gateway workloads being built "
            "(istio-system/istio-ingressgateway)") in err, err
    assert ("warning EG0104 VirtualService egress-vs: field 'delegate' is not supported: delegate VirtualServices are "
            "not implemented; not fatal: VirtualService test/egress-vs binds to no Gateway of the workloads being built") in err
    assert "warning EG0203 VirtualService test/egress-vs: destination host nowhere.example.com has no endpoints" in err
    for f in ("localityLbSetting", "http2KeepAlive"):
        assert (f"warning EG0104 DestinationRule dr: field '{f}' is not supported") in err, err
    assert "not fatal: DestinationRule test/dr: no route of a built gateway reaches host unused.test.svc.cluster.local" in err


def test_settings_in_used_resources_stay_errors(tmp_path):
    docs = [gateway_doc(), vs_doc("vs", ["a.example.com"], [{"route": to("a")}]), se_doc("a", 9)]
    p, out = _render(tmp_path, SCOPE_INPUT.replace("HOST", "a") + "---\n" + dump(*docs))
    assert p.returncode == 1, p.stderr
    for f in ("localityLbSetting", "http2KeepAlive"):
        assert f"EG0104 DestinationRule dr: field '{f}' is not supported" in p.stderr, p.stderr
    assert "warning EG0104 Gateway egress: field 'defaultEndpoint'" in p.stderr  # still out of scope
    assert not out.exists()
    # a VirtualService bound to the built gateway: its unsupported field is an error
    vs = vs_doc("vs", ["a.example.com"], [{"route": to("a"), "delegate": {"name": "x"}}])
    p, _ = _render(tmp_path, dump(gateway_doc(), vs, se_doc("a", 9)))
    assert p.returncode == 1
    assert "EG0104 VirtualService vs: field 'delegate' is not supported" in p.stderr, p.stderr
