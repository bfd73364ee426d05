"""VirtualService ``http[].match`` end to end: which backend answers a real request.

Istio reference: pilot/pkg/networking/core/route/route.go (TranslateRouteMatch,
BuildHTTPRoutesForVirtualService, IsCatchAllRoute); istio-semantics.md 2.2/2.3.
Every route sends to its own backend, named after the case, so the answering
backend (``x-backend``) tells which route matched.
"""

from __future__ import annotations

from typing import Any

from harness import http_get

from istio_docs import dump, gateway_doc, route_configs, se_doc, start, to, vhost_routes, vs_doc
HOST = "match.example.com"
OTHER = "other.example.com"


# ----------------------------------------------------------------- helpers
def who(gw, path: str, host: str = HOST, **kw: Any) -> str:  # noqa: ANN001
    """The backend that answered, or ``status:<code>`` for a non-backend answer."""
    status, headers, _ = http_get(gw, 80, path, host=host, **kw)
    if "x-backend" in headers:
        assert status == 200, (path, status)
        return headers["x-backend"]
    return f"status:{status}"


# ----------------------------------------------------------------- the big table
def _match_vs() -> tuple[list[str], dict]:
    http = [
        {"match": [{"uri": {"exact": "/exact"}}], "route": to("exact")},
        {"match": [{"uri": {"prefix": "/foo"}}], "route": to("prefix")},
        {"match": [{"uri": {"regex": "/re/[0-9]+"}}], "route": to("regex")},
        {"match": [{"uri": {"prefix": "/hx"}, "headers": {"x-k": {"exact": "v"}}}], "route": to("hexact")},
        {"match": [{"uri": {"prefix": "/hp"}, "headers": {"x-k": {"prefix": "ab"}}}], "route": to("hprefix")},
        {"match": [{"uri": {"prefix": "/hr"}, "headers": {"x-k": {"regex": "[0-9]+"}}}], "route": to("hregex")},
        {"match": [{"uri": {"prefix": "/star"}, "headers": {"x-k": {"regex": "*"}}}], "route": to("hstar")},
        {"match": [{"uri": {"prefix": "/empty"}, "headers": {"x-k": {}}}], "route": to("hempty")},
        {"match": [{"uri": {"prefix": "/wo"}, "withoutHeaders": {"x-k": {"exact": "bad"}}}], "route": to("without")},
        {"match": [{"uri": {"prefix": "/nostar"}, "withoutHeaders": {"x-k": {"regex": "*"}}}], "route": to("wostar")},
        {"match": [{"uri": {"prefix": "/nevermatch"}, "withoutHeaders": {"x-k": {"regex": ".*"}}}], "route": to("never")},
        {"match": [{"uri": {"prefix": "/qx"}, "queryParams": {"k": {"exact": "v"}}}], "route": to("qexact")},
        {"match": [{"uri": {"prefix": "/qp"}, "queryParams": {"k": {"prefix": "ab"}}}], "route": to("qprefix")},
        {"match": [{"uri": {"prefix": "/qr"}, "queryParams": {"k": {"regex": "[0-9]+"}}}], "route": to("qregex")},
        {"match": [{"uri": {"prefix": "/qs"}, "queryParams": {"k": {"regex": "*"}}}], "route": to("qpresent")},
        {"match": [{"uri": {"prefix": "/m"}, "method": {"exact": "POST"}}], "route": to("method")},
        {"match": [{"uri": {"prefix": "/auth"}, "authority": {"exact": OTHER}}], "route": to("authority")},
        {"match": [{"uri": {"prefix": "/apfx"}, "authority": {"prefix": "oth"}}], "route": to("authprefix")},
        {"match": [{"uri": {"prefix": "/sch-http"}, "scheme": {"exact": "http"}}], "route": to("schemehttp")},
        {"match": [{"uri": {"prefix": "/tls-scheme"}, "scheme": {"exact": "https"}}], "route": to("schemehttps")},
        {"match": [{"uri": {"prefix": "/p80"}, "port": 80}], "route": to("port80")},
        {"match": [{"uri": {"prefix": "/p81"}, "port": 81}], "route": to("port81")},
        {"match": [{"uri": {"exact": "/case"}, "ignoreUriCase": True}], "route": to("nocase")},
        {"match": [{"uri": {"exact": "/sensitive"}}], "route": to("sensitive")},
        {"match": [{"uri": {"prefix": "/ipfx"}, "ignoreUriCase": True}], "route": to("nocaseprefix")},
        {"name": "either", "match": [{"uri": {"exact": "/or1"}, "name": "one"}, {"uri": {"exact": "/or2"}},
                                     {"headers": {"x-or": {"exact": "1"}}}],
         "route": to("orroute")},
        {"match": [{"uri": {"prefix": "/order/a"}}], "route": to("ordera")},
        {"match": [{"uri": {"prefix": "/order"}}], "route": to("orderall")},
        {"match": [{"uri": {"prefix": "/shadow"}}], "route": to("shadowbroad")},
        {"match": [{"uri": {"prefix": "/shadow/x"}}], "route": to("shadownarrow")},
        {"match": [{"uri": {"prefix": "/both"}, "headers": {"x-a": {"exact": "1"}, "x-b": {"exact": "2"}},
                    "queryParams": {"q": {"exact": "3"}}}], "route": to("androute")},
        {"route": to("default")},
        {"match": [{"uri": {"exact": "/after"}}], "route": to("after")},
    ]
    names = sorted({h["route"][0]["destination"]["host"] for h in http})
    return names, vs_doc("match-vs", [HOST, OTHER], http)


