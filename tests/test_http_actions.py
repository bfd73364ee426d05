"""VirtualService ``http`` route actions end to end, as a client and the backends see them.

Istio reference: pilot/pkg/networking/core/route/route.go (applyHTTPRouteDestination,
ApplyRedirect, ApplyDirectResponse, TranslateHeadersOperations, TranslateFault,
TranslateCORSPolicy, MirrorPercent); istio-semantics.md 2.4.
"""

from __future__ import annotations

import time
from typing import Any

from harness import http_get, https_get, wait_until

from istio_docs import NS, dump, gateway_doc, se_doc, start, to, vhost_routes, vs_doc


# ----------------------------------------------------------------- helpers
def get(gw, path: str, host: str, **kw: Any) -> tuple:  # noqa: ANN001
    """(status, headers, body) of one request to server port 80."""
    return tuple(http_get(gw, 80, path, host=host, **kw))


# ----------------------------------------------------------------- destinations
def test_weighted_destinations_split_traffic(backend_factory, gateway_factory):
    http_split = [{"route": [{"destination": {"host": "w1"}, "weight": 80},
                             {"destination": {"host": "w2"}, "weight": 20}]}]
    http_all = [{"route": [{"destination": {"host": "a1"}, "weight": 100},
                           {"destination": {"host": "a2"}, "weight": 0}]}]
    gw, b = start(gateway_factory, backend_factory, ["w1", "w2", "a1", "a2"], [
        gateway_doc(),
        vs_doc("split", ["split.example.com"], http_split),
        vs_doc("all", ["all.example.com"], http_all),
    ])
    n = 200
    seen = {"w1": 0, "w2": 0}
    for _ in range(n):
        status, headers, _ = get(gw, "/", "split.example.com")
        assert status == 200
        seen[headers["x-backend"]] += 1
    # 80/20 over 200: expected 160/40, sd ~5.7; a generous bound
    assert 120 <= seen["w1"] <= 190, seen
    assert seen["w2"] >= 10, seen
    for _ in range(30):
        status, headers, _ = get(gw, "/", "all.example.com")
        assert (status, headers["x-backend"]) == (200, "a1")
    assert b["a2"].count == 0
    # weight 0 entries are dropped from weighted_clusters (Istio applyHTTPRouteDestination)
    route = vhost_routes(gw, "all.example.com:80")[0]["route"]
    names = [c["name"] for c in route["weighted_clusters"]["clusters"]] if "weighted_clusters" in route else [route["cluster"]]
    assert names == ["outbound|80||a1.test.svc.cluster.local"], route


