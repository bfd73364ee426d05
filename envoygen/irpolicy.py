"""The IR of policy filters (RBAC, JWT): part of ``ir`` (re-exported there), kept in its own module.

Envoy-shaped, free of Istio, stdlib only, like the rest of the IR; every class a frozen
dataclass (``@record``, records.py).
"""

from __future__ import annotations

from typing import Literal

from .records import record

# ------------------------------------------------------------------ policies (RBAC)


@record
class Matcher:
    """envoy.type.matcher.v3.StringMatcher, with every pattern Istio's authz builder writes."""

    kind: Literal["exact", "prefix", "suffix", "safe_regex"]
    value: str
    ignore_case: bool = False


@record
class RbacRule:
    """One node of an RBAC permission or principal (envoy.config.rbac.v3); ``kind`` names the oneof.

    ``and``/``or``/``not`` render as and_rules/or_rules/not_rule in a permission and as
    and_ids/or_ids/not_id in a principal."""

    kind: Literal["any", "and", "or", "not", "header", "url_path", "uri_template", "destination_port",
                  "destination_ip", "requested_server_name", "direct_remote_ip", "remote_ip", "authenticated",
                  "metadata"]
    children: tuple["RbacRule", ...] = ()
    name: str = ""  # header name, or the metadata's filter
    matcher: Matcher | None = None  # header string_match (None: present_match), url_path, SNI, authenticated
    path: tuple[str, ...] = ()  # metadata path keys
    values: tuple[Matcher, ...] = ()  # metadata: one string_match, several or_match
    list_match: bool = False  # metadata holding a list (JWT claims): its one_of, or the value itself
    cidr: tuple[str, int] | None = None
    port: int = 0
    template: str = ""  # uri_template path_template


@record
class RbacPolicy:
    name: str
    permissions: tuple[RbacRule, ...]
    principals: tuple[RbacRule, ...]


@record
class Rbac:
    """One RBAC filter (HTTP or network): enforced rules and/or shadow (dry-run) rules of one action."""

    action: Literal["ALLOW", "DENY", "LOG"]
    rules: tuple[RbacPolicy, ...] | None  # None: no enforced policy of this action (only dry-run ones)
    shadow: tuple[RbacPolicy, ...] | None = None


@record
class JwtProvider:
    """One jwt_authn provider (a RequestAuthentication jwtRule), keys inline."""

    name: str
    issuer: str
    jwks: str
    audiences: tuple[str, ...] = ()
    forward: bool = False
    forward_payload_header: str | None = None
    claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
    from_headers: tuple[tuple[str, str], ...] = ()  # (name, value prefix)
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    space_delimited_claims: tuple[str, ...] = ("permission", "scope")


@record
class JwtAuthn:
    """envoy.filters.http.jwt_authn: a token, when present, must be valid for one of the providers."""

    providers: tuple[JwtProvider, ...]


@record
class ConfigPatch:
    """One EnvoyFilter patch, applied in this order to the rendered bootstrap (envoygen/patch.py).

    Empty match fields match anything; ``value`` is the patch value as JSON text (snake_case keys)."""

    apply_to: str
    operation: str
    value: str
    origin: str  # "file:line" of the patch, for findings
    label: str  # "EnvoyFilter ns/name configPatches[i]"
    listener_port: int = 0
    listener_name: str = ""
    chain_name: str = ""
    chain_sni: str = ""
    filter_name: str = ""
    sub_filter_name: str = ""
    route_config_name: str = ""
    route_config_port: int = 0
    route_port_name: str = ""
    route_gateway: str = ""
    vhost_name: str = ""
    route_name: str = ""
    cluster_name: str = ""
    cluster_service: str = ""
    cluster_port: int = 0
    cluster_subset: str = ""
