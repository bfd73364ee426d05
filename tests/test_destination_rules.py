"""DestinationRule traffic policies, as a client sees them through Envoy.

Where a client cannot tell (e.g. LEAST_REQUEST vs RANDOM with two idle hosts),
the assertions read Envoy's own ``config_dump`` / ``clusters`` admin output,
which is what Envoy actually loaded.

Backends are ServiceEntries with ``resolution: STATIC`` on 127.0.0.1, one
endpoint per backend (``endpoints[].ports: {http: PORT}``), with labels.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import textwrap

from harness import http_get, wait_until

NS = "istioinaction"


# --------------------------------------------------------------------------
# YAML helpers


def gateway_yaml(hosts: list[str]) -> str:
    hs = ", ".join(f'"{h}"' for h in hosts)
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{hs}]
"""


def vs_yaml(name: str, host: str, dest: str, subset: str | None = None, port: int | None = 80) -> str:
    extra = f", subset: {subset}" if subset else ""
    p = f", port: {{number: {port}}}" if port else ""
    return f"""
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: ["{host}"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: {dest}{p}{extra}}}
"""


def se_yaml(name: str, host: str, backends, ports=((80, "http"),)) -> str:
    """``backends``: list of (Backend, labels-dict)."""
    port_lines = "\n".join(
        f"  - {{number: {n}, name: {pn}, protocol: HTTP}}" for n, pn in ports
    )
    eps = []
    for b, labels in backends:
        lab = ", ".join(f"{k}: {v}" for k, v in labels.items())
        pmap = ", ".join(f"{pn}: {b.port}" for _, pn in ports)
        eps.append(f"  - {{address: 127.0.0.1, ports: {{{pmap}}}, labels: {{{lab}}}}}")
    return f"""
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{host}]
  ports:
{port_lines}
  resolution: STATIC
  endpoints:
{chr(10).join(eps)}
"""


def dr_yaml(name: str, host: str, body: str) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: {name}, namespace: {NS}}}
spec:
  host: {host}
{textwrap.indent(textwrap.dedent(body).strip(), "  ")}
"""


def svc_host(short: str) -> str:
    return f"{short}.{NS}.svc.cluster.local"


def clusters(gw) -> dict[str, dict]:
    """Name → cluster from Envoy's config_dump (static clusters)."""
    out = {}
    for cfg in gw.config_dump()["configs"]:
        if cfg.get("@type", "").endswith("ClustersConfigDump"):
            for c in cfg.get("static_clusters", []):
                out[c["cluster"]["name"]] = c["cluster"]
            for c in cfg.get("dynamic_active_clusters", []):
                out[c["cluster"]["name"]] = c["cluster"]
    return out


def routes_for_domain(gw, domain: str) -> list[dict]:
    for cfg in gw.config_dump()["configs"]:
        if cfg.get("@type", "").endswith("ListenersConfigDump"):
            for lst in cfg.get("static_listeners", []):
                for fc in lst["listener"].get("filter_chains", []):
                    for f in fc.get("filters", []):
                        rc = f.get("typed_config", {}).get("route_config")
                        if not rc:
                            continue
                        for vh in rc.get("virtual_hosts", []):
                            if domain in vh.get("domains", []):
                                # each route with the retry policy Envoy applies to it (its own, else the vhost's)
                                return [{**r, "_retry": (r.get("route") or {}).get("retry_policy", vh.get("retry_policy"))}
                                        for r in vh["routes"]]
    raise AssertionError(f"no virtual host for {domain}")


def who(resp) -> str:
    return resp.headers.get("x-backend", f"<status {resp.status}>")


