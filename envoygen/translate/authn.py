"""RequestAuthentication → envoy.filters.http.jwt_authn, as Istio's pilot/pkg/security/authn
(``convertToEnvoyJwtConfig``): the jwtRules of every attached policy, sorted by issuer, become
providers ``origins-<i>`` with the payload in metadata ``payload`` (what AuthorizationPolicy's
requestPrincipals and claims read); a token that is present must be valid (401 otherwise), a
request without one passes (``allow_missing``) and is left to AuthorizationPolicy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import ir
from ..model import Res

DEFAULT_SPACE_DELIMITED = ("permission", "scope")


def build_jwt(policies: list[Res[Any]], jwks: dict[str, str]) -> ir.JwtAuthn | None:
    rules = [r for p in policies for r in p.obj.spec.jwt_rules]
    rules.sort(key=lambda r: r.issuer)  # stable: policies' order among equal issuers, as Istio's SortBy
    providers = []
    for i, r in enumerate(rules):
        keys = r.jwks if r.jwks is not None else jwks.get(r.jwks_uri or "")
        if keys is None:
            continue  # resolve reported EG0310; the pipeline stops before rendering
        providers.append(ir.JwtProvider(
            name=f"origins-{i}", issuer=r.issuer, jwks=keys, audiences=tuple(r.audiences),
            forward=r.forward_original_token, forward_payload_header=r.output_payload_to_header,
            claim_to_headers=tuple((c.header, c.claim) for c in r.output_claim_to_headers),
            from_headers=tuple((h.name, h.prefix) for h in r.from_headers),
            from_params=tuple(r.from_params), from_cookies=tuple(r.from_cookies),
            space_delimited_claims=tuple(sorted(set(r.space_delimited_claims) | set(DEFAULT_SPACE_DELIMITED)))
            if r.space_delimited_claims else DEFAULT_SPACE_DELIMITED,
        ))
    return ir.JwtAuthn(tuple(providers)) if providers else None


def attach_jwt(listeners: list[ir.Listener], jwt: ir.JwtAuthn | None) -> list[ir.Listener]:
    """Every HTTP filter chain gets the jwt_authn filter (TCP chains have no requests to check)."""
    if jwt is None:
        return listeners
    return [replace(l, filter_chains=tuple(replace(fc, http=replace(fc.http, jwt=jwt)) if fc.http is not None else fc
                                           for fc in l.filter_chains)) for l in listeners]