def test_subsets_select_endpoints_by_label_and_port_selection(backend_factory, gateway_factory):
    v1, v2 = backend_factory("v1"), backend_factory("v2")
    p80, p81 = backend_factory("p80"), backend_factory("p81")
    docs = [
        gateway_doc(),
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
         "metadata": {"name": "reviews", "namespace": NS},
         "spec": {"hosts": ["reviews.test.svc.cluster.local"],
                  "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                  "resolution": "STATIC",
                  "endpoints": [
                      {"address": "127.0.0.1", "ports": {"http": v1.port}, "labels": {"version": "v1"}},
                      {"address": "127.0.0.1", "ports": {"http": v2.port}, "labels": {"version": "v2"}}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "reviews", "namespace": NS},
         "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                 {"name": "v2", "labels": {"version": "v2"}}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
         "metadata": {"name": "multi", "namespace": NS},
         "spec": {"hosts": ["multi.test.svc.cluster.local"],
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": p80.port},
                            {"number": 81, "name": "http-alt", "protocol": "HTTP", "targetPort": p81.port}],
                  "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}]}},
        vs_doc("reviews", ["reviews.example.com"], [
            {"match": [{"uri": {"prefix": "/v1"}}], "route": to("reviews", subset="v1")},
            {"match": [{"uri": {"prefix": "/v2"}}], "route": to("reviews", subset="v2")},
            {"match": [{"uri": {"prefix": "/split"}}],
             "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                       {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50}]},
            {"route": to("reviews")},
        ]),
        vs_doc("multi", ["multi.example.com"], [
            {"match": [{"uri": {"prefix": "/81"}}], "route": to("multi", port={"number": 81})},
            {"match": [{"uri": {"prefix": "/80"}}], "route": to("multi", port={"number": 80})},
            # no port on a two-port service: the gateway server port (80)
            {"route": to("multi")},
        ]),
    ]
    gw = gateway_factory(dump(*docs), ports=(80,))
    for _ in range(10):
        assert get(gw, "/v1/x", "reviews.example.com")[1]["x-backend"] == "v1"
        assert get(gw, "/v2/x", "reviews.example.com")[1]["x-backend"] == "v2"
    seen = {get(gw, "/any", "reviews.example.com")[1]["x-backend"] for _ in range(40)}
    assert seen == {"v1", "v2"}
    seen = {get(gw, "/split", "reviews.example.com")[1]["x-backend"] for _ in range(40)}
    assert seen == {"v1", "v2"}
    assert get(gw, "/81", "multi.example.com")[1]["x-backend"] == "p81"
    assert get(gw, "/80", "multi.example.com")[1]["x-backend"] == "p80"
    assert get(gw, "/other", "multi.example.com")[1]["x-backend"] == "p80"
    clusters = gw.admin("clusters")
    for name in ("outbound|9080|v1|reviews.test.svc.cluster.local", "outbound|9080|v2|reviews.test.svc.cluster.local",
                 "outbound|9080||reviews.test.svc.cluster.local", "outbound|81||multi.test.svc.cluster.local"):
        assert name in clusters, name
    v1_lines = [ln for ln in clusters.splitlines() if ln.startswith("outbound|9080|v1|") and "::health_flags::" in ln]
    assert len(v1_lines) == 1 and f"127.0.0.1:{v1.port}" in v1_lines[0], v1_lines


def test_undefined_subset_is_rejected_at_build_time(backend_factory, gateway_factory):
    """Istio would emit the route and answer 503 (NC); envoygen reports EG0204 instead (stricter by design)."""
    be = backend_factory("known")
    gw = gateway_factory(dump(gateway_doc(), se_doc("known", be.port), vs_doc("nc", ["nc.example.com"], [
        {"route": to("known", subset="nope")}])), ports=(80,), start=False)
    code, _, stderr, _ = gw.render()
    assert code == 1
    assert "EG0204" in stderr and "spec.http[0].route[0].destination.subset" in stderr, stderr


# ----------------------------------------------------------------- redirect, directResponse
def test_redirects_and_direct_responses(backend_factory, gateway_factory):
    H = "redir.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/r-uri"}}], "redirect": {"uri": "/new"}},
        {"match": [{"uri": {"prefix": "/r-auth"}}], "redirect": {"authority": "new.example.com"}},
        {"match": [{"uri": {"prefix": "/r-scheme"}}], "redirect": {"scheme": "https"}},
        {"match": [{"uri": {"prefix": "/r-port"}}], "redirect": {"port": 8443}},
        {"match": [{"uri": {"prefix": "/r-derive-https"}}], "redirect": {"derivePort": "FROM_REQUEST_PORT", "scheme": "https"}},
        {"match": [{"uri": {"prefix": "/r-derive"}}], "redirect": {"derivePort": "FROM_REQUEST_PORT"}},
        {"match": [{"uri": {"prefix": "/r-all"}}],
         "redirect": {"uri": "/all", "authority": "all.example.com", "scheme": "https", "port": 9443}},
        {"match": [{"uri": {"prefix": "/r302"}}], "redirect": {"uri": "/found", "redirectCode": 302}},
        {"match": [{"uri": {"prefix": "/r308"}}], "redirect": {"uri": "/perm", "redirectCode": 308}},
        {"match": [{"uri": {"prefix": "/r307"}}], "redirect": {"uri": "/temp", "redirectCode": 307}},
        {"match": [{"uri": {"prefix": "/r303"}}], "redirect": {"uri": "/other", "redirectCode": 303}},
        {"match": [{"uri": {"prefix": "/r301"}}], "redirect": {"uri": "/moved", "redirectCode": 301}},
        {"match": [{"uri": {"prefix": "/teapot"}}], "directResponse": {"status": 418, "body": {"string": "short and stout"}},
         "headers": {"response": {"set": {"x-teapot": "yes"}}}},
        {"match": [{"uri": {"prefix": "/nobody"}}], "directResponse": {"status": 503}},
        {"match": [{"uri": {"prefix": "/bytes"}}], "directResponse": {"status": 200, "body": {"bytes": "aGVsbG8gYnl0ZXM="}}},
        # redirect wins over a route on the same entry? (Istio: redirect, then directResponse, then route)
        {"route": to("backend")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["backend"], [gateway_doc(), vs_doc("redir", [H], http)])
    cases = [
        ("/r-uri/x?a=1", 301, "http://redir.example.com/new?a=1"),
        ("/r-auth/p?q", 301, "http://new.example.com/r-auth/p?q"),
        ("/r-scheme/p", 301, "https://redir.example.com/r-scheme/p"),
        ("/r-port/p", 301, "http://redir.example.com:8443/r-port/p"),
        ("/r-derive-https/p", 301, "https://redir.example.com:80/r-derive-https/p"),
        ("/r-derive/p", 301, "http://redir.example.com/r-derive/p"),
        ("/r-all/p?z=9", 301, "https://all.example.com:9443/all?z=9"),
        ("/r302", 302, "http://redir.example.com/found"),
        ("/r308", 308, "http://redir.example.com/perm"),
        ("/r307", 307, "http://redir.example.com/temp"),
        ("/r303", 303, "http://redir.example.com/other"),
        ("/r301", 301, "http://redir.example.com/moved"),
    ]
    bad = []
    for path, code, location in cases:
        status, headers, _ = get(gw, path, H)
        if (status, headers.get("location")) != (code, location):
            bad.append(f"{path}: got {status} {headers.get('location')!r}, want {code} {location!r}")
    assert not bad, "\n".join(bad)
    status, headers, body = get(gw, "/teapot", H)
    assert (status, body) == (418, b"short and stout")
    assert headers.get("x-teapot") == "yes", "route-level response headers apply to direct responses too"
    assert headers["server"] == "istio-envoy"
    status, _, body = get(gw, "/nobody", H)
    assert (status, body) == (503, b"")
    status, _, body = get(gw, "/bytes", H)
    assert (status, body) == (200, b"hello bytes")
    assert b["backend"].count == 0
    assert get(gw, "/else", H)[1]["x-backend"] == "backend"