def keepalive_hits(gw, host: str, n: int) -> list[str]:
    """``n`` GETs on one HTTP/1.1 connection; the x-backend of each answer."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port(80), timeout=10)
    out = []
    try:
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": host})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            out.append(r.getheader("x-backend"))
    finally:
        conn.close()
    return out


def hits(gw, host: str, n: int, **kw) -> list[str]:
    return [who(http_get(gw, 80, "/", host=host, **kw)) for _ in range(n)]


# --------------------------------------------------------------------------
# loadBalancer simple


def test_simple_load_balancers(backend_factory, gateway_factory):
    a, b = backend_factory("a"), backend_factory("b")
    bs = [(a, {"version": "v1"}), (b, {"version": "v2"})]
    text = gateway_yaml(["rr.example.com", "random.example.com", "lr.example.com"])
    for short, host in (("rr", "rr.example.com"), ("rnd", "random.example.com"), ("lr", "lr.example.com")):
        text += vs_yaml(f"vs-{short}", host, short)
        text += se_yaml(f"se-{short}", svc_host(short), bs)
    text += dr_yaml("dr-rr", "rr", "trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}")
    text += dr_yaml("dr-rnd", "rnd", "trafficPolicy: {loadBalancer: {simple: RANDOM}}")
    gw = gateway_factory(text, ports=(80,))

    cl = clusters(gw)
    # ROUND_ROBIN is the proto default (0), so config_dump omits it.
    assert cl[f"outbound|80||{svc_host('rr')}"].get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert cl[f"outbound|80||{svc_host('rnd')}"]["lb_policy"] == "RANDOM"
    # No DestinationRule: Istio's default is LEAST_REQUEST.
    assert cl[f"outbound|80||{svc_host('lr')}"]["lb_policy"] == "LEAST_REQUEST"

    # Round robin state is per Envoy worker: on one keep-alive connection (one worker)
    # two hosts strictly alternate.
    rr = keepalive_hits(gw, "rr.example.com", 10)
    assert set(rr) == {"a", "b"}, rr
    assert all(x != y for x, y in zip(rr, rr[1:])), rr
    rnd = hits(gw, "random.example.com", 30)
    assert set(rnd) == {"a", "b"}, rnd
    lr = hits(gw, "lr.example.com", 20)
    assert set(lr) == {"a", "b"}, lr


def test_loadbalancer_passthrough_refused(gateway_factory):
    text = gateway_yaml(["x.example.com"]) + vs_yaml("vs", "x.example.com", "x")
    text += """
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: x, namespace: istioinaction}
spec:
  hosts: [x.istioinaction.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""
    text += dr_yaml("dr-x", "x", "trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}")
    gw = gateway_factory(text, ports=(80,), start=False)
    code, _, err, out = gw.render()
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if "EG0104" in ln]
    assert lines, err
    assert re.search(r"\.yaml:\d+: error EG0104 .*PASSTHROUGH.* \[spec\.trafficPolicy\.loadBalancer\.simple\]", lines[0]), lines
    assert not out.exists()


# --------------------------------------------------------------------------
# consistentHash