def test_match_conditions_pick_the_route(backend_factory, gateway_factory):
    names, vs = _match_vs()
    gw, backends = start(gateway_factory, backend_factory, names, [gateway_doc(), vs])
    cases: list[tuple[str, dict, str]] = [
        # uri exact / prefix (plain string prefix) / regex (full match, query ignored)
        ("/exact", {}, "exact"),
        ("/exact?x=1", {}, "exact"),
        ("/exact/more", {}, "default"),
        ("/exactly", {}, "default"),
        # HCM normalize_path: true (Istio pathNormalization DEFAULT) but merge_slashes: false
        ("/foo/../exact", {}, "exact"),
        ("/./exact", {}, "exact"),
        ("//exact", {}, "default"),
        ("/foo", {}, "prefix"),
        ("/foobar", {}, "prefix"),
        ("/foo/bar", {}, "prefix"),
        ("/fo", {}, "default"),
        ("/re/123", {}, "regex"),
        ("/re/123?a=b", {}, "regex"),
        ("/re/12a", {}, "default"),
        ("/x/re/1", {}, "default"),
        # headers
        ("/hx", {"headers": {"x-k": "v"}}, "hexact"),
        ("/hx", {"headers": {"x-k": "vv"}}, "default"),
        ("/hx", {}, "default"),
        ("/hp", {"headers": {"x-k": "abc"}}, "hprefix"),
        ("/hp", {"headers": {"x-k": "xab"}}, "default"),
        ("/hr", {"headers": {"x-k": "123"}}, "hregex"),
        ("/hr", {"headers": {"x-k": "12a"}}, "default"),
        ("/star", {"headers": {"x-k": "anything"}}, "hstar"),
        ("/star", {"headers": {"x-k": ""}}, "hstar"),
        ("/star", {}, "default"),
        ("/empty", {"headers": {"x-k": "z"}}, "hempty"),
        ("/empty", {}, "default"),
        # withoutHeaders: exact also matches a missing header; regex "*" = absent only
        ("/wo", {}, "without"),
        ("/wo", {"headers": {"x-k": "good"}}, "without"),
        ("/wo", {"headers": {"x-k": "bad"}}, "default"),
        ("/nostar", {}, "wostar"),
        ("/nostar", {"headers": {"x-k": "x"}}, "default"),
        # withoutHeaders regex ".*" (treat_missing_header_as_empty): never matches
        ("/nevermatch", {}, "default"),
        ("/nevermatch", {"headers": {"x-k": "v"}}, "default"),
        # query parameters
        ("/qx?k=v", {}, "qexact"),
        ("/qx?a=1&k=v", {}, "qexact"),
        ("/qx?k=vv", {}, "default"),
        ("/qx", {}, "default"),
        ("/qp?k=abz", {}, "qprefix"),
        ("/qp?k=zab", {}, "default"),
        ("/qr?k=42", {}, "qregex"),
        ("/qr?k=4x2", {}, "default"),
        ("/qs?k=whatever", {}, "qpresent"),
        ("/qs?other=1", {}, "default"),
        # method
        ("/m", {"method": "POST", "body": "x"}, "method"),
        ("/m", {}, "default"),
        # authority (the Host header)
        ("/auth", {"host": OTHER}, "authority"),
        ("/auth", {}, "default"),
        ("/apfx", {"host": OTHER}, "authprefix"),
        ("/apfx", {}, "default"),
        # scheme: plain HTTP listener
        ("/sch-http", {}, "schemehttp"),
        ("/tls-scheme", {}, "default"),
        # port: the server port is 80 (bound elsewhere by the harness); 81 is dropped
        ("/p80", {}, "port80"),
        ("/p81", {}, "default"),
        # ignoreUriCase
        ("/CASE", {}, "nocase"),
        ("/case", {}, "nocase"),
        ("/cAsE", {}, "nocase"),
        ("/sensitive", {}, "sensitive"),
        ("/SENSITIVE", {}, "default"),
        ("/IPFX/more", {}, "nocaseprefix"),
        # several matches in one entry: OR
        ("/or1", {}, "orroute"),
        ("/or2", {}, "orroute"),
        ("/anything", {"headers": {"x-or": "1"}}, "orroute"),
        ("/or3", {}, "default"),
        # within one match: AND of every condition
        ("/both?q=3", {"headers": {"x-a": "1", "x-b": "2"}}, "androute"),
        ("/both?q=3", {"headers": {"x-a": "1"}}, "default"),
        ("/both?q=4", {"headers": {"x-a": "1", "x-b": "2"}}, "default"),
        # order: first match wins
        ("/order/a/x", {}, "ordera"),
        ("/order/b", {}, "orderall"),
        ("/shadow/x", {}, "shadowbroad"),
        # after the catch-all: never reached
        ("/after", {}, "default"),
        ("/", {}, "default"),
    ]
    failures = []
    for path, kw, want in cases:
        kw = dict(kw)
        host = kw.pop("host", HOST)
        got = who(gw, path, host=host, **kw)
        if got != want:
            failures.append(f"{kw.get('method', 'GET')} {host}{path} {kw.get('headers', {})}: got {got}, want {want}")
    assert not failures, "\n".join(failures)
    # the route for a port that is not the server's is not emitted at all
    routes = vhost_routes(gw, f"{HOST}:80")
    prefixes = [r["match"].get("prefix") for r in routes]
    assert "/p80" in prefixes and "/p81" not in prefixes
    # routes after the catch-all are dropped; the catch-all is last
    assert routes[-1]["match"] == {"prefix": "/"}
    assert all(r["match"].get("path") != "/after" for r in routes)
    assert backends["after"].count == 0 and backends["port81"].count == 0 and backends["schemehttps"].count == 0
    assert backends["never"].count == 0

    # Client-invisible but Istio-exact: present_match, invert + treat_missing_header_as_empty,
    # pseudo-headers for method/authority/scheme, route names.  case_sensitive: Istio always
    # writes it; envoygen writes only `false` (ignoreUriCase), true being Envoy's default
    # (issue 14's lean bootstrap) - the /CASE and /SENSITIVE requests above show both behaviours.
    def by_prefix(p: str) -> dict:
        return next(r["match"] for r in routes if r["match"].get("prefix") == p or r["match"].get("path") == p)

    assert [r["match"]["case_sensitive"] for r in routes if "case_sensitive" in r["match"]] == [False, False]  # /case, /ipfx
    assert by_prefix("/case")["case_sensitive"] is False
    assert by_prefix("/foo") == {"prefix": "/foo"}
    assert by_prefix("/star")["headers"] == [{"name": "x-k", "present_match": True}]
    assert by_prefix("/empty")["headers"] == [{"name": "x-k", "present_match": True}]
    wo = by_prefix("/wo")["headers"]
    assert wo == [{"name": "x-k", "string_match": {"exact": "bad"}, "invert_match": True,
                   "treat_missing_header_as_empty": True}], wo
    wostar = by_prefix("/nostar")["headers"]
    assert wostar == [{"name": "x-k", "present_match": True, "invert_match": True}], wostar
    assert by_prefix("/qs")["query_parameters"] == [{"name": "k", "present_match": True}]
    assert by_prefix("/m")["headers"][0]["name"] == ":method"
    assert by_prefix("/auth")["headers"][0]["name"] == ":authority"
    assert by_prefix("/sch-http")["headers"][0]["name"] == ":scheme"
    # route names: http[].name, or <name>.<match.name>; one Envoy route per match entry
    assert [r.get("name") for r in routes if r["route"]["cluster"].endswith("|orroute.test.svc.cluster.local")] == [
        "either.one", "either", "either"]
    regex = next(r["match"] for r in routes if "safe_regex" in r["match"])
    assert regex["safe_regex"]["regex"] == "/re/[0-9]+"