def test_direct_response_binary_bytes_body(backend_factory, gateway_factory):
    """``body.bytes`` is base64 of arbitrary bytes; Istio sends them as DataSource inline_bytes
    (route.go ApplyDirectResponse), so the client gets exactly those bytes."""
    H = "bytes.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/bin"}}], "directResponse": {"status": 200, "body": {"bytes": "/wABAg=="}}},
        {"match": [{"uri": {"prefix": "/utf8"}}], "directResponse": {"status": 201, "body": {"bytes": "w6lsw6h2ZQ=="}}},
    ]
    gw, _ = start(gateway_factory, backend_factory, [], [gateway_doc(), vs_doc("bytes", [H], http)])
    status, _, body = get(gw, "/utf8", H)
    assert (status, body) == (201, "élève".encode())
    status, _, body = get(gw, "/bin", H)
    assert (status, body) == (200, b"\xff\x00\x01\x02")


# ----------------------------------------------------------------- rewrite and headers
def test_rewrites(backend_factory, gateway_factory):
    H = "rw.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/old"}}], "rewrite": {"uri": "/new"}, "route": to("be")},
        {"match": [{"uri": {"exact": "/exact-old"}}], "rewrite": {"uri": "/e"}, "route": to("be")},
        {"match": [{"uri": {"prefix": "/auth"}}], "rewrite": {"authority": "rewritten.internal"}, "route": to("be")},
        {"match": [{"uri": {"prefix": "/rx"}}],
         "rewrite": {"uriRegexRewrite": {"match": "^/rx/([a-z]+)/v1$", "rewrite": "/api/\\1"}}, "route": to("be")},
        {"match": [{"uri": {"prefix": "/setauth"}}],
         "headers": {"request": {"set": {":authority": "set.internal"}}}, "route": to("be")},
        {"match": [{"uri": {"prefix": "/dstauth"}}],
         "route": [{"destination": {"host": "be"}, "headers": {"request": {"set": {"host": "dst.internal"}}}}]},
        # precedence (route.go TranslateHeadersOperations / applyHTTPRouteDestination / processDestination):
        # set beats add; route-level beats destination-level; rewrite.authority beats both
        {"match": [{"uri": {"prefix": "/addauth"}}],
         "headers": {"request": {"add": {":authority": "added.internal"}}}, "route": to("be")},
        {"match": [{"uri": {"prefix": "/setadd"}}],
         "headers": {"request": {"add": {":authority": "added.internal"}, "set": {":authority": "set-wins.internal"}}},
         "route": to("be")},
        {"match": [{"uri": {"prefix": "/routevsdst"}}],
         "headers": {"request": {"set": {":authority": "route-wins.internal"}}},
         "route": [{"destination": {"host": "be"}, "headers": {"request": {"set": {":authority": "dst-loses.internal"}}}}]},
        {"match": [{"uri": {"prefix": "/rwvshdr"}}], "rewrite": {"authority": "rewrite-wins.internal"},
         "headers": {"request": {"set": {":authority": "hdr-loses.internal"}}}, "route": to("be")},
        {"route": to("be")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["be"], [gateway_doc(), vs_doc("rw", [H], http)])
    be = b["be"]

    def seen(path: str) -> dict:
        status, headers, _ = get(gw, path, H)
        assert status == 200 and headers["x-backend"] == "be", (path, status)
        return be.requests[-1]

    assert seen("/old/x?q=1&r=2")["path"] == "/new/x?q=1&r=2"
    assert seen("/oldish")["path"] == "/newish"  # plain string prefix replaced
    assert seen("/exact-old?k=v")["path"] == "/e?k=v"
    r = seen("/auth/p")
    assert r["headers"]["host"] == "rewritten.internal"
    assert r["path"] == "/auth/p"
    assert seen("/rx/users/v1?x=1")["path"] == "/api/users?x=1"
    assert seen("/setauth")["headers"]["host"] == "set.internal"
    assert seen("/dstauth")["headers"]["host"] == "dst.internal"
    assert seen("/addauth")["headers"]["host"] == "added.internal"
    assert seen("/setadd")["headers"]["host"] == "set-wins.internal"
    assert seen("/routevsdst")["headers"]["host"] == "route-wins.internal"
    assert seen("/rwvshdr")["headers"]["host"] == "rewrite-wins.internal"
    plain = seen("/plain")
    assert plain["headers"]["host"] == H and plain["path"] == "/plain"