def test_consistent_hash(backend_factory, gateway_factory):
    a, b = backend_factory("a"), backend_factory("b")
    bs = [(a, {"v": "one"}), (b, {"v": "two"})]
    kinds = {
        "hdr": "httpHeaderName: x-user",
        "cookie": "httpCookie: {name: session, ttl: 60s, path: /}",
        "query": "httpQueryParameterName: user",
        "srcip": "useSourceIp: true",
    }
    text = gateway_yaml([f"{k}.example.com" for k in kinds])
    for k, ch in kinds.items():
        text += vs_yaml(f"vs-{k}", f"{k}.example.com", k)
        text += se_yaml(f"se-{k}", svc_host(k), bs)
        text += dr_yaml(f"dr-{k}", k, f"trafficPolicy: {{loadBalancer: {{consistentHash: {{{ch}}}}}}}")
    gw = gateway_factory(text, ports=(80,))

    cl = clusters(gw)
    for k in kinds:
        assert cl[f"outbound|80||{svc_host(k)}"]["lb_policy"] == "RING_HASH", k

    # header: one value → one backend; many values → both backends
    for user in ("alice", "bob", "carol"):
        seen = hits(gw, "hdr.example.com", 20, headers={"x-user": user})
        assert len(set(seen)) == 1 and seen[0] in ("a", "b"), (user, seen)
    spread = {hits(gw, "hdr.example.com", 1, headers={"x-user": f"user-{i}"})[0] for i in range(40)}
    assert spread == {"a", "b"}
    (hp,) = routes_for_domain(gw, "hdr.example.com")[0]["route"]["hash_policy"]
    assert hp["header"]["header_name"] == "x-user"
    # With consistent hashing Istio's default retry policy omits previous_hosts.
    retry = routes_for_domain(gw, "hdr.example.com")[0]["_retry"]
    assert retry and "retry_host_predicate" not in retry, retry

    # cookie with ttl: Envoy generates it on the first response; sending it back sticks.
    r = http_get(gw, 80, "/", host="cookie.example.com")
    assert r.status == 200
    set_cookie = r.headers.get("set-cookie", "")
    m = re.match(r"session=([^;]+)", set_cookie)
    assert m, r.headers
    assert "Max-Age=60" in set_cookie and "Path=/" in set_cookie, set_cookie
    first = who(r)
    seen = hits(gw, "cookie.example.com", 20, headers={"cookie": f"session={m.group(1)}"})
    assert set(seen) == {first}, seen
    spread = {hits(gw, "cookie.example.com", 1, headers={"cookie": f"session=s{i}"})[0] for i in range(40)}
    assert spread == {"a", "b"}

    # query parameter
    for user in ("alice", "bob"):
        seen = hits_path(gw, "query.example.com", f"/?user={user}", 20)
        assert len(set(seen)) == 1, (user, seen)
    spread = {hits_path(gw, "query.example.com", f"/?user=u{i}", 1)[0] for i in range(40)}
    assert spread == {"a", "b"}

    # source IP: the client is always 127.0.0.1 → always the same backend
    seen = hits(gw, "srcip.example.com", 20)
    assert len(set(seen)) == 1, seen
    (hp,) = routes_for_domain(gw, "srcip.example.com")[0]["route"]["hash_policy"]
    assert hp["connection_properties"]["source_ip"] is True


def hits_path(gw, host: str, path: str, n: int) -> list[str]:
    return [who(http_get(gw, 80, path, host=host)) for _ in range(n)]


# --------------------------------------------------------------------------
# connectionPool


def test_connection_pool_overflow_and_connect_timeout(backend_factory, gateway_factory):
    slow = backend_factory("slow", delay=1.0)
    fast = backend_factory("fast")
    text = gateway_yaml(["cp.example.com", "ct.example.com"])
    text += vs_yaml("vs-cp", "cp.example.com", "cp") + se_yaml("se-cp", svc_host("cp"), [(slow, {})])
    text += vs_yaml("vs-ct", "ct.example.com", "ct") + se_yaml("se-ct", svc_host("ct"), [(fast, {})])
    text += dr_yaml("dr-cp", "cp", """
        trafficPolicy:
          connectionPool:
            tcp: {maxConnections: 1}
            http: {http1MaxPendingRequests: 1}
    """)
    text += dr_yaml("dr-ct", "ct", "trafficPolicy: {connectionPool: {tcp: {connectTimeout: 250ms}}}")
    gw = gateway_factory(text, ports=(80,))

    cl = clusters(gw)
    th = cl[f"outbound|80||{svc_host('cp')}"]["circuit_breakers"]["thresholds"][0]
    assert th["max_connections"] == 1 and th["max_pending_requests"] == 1, th
    assert cl[f"outbound|80||{svc_host('cp')}"]["connect_timeout"] == "10s"
    assert cl[f"outbound|80||{svc_host('ct')}"]["connect_timeout"] == "0.250s"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futs = [pool.submit(http_get, gw, 80, "/", host="cp.example.com", timeout=15) for _ in range(6)]
        results = [f.result(timeout=20) for f in futs]
    statuses = sorted(r.status for r in results)
    overflowed = [r for r in results if r.status == 503]
    assert 1 <= len(overflowed) <= 4, statuses
    assert any(r.status == 200 for r in results), statuses
    for r in overflowed:
        assert r.headers.get("x-envoy-overloaded") == "true", r.headers
    overflow = {k: v for k, v in gw.stats("upstream_rq_pending_overflow").items() if svc_host("cp") in k}
    assert list(overflow.values()) == [len(overflowed)], overflow
    assert http_get(gw, 80, "/", host="ct.example.com").status == 200