def test_regex_catch_all_truncates_the_vs_and_analyzer_warns(backend_factory, gateway_factory):
    """``uri: {regex: ".*"}`` is a catch-all: later routes of that VS are not emitted (EG0207)."""
    http = [
        {"match": [{"uri": {"exact": "/first"}}], "route": to("first")},
        {"match": [{"uri": {"regex": ".*"}}], "route": to("regexall")},
        {"match": [{"uri": {"exact": "/later"}}], "route": to("later")},
    ]
    gw, backends = start(gateway_factory, backend_factory, ["first", "regexall", "later"],
                         [gateway_doc(), vs_doc("re-vs", [HOST], http)])
    assert who(gw, "/first") == "first"
    assert who(gw, "/later") == "regexall"
    assert who(gw, "/any/thing") == "regexall"
    assert backends["later"].count == 0
    assert "EG0207" in gw.render_result.stderr, gw.render_result.stderr
    routes = vhost_routes(gw, f"{HOST}:80")
    assert len(routes) == 2, routes


def test_catch_all_match_list_stops_the_vs_and_analyzer_warns(backend_factory, gateway_factory):
    """A catch-all inside a match list stops that entry and the VS; no match at all is a catch-all too."""
    http = [
        {"match": [{"uri": {"prefix": "/"}}, {"uri": {"exact": "/never"}}], "route": to("slash")},
        {"match": [{"uri": {"exact": "/dropped"}}], "route": to("dropped")},
    ]
    gw, backends = start(gateway_factory, backend_factory, ["slash", "dropped"],
                         [gateway_doc(), vs_doc("slash-vs", [HOST], http)])
    assert who(gw, "/dropped") == "slash"
    assert who(gw, "/never") == "slash"
    assert backends["dropped"].count == 0
    routes = vhost_routes(gw, f"{HOST}:80")
    assert [r["match"] for r in routes] == [{"prefix": "/"}]
    assert "EG0207" in gw.render_result.stderr, gw.render_result.stderr


