"""EnvoyFilter patches on the final bootstrap, judged by the stock Envoy: the samples in
samples/edge-policies (a local rate limit on one host: 429 after the bucket empties; a Lua filter
adding a response header) with real traffic, then ordering, matches, refusals and warnings."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import http_get, run_envoygen

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "edge-policies"


def sample(name: str, backend_port: int | None = None) -> str:
    text = (SAMPLES / name).read_text()
    return text.replace("18081", str(backend_port)) if backend_port else text


def _get(gw, host: str):  # noqa: ANN001, ANN202
    return http_get(gw, 80, "/", host=host)


def test_local_rate_limit_on_one_host(backend_factory, gateway_factory):
    b = backend_factory("web")
    gw = gateway_factory(sample("gateway.yaml", b.port) + "---\n" + sample("ratelimit.yaml"), ports=(80,))
    assert [_get(gw, "api.example.com").status for _ in range(3)] == [200, 200, 200]
    limited = _get(gw, "api.example.com")
    assert limited.status == 429 and limited.headers["x-local-rate-limit"] == "true"
    assert [_get(gw, "www.example.com").status for _ in range(6)] == [200] * 6  # the other host has no bucket
    assert b.count == 9


def test_lua_filter_adds_response_header(backend_factory, gateway_factory):
    b = backend_factory("web")
    gw = gateway_factory(sample("gateway.yaml", b.port) + "---\n" + sample("lua.yaml"), ports=(80,))
    for host in ("api.example.com", "www.example.com"):
        r = _get(gw, host)
        assert r.status == 200 and r.headers["x-edge-lua"] == "hello from lua"


def _ef(name: str, patches: list[dict], priority: int = 0, ns: str = "istio-system") -> str:
    return "---\n" + yaml.safe_dump({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                                     "metadata": {"name": name, "namespace": ns},
                                     "spec": {"priority": priority, "configPatches": patches}})


def _lua_first(header: str) -> dict:
    code = f'function envoy_on_response(h) h:headers():add("x-order", "{header}") end'
    return {"applyTo": "HTTP_FILTER", "match": {"context": "GATEWAY"},
            "patch": {"operation": "INSERT_FIRST", "value": {"name": f"lua-{header}", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": code}}}}}


def _render(tmp_path: Path, text: str, *extra: str):  # noqa: ANN202
    f = tmp_path / "in.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", f, "-o", out, *extra])
    return f, out, p


def _http_filters(out: Path) -> list[str]:
    boot = yaml.safe_load((out / "envoy.yaml").read_text())
    lst = next(l for l in boot["static_resources"]["listeners"] if l["name"] == "0.0.0.0_8080")
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    return [h["name"] for h in hcm["http_filters"]]


def test_priority_order_remove_and_cluster_merge(tmp_path):
    """Lower priority applies first (so a later INSERT_FIRST ends up in front); REMOVE drops Istio's cors
    filter; a CLUSTER MERGE matched by service and port changes the cluster; Envoy accepts the result."""
    text = (sample("gateway.yaml") + _ef("late", [_lua_first("late")], priority=10) + _ef("early", [_lua_first("early")])
            + _ef("trim", [{"applyTo": "HTTP_FILTER", "match": {"listener": {"portNumber": 8080, "filterChain": {
                "filter": {"name": "envoy.filters.network.http_connection_manager",
                           "subFilter": {"name": "envoy.filters.http.cors"}}}}}, "patch": {"operation": "REMOVE"}},
                           {"applyTo": "CLUSTER", "match": {"cluster": {"service": "backend.example.com", "portNumber": 80}},
                            "patch": {"operation": "MERGE", "value": {"connectTimeout": "3s"}}}]))
    f, out, p = _render(tmp_path, text)
    assert p.returncode == 0, p.stderr
    assert _http_filters(out)[:2] == ["lua-late", "lua-early"]
    assert "envoy.filters.http.cors" not in _http_filters(out)
    boot = yaml.safe_load((out / "envoy.yaml").read_text())
    cl = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "outbound|80||backend.example.com")
    assert cl["connect_timeout"] == "3s"
    p = run_envoygen(["validate", "-f", f])
    assert p.returncode == 0, p.stderr


def test_unmatched_patch_warned_with_file_and_line(tmp_path):
    text = sample("gateway.yaml") + _ef("nowhere", [{"applyTo": "HTTP_FILTER", "match": {"listener": {"portNumber": 9999}},
                                                     "patch": {"operation": "REMOVE"}}])
    f, out, p = _render(tmp_path, text)
    assert p.returncode == 0, p.stderr
    line = next(l for l in p.stderr.splitlines() if "EG0218" in l)
    assert line.startswith(f"{f}:") and "configPatches[0]" in line and "matches nothing" in line


def test_refusals_and_envoy_judgement(tmp_path):
    boot = _ef("boot", [{"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": {"stats_flush_interval": "1s"}}}])
    f, out, p = _render(tmp_path, sample("gateway.yaml") + boot)
    assert p.returncode == 1 and "EG0221" in p.stderr and "configPatches[0].applyTo" in p.stderr
    assert not out.exists()
    rc_add = _ef("bad-op", [{"applyTo": "ROUTE_CONFIGURATION", "patch": {"operation": "ADD", "value": {"name": "x"}}}])
    f, out, p = _render(tmp_path, sample("gateway.yaml") + rc_add)
    assert p.returncode == 1 and "EG0221" in p.stderr and "patch.operation" in p.stderr
    proxy = _ef("proxy", [{"applyTo": "CLUSTER", "match": {"proxy": {"proxyVersion": "1.2"}},
                           "patch": {"operation": "REMOVE"}}])
    f, out, p = _render(tmp_path, sample("gateway.yaml") + proxy)
    assert p.returncode == 1 and "match.proxy" in p.stderr
    # a filter added after the router: the patch applies, Envoy refuses the result
    after_router = _ef("after", [{"applyTo": "HTTP_FILTER", "patch": {"operation": "ADD", "value": {
        "name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 1024}}}}])
    f.write_text(sample("gateway.yaml") + after_router)
    p = run_envoygen(["validate", "-f", f])
    assert p.returncode == 1 and "EG0401" in p.stderr and "router" in p.stderr


def test_extension_config_resolved_statically(backend_factory, gateway_factory, tmp_path):
    """EXTENSION_CONFIG ADD + a filter that names it through config_discovery (what ECDS serves in Istio):
    the filter gets the typed_config inline, and the Lua code runs on real traffic."""
    code = 'function envoy_on_response(h) h:headers():add("x-ecds", "inline") end'
    lua = {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}
    patches = [
        {"applyTo": "HTTP_FILTER", "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager", "subFilter": {"name": "envoy.filters.http.router"}}}}},
         "patch": {"operation": "INSERT_BEFORE", "value": {"name": "edge-lua", "config_discovery": {
             "config_source": {"ads": {}}, "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"]}}}},
        {"applyTo": "EXTENSION_CONFIG", "patch": {"operation": "ADD", "value": {"name": "edge-lua", "typed_config": lua}}},
        {"applyTo": "EXTENSION_CONFIG", "patch": {"operation": "ADD", "value": {"name": "unused", "typed_config": lua}}},
    ]
    b = backend_factory("web")
    gw = gateway_factory(sample("gateway.yaml", b.port) + _ef("ecds", patches), ports=(80,))
    assert _get(gw, "api.example.com").headers["x-ecds"] == "inline"
    f, out, p = _render(tmp_path, sample("gateway.yaml") + _ef("ecds", patches))
    assert p.returncode == 0, p.stderr
    assert "configPatches[2]" in next(l for l in p.stderr.splitlines() if "EG0218" in l)  # "unused" named by no filter