# --------------------------------------------------------------------------
# outlierDetection


def test_outlier_detection_ejects_failing_endpoint(backend_factory, gateway_factory):
    good = backend_factory("good")
    bad = backend_factory("bad", status=500)
    text = gateway_yaml(["od.example.com"]) + vs_yaml("vs-od", "od.example.com", "od")
    text += se_yaml("se-od", svc_host("od"), [(good, {}), (bad, {})])
    text += dr_yaml("dr-od", "od", """
        trafficPolicy:
          loadBalancer: {simple: ROUND_ROBIN}
          outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
    """)
    gw = gateway_factory(text, ports=(80,))
    od = clusters(gw)[f"outbound|80||{svc_host('od')}"]["outlier_detection"]
    assert od["consecutive_5xx"] == 1 and od["enforcing_consecutive_5xx"] == 100, od

    # one keep-alive connection: round robin reaches the bad endpoint within two requests
    conn = http.client.HTTPConnection("127.0.0.1", gw.port(80), timeout=10)
    first = []
    try:
        for _ in range(2):
            conn.request("GET", "/", headers={"Host": "od.example.com"})
            r = conn.getresponse()
            r.read()
            first.append(r.status)
    finally:
        conn.close()
    assert sorted(first) == [200, 500], first
    assert bad.count == 1

    def ejected_line():
        lines = [ln for ln in gw.admin("clusters").splitlines()
                 if ln.startswith(f"outbound|80||{svc_host('od')}::127.0.0.1:{bad.port}::health_flags")]
        return lines and "failed_outlier_check" in lines[0] and lines[0]

    wait_until(ejected_line, 5, message="bad endpoint never shown as failed_outlier_check")
    after = [who(http_get(gw, 80, "/", host="od.example.com")) for _ in range(10)]
    assert after == ["good"] * 10, after
    assert bad.count == 1, bad.count
    assert [v for k, v in gw.stats("ejections_enforced_consecutive_5xx").items() if svc_host("od") in k] == [1]


# --------------------------------------------------------------------------
# policy precedence: portLevelSettings, subsets


def test_port_level_settings_replace_top_level(backend_factory, gateway_factory):
    a = backend_factory("a")
    text = gateway_yaml(["pl.example.com"]) + vs_yaml("vs-pl", "pl.example.com", "pl", port=81)
    text += se_yaml("se-pl", svc_host("pl"), [(a, {})], ports=((80, "http"), (81, "http-alt")))
    text += dr_yaml("dr-pl", "pl", """
        trafficPolicy:
          loadBalancer: {simple: RANDOM}
          connectionPool: {tcp: {connectTimeout: 3s, maxConnections: 7}}
          portLevelSettings:
          - port: {number: 81}
            loadBalancer: {simple: ROUND_ROBIN}
    """)
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)
    c80 = cl[f"outbound|80||{svc_host('pl')}"]
    c81 = cl[f"outbound|81||{svc_host('pl')}"]
    assert c80["lb_policy"] == "RANDOM"
    assert c80["connect_timeout"] == "3s"
    assert c80["circuit_breakers"]["thresholds"][0]["max_connections"] == 7
    # Port 81: the port-level entry replaces the whole top-level policy.
    assert c81.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert c81["connect_timeout"] == "10s"
    assert c81["circuit_breakers"]["thresholds"][0]["max_connections"] == 4294967295
    r = http_get(gw, 80, "/", host="pl.example.com")
    assert r.status == 200 and who(r) == "a"