def test_header_operations_route_and_destination_level(backend_factory, gateway_factory):
    H = "hdr.example.com"
    route_level = {
        "request": {"set": {"x-set": "route-set", "x-client-ip": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                    "add": {"x-add": "route-add"}, "remove": ["x-drop"]},
        "response": {"set": {"x-resp-set": "route-set"}, "add": {"x-resp-add": "route-add"}, "remove": ["x-backend-secret"]},
    }
    dest_level = {
        "request": {"set": {"x-dst": "dst-set"}, "remove": ["x-drop-dst"]},
        "response": {"set": {"x-dst-resp": "dst-set"}, "remove": ["x-backend-other"]},
    }
    http = [
        {"match": [{"uri": {"prefix": "/route"}}], "headers": route_level, "route": to("hb")},
        {"match": [{"uri": {"prefix": "/dest"}}], "route": [{"destination": {"host": "hb"}, "headers": dest_level}]},
        {"match": [{"uri": {"prefix": "/weighted"}}],
         "route": [{"destination": {"host": "hb"}, "weight": 100, "headers": dest_level},
                   {"destination": {"host": "hb2"}, "weight": 0}]},
        {"match": [{"uri": {"prefix": "/split2"}}],
         "route": [{"destination": {"host": "hb"}, "weight": 50, "headers": dest_level},
                   {"destination": {"host": "hb2"}, "weight": 50,
                    "headers": {"request": {"set": {"x-dst": "other-dst", ":authority": "hb2.internal"}}}}]},
        {"route": to("hb")},
    ]
    backend_headers = [("x-backend-secret", "s"), ("x-backend-other", "o"), ("x-resp-set", "from-backend"),
                       ("x-resp-add", "from-backend")]
    gw, b = start(gateway_factory, backend_factory, ["hb", "hb2"], [gateway_doc(), vs_doc("hdr", [H], http)],
                  hb={"headers": backend_headers}, hb2={"headers": backend_headers})
    hb = b["hb"]
    client = [("x-set", "client"), ("x-add", "client"), ("x-drop", "gone"), ("x-drop-dst", "gone2"), ("x-dst", "client")]

    status, headers, _ = get(gw, "/route", H, headers=client)
    assert status == 200
    req = hb.requests[-1]["headers"]
    assert req["x-set"] == "route-set"
    # values pass through to Envoy untouched, so Envoy's %COMMAND% formatters work as in Istio
    assert req["x-client-ip"] == "127.0.0.1"
    assert req["x-add"] == "client,route-add"
    assert "x-drop" not in req
    assert req["x-drop-dst"] == "gone2" and req["x-dst"] == "client"
    assert headers["x-resp-set"] == "route-set"
    assert headers.get_all("x-resp-add") == ["from-backend", "route-add"]
    assert "x-backend-secret" not in headers
    assert headers["x-backend-other"] == "o"

    status, headers, _ = get(gw, "/dest", H, headers=client)
    assert status == 200
    req = hb.requests[-1]["headers"]
    assert req["x-dst"] == "dst-set"
    assert "x-drop-dst" not in req and req["x-drop"] == "gone"
    assert headers["x-dst-resp"] == "dst-set"
    assert "x-backend-other" not in headers and headers["x-backend-secret"] == "s"

    status, headers, _ = get(gw, "/weighted", H, headers=client)
    assert status == 200 and headers["x-backend"] == "hb"
    req = hb.requests[-1]["headers"]
    assert req["x-dst"] == "dst-set" and "x-drop-dst" not in req
    assert headers["x-dst-resp"] == "dst-set" and "x-backend-other" not in headers

    # per-destination headers follow the destination actually chosen
    got = set()
    for _ in range(40):
        status, headers, _ = get(gw, "/split2", H, headers=client)
        assert status == 200
        who = headers["x-backend"]
        backend = b[who]
        want = "dst-set" if who == "hb" else "other-dst"
        assert backend.requests[-1]["headers"]["x-dst"] == want
        # :authority in a weighted destination's headers → that cluster_weight's host_rewrite_literal
        assert backend.requests[-1]["headers"]["host"] == (H if who == "hb" else "hb2.internal")
        got.add(who)
    assert got == {"hb", "hb2"}

    status, headers, _ = get(gw, "/plain", H, headers=client)
    req = hb.requests[-1]["headers"]
    assert req["x-set"] == "client" and req["x-drop"] == "gone"
    assert headers["x-resp-set"] == "from-backend"


# ----------------------------------------------------------------- CORS
def test_cors_preflight_and_actual_request(backend_factory, gateway_factory):
    H = "cors.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/api"}}],
         "corsPolicy": {
             "allowOrigins": [{"exact": "https://good.example.com"}, {"prefix": "https://pre."},
                              {"regex": "https://[a-z]+\\.rx\\.example\\.com"}],
             "allowMethods": ["GET", "POST"],
             "allowHeaders": ["x-custom", "content-type"],
             "exposeHeaders": ["x-exposed"],
             "maxAge": "600s",
             "allowCredentials": True,
         },
         "route": to("cb")},
        {"match": [{"uri": {"prefix": "/ignore"}}],
         "corsPolicy": {"allowOrigins": [{"exact": "https://good.example.com"}], "allowMethods": ["GET"],
                        "unmatchedPreflights": "IGNORE"},
         "route": to("cb")},
        {"route": to("cb")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["cb"], [gateway_doc(), vs_doc("cors", [H], http)])
    cb = b["cb"]

    def preflight(origin: str, path: str = "/api/x"):  # noqa: ANN202
        return get(gw, path, H, method="OPTIONS",
                   headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "x-custom"})

    for origin in ("https://good.example.com", "https://pre.anything.net", "https://abc.rx.example.com"):
        before = cb.count
        status, headers, _ = preflight(origin)
        assert status == 200, origin
        assert headers.get("access-control-allow-origin") == origin, (origin, headers)
        assert headers.get("access-control-allow-methods") == "GET,POST"
        assert headers.get("access-control-allow-headers") == "x-custom,content-type"
        assert headers.get("access-control-max-age") == "600"
        assert headers.get("access-control-allow-credentials") == "true"
        assert cb.count == before, "a matching preflight is answered by Envoy"

    # a non-matching origin: no allow-origin; the preflight is forwarded (forward_not_matching_preflights)
    before = cb.count
    status, headers, _ = preflight("https://evil.example.com")
    assert "access-control-allow-origin" not in headers
    assert cb.count == before + 1 and cb.requests[-1]["method"] == "OPTIONS"
    status, headers, _ = preflight("https://GOOD.example.com.evil")
    assert "access-control-allow-origin" not in headers

    # actual request with an allowed origin: allow-origin + expose headers on the response
    status, headers, _ = get(gw, "/api/data", H, headers={"Origin": "https://good.example.com"})
    assert status == 200 and headers["x-backend"] == "cb"
    assert headers.get("access-control-allow-origin") == "https://good.example.com"
    assert headers.get("access-control-expose-headers") == "x-exposed"
    status, headers, _ = get(gw, "/api/data", H, headers={"Origin": "https://evil.example.com"})
    assert status == 200 and "access-control-allow-origin" not in headers

    # unmatchedPreflights IGNORE: a non-matching preflight is answered by Envoy, not forwarded
    before = cb.count
    status, headers, _ = preflight("https://evil.example.com", path="/ignore")
    assert "access-control-allow-origin" not in headers
    assert cb.count == before
    status, headers, _ = preflight("https://good.example.com", path="/ignore")
    assert headers.get("access-control-allow-origin") == "https://good.example.com"

    # a route without corsPolicy: no CORS headers even for a preflight
    status, headers, _ = preflight("https://good.example.com", path="/other")
    assert "access-control-allow-origin" not in headers

    # the per-route policy as Istio's TranslateCORSPolicy writes it
    routes = {r["match"].get("prefix"): r for r in vhost_routes(gw, f"{H}:80")}
    cfg = routes["/api"]["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cfg["allow_origin_string_match"] == [{"exact": "https://good.example.com"}, {"prefix": "https://pre."},
                                                {"safe_regex": {"regex": "https://[a-z]+\\.rx\\.example\\.com"}}]
    assert cfg["allow_methods"] == "GET,POST" and cfg["allow_headers"] == "x-custom,content-type"
    assert cfg["expose_headers"] == "x-exposed" and cfg["max_age"] == "600" and cfg["allow_credentials"] is True
    assert cfg["filter_enabled"] == {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    assert cfg["forward_not_matching_preflights"] is True
    assert routes["/ignore"]["typed_per_filter_config"]["envoy.filters.http.cors"]["forward_not_matching_preflights"] is False
    assert "typed_per_filter_config" not in routes["/"]


def test_cors_allow_origins_replaces_deprecated_allow_origin(backend_factory, gateway_factory):
    """TranslateCORSPolicy: ``if in.AllowOrigins != nil {...} else if in.AllowOrigin != nil {...}`` —
    with both set, only allowOrigins counts (the deprecated list must not widen CORS)."""
    H = "cors2.example.com"
    http = [
        {"corsPolicy": {"allowOrigins": [{"exact": "https://new.example.com"}],
                        "allowOrigin": ["https://legacy.example.com"], "allowMethods": ["GET"]},
         "route": to("cb2")},
    ]
    gw, _ = start(gateway_factory, backend_factory, ["cb2"], [gateway_doc(), vs_doc("cors2", [H], http)])
    pre = {"Access-Control-Request-Method": "GET"}
    status, headers, _ = get(gw, "/x", H, method="OPTIONS", headers={"Origin": "https://new.example.com", **pre})
    assert headers.get("access-control-allow-origin") == "https://new.example.com"
    status, headers, _ = get(gw, "/x", H, method="OPTIONS", headers={"Origin": "https://legacy.example.com", **pre})
    assert "access-control-allow-origin" not in headers, dict(headers)


# ----------------------------------------------------------------- fault injection
def test_fault_delay_and_abort(backend_factory, gateway_factory):
    H = "fault.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/delay"}}],
         "fault": {"delay": {"fixedDelay": "0.5s", "percentage": {"value": 100}}}, "route": to("fb")},
        {"match": [{"uri": {"prefix": "/abort0"}}],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 0}}}, "route": to("fb")},
        {"match": [{"uri": {"prefix": "/abort"}}],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}}, "route": to("fb")},
        {"match": [{"uri": {"prefix": "/grpc"}}],
         "fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}, "route": to("fb")},
        {"match": [{"uri": {"prefix": "/both"}}],
         "fault": {"delay": {"fixedDelay": "0.3s", "percentage": {"value": 100}},
                   "abort": {"httpStatus": 503, "percentage": {"value": 100}}}, "route": to("fb")},
        {"route": to("fb")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["fb"], [gateway_doc(), vs_doc("fault", [H], http)])
    fb = b["fb"]

    t0 = time.monotonic()
    status, headers, _ = get(gw, "/delay", H)
    elapsed = time.monotonic() - t0
    assert status == 200 and headers["x-backend"] == "fb"
    assert elapsed >= 0.45, elapsed  # Envoy's timers may fire a few ms early on the client's clock
    t0 = time.monotonic()
    assert get(gw, "/nodelay", H)[0] == 200
    assert time.monotonic() - t0 < 0.4

    before = fb.count
    for _ in range(5):
        status, headers, _ = get(gw, "/abort", H)
        assert status == 418
        assert headers["server"] == "istio-envoy"
    assert fb.count == before, "an aborted request never reaches the backend"
    for _ in range(20):
        assert get(gw, "/abort0", H)[0] == 200
    assert fb.count == before + 20

    # gRPC abort: a gRPC client sees grpc-status 14 (UNAVAILABLE), the backend nothing
    status, headers, _ = get(gw, "/grpc.Svc/Method", H, method="POST", body=b"",
                             headers={"content-type": "application/grpc", "te": "trailers"})
    assert headers.get("grpc-status") == "14", (status, dict(headers))
    assert fb.count == before + 20

    t0 = time.monotonic()
    assert get(gw, "/both", H)[0] == 503
    assert time.monotonic() - t0 >= 0.27  # timer granularity
    assert fb.count == before + 20

    # percentages as Istio's TranslateFault: percentage.value → per million
    routes = {r["match"].get("prefix"): r for r in vhost_routes(gw, f"{H}:80")}
    fault = routes["/delay"]["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"]["percentage"] == {"numerator": 1000000, "denominator": "MILLION"}
    assert routes["/abort0"]["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]["percentage"]["numerator"] == 0
    assert routes["/grpc"]["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]["grpc_status"] == 14


def test_fault_without_percentage_injects_nothing(backend_factory, gateway_factory):
    """Istio's TranslateFault: a delay without ``percentage`` gets ``percent`` (default 0) per hundred,
    an abort without ``percentage`` has no percentage (Envoy: 0%). The Istio API documents both:
    "If left unspecified, no request will be delayed/aborted"."""
    H = "fault0.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/delay"}}], "fault": {"delay": {"fixedDelay": "2s"}}, "route": to("fz")},
        {"match": [{"uri": {"prefix": "/abort"}}], "fault": {"abort": {"httpStatus": 418}}, "route": to("fz")},
        {"match": [{"uri": {"prefix": "/percent"}}],
         "fault": {"delay": {"fixedDelay": "0.5s", "percent": 100}}, "route": to("fz")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["fz"], [gateway_doc(), vs_doc("fault0", [H], http)])
    problems = []
    t0 = time.monotonic()
    status = get(gw, "/delay", H)[0]
    if status != 200 or time.monotonic() - t0 >= 1.5:
        problems.append(f"/delay: {status} after {time.monotonic() - t0:.2f}s (want 200, no delay)")
    statuses = [get(gw, "/abort", H)[0] for _ in range(5)]
    if statuses != [200] * 5:
        problems.append(f"/abort: {statuses} (want never aborted)")
    # the deprecated integer ``percent`` is honoured (per hundred)
    t0 = time.monotonic()
    status = get(gw, "/percent", H)[0]
    if status != 200 or time.monotonic() - t0 < 0.45:  # timer granularity
        problems.append(f"/percent: {status} after {time.monotonic() - t0:.2f}s (want 200, delayed 0.5s)")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- mirroring