def test_prefix_slash_with_a_header_is_not_a_catch_all(backend_factory, gateway_factory):
    """prefix '/' plus a header matcher is not a catch-all: later routes still apply, no EG0207."""
    http = [
        {"match": [{"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "1"}}}], "route": to("canary")},
        {"route": to("stable")},
    ]
    gw, backends = start(gateway_factory, backend_factory, ["canary", "stable"],
                         [gateway_doc(), vs_doc("canary-vs", [HOST], http)])
    assert who(gw, "/a", headers={"x-canary": "1"}) == "canary"
    assert who(gw, "/a") == "stable"
    assert who(gw, "/a", headers={"x-canary": "2"}) == "stable"
    assert "EG0207" not in gw.render_result.stderr


def test_no_matching_route_is_404(backend_factory, gateway_factory):
    """A known host with no matching route: 404 from Envoy (NR), server istio-envoy."""
    http = [{"match": [{"uri": {"prefix": "/only"}}], "route": to("only")}]
    gw, backends = start(gateway_factory, backend_factory, ["only"],
                         [gateway_doc(), vs_doc("only-vs", [HOST], http)])
    assert who(gw, "/only/x") == "only"
    status, headers, _ = http_get(gw, 80, "/elsewhere", host=HOST)
    assert status == 404
    assert headers["server"] == "istio-envoy"
    assert backends["only"].count == 1


def test_match_port_equal_to_server_port_with_port_map(backend_factory, gateway_factory):
    """match.port compares with the *server* port (8080 → a server on 8080 matches port 8080;
    the listener may be bound anywhere)."""
    http = [
        {"match": [{"port": 8080, "uri": {"prefix": "/"}}], "route": to("p8080")},
        {"match": [{"port": 80}], "route": to("p80")},
        {"route": to("fallback")},
    ]
    backends = {n: backend_factory(n) for n in ("p8080", "p80", "fallback")}
    # a VS whose every match names another port yields no route, hence no vhost at all
    other_port_only = vs_doc("other-port", [OTHER], [{"match": [{"port": 80}], "route": to("p80")}])
    docs = [gateway_doc(port=8080), vs_doc("port-vs", [HOST], http), other_port_only,
            *(se_doc(n, b.port) for n, b in backends.items())]
    gw = gateway_factory(dump(*docs), ports=(8080,))
    status, headers, _ = http_get(gw, 8080, "/x", host=HOST)
    assert status == 200 and headers["x-backend"] == "p8080"
    assert backends["p80"].count == 0 and backends["fallback"].count == 0
    status, headers, _ = http_get(gw, 8080, "/x", host=OTHER)
    assert status == 404 and headers["server"] == "istio-envoy"
    names = [vh["name"] for rc in route_configs(gw).values() for vh in rc["virtual_hosts"]]
    assert names == [f"{HOST}:8080"], names


def test_invalid_regex_is_rejected_at_build_time(gateway_factory):
    """Istio validation rejects a regex that does not compile; envoygen reports EG0208 with the field."""
    vs = vs_doc("bad-re", [HOST], [{"match": [{"uri": {"regex": "/a/(unclosed"}}], "route": to("x")}])
    gw = gateway_factory(dump(gateway_doc(), vs, se_doc("x", 9)), ports=(80,), start=False)
    code, _, stderr, _ = gw.render()
    assert code == 1, stderr
    assert "EG0208" in stderr and "spec.http[0].match[0].uri" in stderr, stderr