def test_subset_policy_overrides_top_level_and_filters_endpoints(backend_factory, gateway_factory):
    v1, v2 = backend_factory("v1"), backend_factory("v2")
    text = gateway_yaml(["sub.example.com"]) + vs_yaml("vs-sub", "sub.example.com", "sub", subset="v1")
    text += se_yaml("se-sub", svc_host("sub"), [(v1, {"version": "v1"}), (v2, {"version": "v2"})])
    text += dr_yaml("dr-sub", "sub", """
        trafficPolicy:
          loadBalancer: {simple: ROUND_ROBIN}
          connectionPool: {tcp: {connectTimeout: 3s}}
        subsets:
        - name: v1
          labels: {version: v1}
          trafficPolicy: {loadBalancer: {simple: RANDOM}}
        - name: v2
          labels: {version: v2}
    """)
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)
    s1 = cl[f"outbound|80|v1|{svc_host('sub')}"]
    s2 = cl[f"outbound|80|v2|{svc_host('sub')}"]
    assert s1["lb_policy"] == "RANDOM"
    assert s1["connect_timeout"] == "3s"  # connectionPool block inherited from the top level
    assert s2.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert s2["connect_timeout"] == "3s"
    seen = hits(gw, "sub.example.com", 10)
    assert seen == ["v1"] * 10, seen
    assert v2.count == 0


def test_several_destination_rules_merge_with_warning(backend_factory, gateway_factory):
    v1, v2 = backend_factory("v1"), backend_factory("v2")
    text = gateway_yaml(["m.example.com"]) + vs_yaml("vs-m", "m.example.com", "m", subset="v2")
    text += se_yaml("se-m", svc_host("m"), [(v1, {"version": "v1"}), (v2, {"version": "v2"})])
    text += dr_yaml("dr-m-a", "m", """
        trafficPolicy: {loadBalancer: {simple: RANDOM}}
        subsets:
        - {name: v1, labels: {version: v1}}
    """)
    text += dr_yaml("dr-m-b", "m", """
        trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
        subsets:
        - {name: v2, labels: {version: v2}}
    """)
    gw = gateway_factory(text, ports=(80,), start=False)
    code, _, err, _ = gw.render()
    assert code == 0, err
    warn = [ln for ln in err.splitlines() if "EG0209" in ln]
    assert len(warn) == 1, err
    assert "warning" in warn[0] and "dr-m-b" in warn[0] and "[spec.host]" in warn[0], warn
    gw.start()
    cl = clusters(gw)
    assert f"outbound|80|v1|{svc_host('m')}" in cl
    assert f"outbound|80|v2|{svc_host('m')}" in cl
    # the first trafficPolicy wins (dr-m-a sorts first: same creation time, by name)
    assert cl[f"outbound|80||{svc_host('m')}"]["lb_policy"] == "RANDOM"
    assert cl[f"outbound|80|v2|{svc_host('m')}"]["lb_policy"] == "RANDOM"
    assert hits(gw, "m.example.com", 5) == ["v2"] * 5


def test_upstream_tls_istio_mutual_needs_the_mesh_identity(gateway_factory):
    """Upstream TLS SIMPLE/MUTUAL is implemented (f459cd9); ISTIO_MUTUAL (mesh mTLS) stays refused."""
    text = gateway_yaml(["t.example.com"]) + vs_yaml("vs-t", "t.example.com", "t")
    text += """
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: t, namespace: istioinaction}
spec:
  hosts: [t.istioinaction.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""
    text += dr_yaml("dr-t", "t", """
        trafficPolicy:
          tls: {mode: ISTIO_MUTUAL}
          portLevelSettings:
          - port: {number: 80}
            tls: {mode: ISTIO_MUTUAL}
    """)
    gw = gateway_factory(text, ports=(80,), start=False)
    code, _, err, out = gw.render()
    assert code == 1, err
    # without --mesh-identity: what to supply (tests/test_mesh_identity.py has it working)
    lines = [ln for ln in err.splitlines() if "EG0301" in ln]
    assert any(
        re.search(r"\.yaml:\d+: error EG0301 tls mode ISTIO_MUTUAL needs the mesh identity: pass --mesh-identity DIR "
                  r"with Istio's file-mounted cert-chain.pem, key.pem, root-cert.pem .*\[spec\.trafficPolicy\.tls\.mode\]$", ln)
        for ln in lines), err
    assert not out.exists()