def test_mirror_and_mirror_percentage(backend_factory, gateway_factory):
    H = "mirror.example.com"
    http = [
        {"match": [{"uri": {"prefix": "/m100"}}], "route": to("primary"), "mirror": {"host": "shadow"}},
        {"match": [{"uri": {"prefix": "/m0"}}], "route": to("primary"), "mirror": {"host": "shadow0"},
         "mirrorPercentage": {"value": 0}},
        {"match": [{"uri": {"prefix": "/mlist"}}], "route": to("primary"),
         "mirrors": [{"destination": {"host": "shadowa"}}, {"destination": {"host": "shadowb"}, "percentage": {"value": 100}},
                     {"destination": {"host": "shadow0"}, "percentage": {"value": 0}}]},
        {"route": to("primary")},
    ]
    gw, b = start(gateway_factory, backend_factory, ["primary", "shadow", "shadow0", "shadowa", "shadowb"],
                  [gateway_doc(), vs_doc("mirror", [H], http)])
    status, headers, body = get(gw, "/m100/x?y=1", H, method="POST", body="payload")
    assert status == 200 and headers["x-backend"] == "primary"
    copy = b["shadow"].wait_for_requests(1)[-1]
    assert copy["path"] == "/m100/x?y=1"
    assert copy["method"] == "POST" and copy["body"] == "payload"
    assert copy["headers"]["host"] == H, "no -shadow suffix (DISABLE_SHADOW_HOST_SUFFIX)"

    for _ in range(10):
        assert get(gw, "/m0", H)[0] == 200
    get(gw, "/mlist", H)
    b["shadowa"].wait_for_requests(1)
    b["shadowb"].wait_for_requests(1)
    # let any stray 0% copy land before checking (bounded poll, expected to time out)
    try:
        wait_until(lambda: b["shadow0"].count > 0, 0.5)
    except TimeoutError:
        pass
    assert b["shadow0"].count == 0
    assert b["primary"].count == 12


