"""The normal form of an Istio HTTP match (pilot's TranslateRouteMatch), shared
by the analyzer (routes shadowed by a catch-all) and the translator (route
matches): one reading of ``HTTPMatchRequest``, in IR terms."""

from __future__ import annotations

from .. import ir
from ..model.networking import HTTPMatchRequest, StringMatch


def string_matcher(m: StringMatch | None) -> ir.StringMatcher:
    if m is None or (m.exact is None and m.prefix is None and m.regex is None) or m.regex == "*" or m.prefix == "":
        # an empty prefix matches any value of a present header (Envoy refuses an empty prefix)
        return ir.StringMatcher("present")
    if m.exact is not None:
        return ir.StringMatcher("exact", m.exact)
    if m.prefix is not None:
        return ir.StringMatcher("prefix", m.prefix)
    return ir.StringMatcher("safe_regex", m.regex or "")


def header_match(name: str, m: StringMatch, invert: bool = False) -> ir.HeaderMatch:
    sm = string_matcher(m)
    return ir.HeaderMatch(name.lower() if not name.startswith(":") else name, sm, invert,
                          treat_missing_as_empty=invert and sm.kind != "present")


def route_match(m: HTTPMatchRequest | None) -> ir.RouteMatch:
    """TranslateRouteMatch."""
    if m is None:
        return ir.RouteMatch("prefix", "/")
    kind, path = "prefix", "/"
    if m.uri is not None:
        if m.uri.exact is not None:
            kind, path = "path", m.uri.exact
        elif m.uri.prefix is not None:
            kind, path = "prefix", m.uri.prefix
        elif m.uri.regex is not None:
            kind, path = "safe_regex", m.uri.regex
    if not (m.headers or m.without_headers or m.query_params) and m.method is None and m.authority is None \
            and m.scheme is None:
        return ir.RouteMatch(kind, path, not m.ignore_uri_case)  # type: ignore[arg-type]  # the common case
    headers = [header_match(k, v) for k, v in m.headers.items()]
    headers += [header_match(k, v, invert=True) for k, v in m.without_headers.items()]
    for pseudo, sm in ((":method", m.method), (":authority", m.authority), (":scheme", m.scheme)):
        if sm is not None:
            headers.append(header_match(pseudo, sm))
    query = [ir.QueryMatch(k, string_matcher(v)) for k, v in sorted(m.query_params.items())]
    return ir.RouteMatch(kind, path, not m.ignore_uri_case,  # type: ignore[arg-type]
                         tuple(sorted(headers, key=lambda h: (h.name, h.invert))), tuple(query))


def is_catch_all(match: ir.RouteMatch) -> bool:
    """isCatchAllRoute: prefix '/' or regex '.*'/'*' with no header or query matcher."""
    path_all = (match.path_kind == "prefix" and match.path == "/") or (
        match.path_kind == "safe_regex" and match.path in (".*", "*"))
    return path_all and not match.headers and not match.query_parameters