# ----------------------------------------------------------------- route features on an HTTPS server
def test_routes_on_an_https_server(backend_factory, gateway_factory, cert_authority):
    """On a TLS server the redirect scheme defaults to https (ApplyRedirect isTLS), so derivePort 443 is
    omitted and an explicit 8443 kept; ``scheme`` matches see https; x-forwarded-proto is https."""
    H = "secure.example.com"
    cert = cert_authority.issue(H)
    be = backend_factory("sb")
    gw_doc = gateway_doc(hosts=[H])
    gw_doc["spec"]["servers"] = [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [H],
                                  "tls": {"mode": "SIMPLE", "credentialName": "secure-cert"}}]
    http = [
        {"match": [{"uri": {"prefix": "/derive"}}], "redirect": {"derivePort": "FROM_REQUEST_PORT", "uri": "/d"}},
        {"match": [{"uri": {"prefix": "/port"}}], "redirect": {"port": 8443}},
        {"match": [{"uri": {"prefix": "/plain"}}], "redirect": {"scheme": "http", "derivePort": "FROM_REQUEST_PORT"}},
        {"match": [{"uri": {"prefix": "/s"}, "scheme": {"exact": "https"}}], "route": to("sb")},
        {"directResponse": {"status": 404, "body": {"string": "no scheme match"}}},
    ]
    docs = dump(gw_doc, vs_doc("secure", [H], http), se_doc("sb", be.port))
    gw = gateway_factory([docs, cert.secret_yaml("secure-cert")], ports=(443,))

    def sget(path: str) -> tuple:
        return tuple(https_get(gw, 443, path, host=H, ca=None, verify=False))

    status, headers, _ = sget("/derive/x?q=1")
    assert (status, headers.get("location")) == (301, "https://secure.example.com/d?q=1")
    status, headers, _ = sget("/port/x")
    assert (status, headers.get("location")) == (301, "https://secure.example.com:8443/port/x")
    status, headers, _ = sget("/plain/x")
    assert (status, headers.get("location")) == (301, "http://secure.example.com:443/plain/x")
    status, headers, _ = sget("/s/x")
    assert status == 200 and headers["x-backend"] == "sb"
    assert be.requests[-1]["headers"]["x-forwarded-proto"] == "https"
