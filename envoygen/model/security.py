"""security.istio.io AuthorizationPolicy and RequestAuthentication (v1, v1beta1).

Strict like every input model: a field Istio has that envoygen does not
compile is refused by name (EG0104); values Istio's validation would reject
(a CIDR that does not parse, a port that is not a number) are EG0102.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import Metadata, NonEmptyStr, Strict, unsupported


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is neither an IP address nor a CIDR block") from None
    return value


def _port(value: str) -> str:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"{value!r} is not a port number (0-65535, written as a string)")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
PortText = Annotated[str, AfterValidator(_port)]


class WorkloadSelector(Strict):
    match_labels: dict[str, str] = Field(default_factory=dict)


class TargetRef(Strict):
    group: str = ""
    kind: NonEmptyStr
    name: NonEmptyStr
    namespace: str = ""


class Source(Strict):
    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    request_principals: list[str] = Field(default_factory=list)
    not_request_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)
    service_accounts: list[str] = Field(default_factory=list)
    not_service_accounts: list[str] = Field(default_factory=list)
    ip_blocks: list[Cidr] = Field(default_factory=list)
    not_ip_blocks: list[Cidr] = Field(default_factory=list)
    remote_ip_blocks: list[Cidr] = Field(default_factory=list)
    not_remote_ip_blocks: list[Cidr] = Field(default_factory=list)


class From(Strict):
    source: Source


_TEMPLATE_OPERATOR = re.compile(r"\{\*\*?\}")


def _path(value: str) -> str:
    """Istio's validation of operation paths: a ``{*}``/``{**}`` template only as whole segments."""
    if _TEMPLATE_OPERATOR.search(value):
        for seg in value.split("/"):
            if "{" in seg and seg not in ("{*}", "{**}"):
                raise ValueError(f"{value!r}: a path template operator must be a whole segment ({{*}} or {{**}})")
        if "{**}" in value.split("/")[:-1] and value.count("{**}") > 1:
            raise ValueError(f"{value!r}: at most one {{**}} in a path template")
    elif "{" in value or "}" in value:
        raise ValueError(f"{value!r}: only {{*}} and {{**}} are path template operators")
    return value


PathText = Annotated[str, AfterValidator(_path)]


class Operation(Strict):
    hosts: list[str] = Field(default_factory=list)
    not_hosts: list[str] = Field(default_factory=list)
    ports: list[PortText] = Field(default_factory=list)
    not_ports: list[PortText] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[PathText] = Field(default_factory=list)
    not_paths: list[PathText] = Field(default_factory=list)


class To(Strict):
    operation: Operation


WHEN_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.principal", "source.serviceAccount",
             "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
             "destination.ip", "destination.port", "connection.sni")
WHEN_PREFIXES = ("request.headers[", "request.auth.claims[")


class Condition(Strict):
    key: NonEmptyStr
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "Condition":
        k = self.key
        if k.startswith("experimental.envoy.filters."):
            raise ValueError(f"when key {k!r}: experimental Envoy metadata keys are not supported by envoygen")
        if k not in WHEN_KEYS and not (k.startswith(WHEN_PREFIXES) and k.endswith("]") and len(k) > k.index("[") + 2):
            raise ValueError(f"unknown when key {k!r}; Istio supports " + ", ".join(WHEN_KEYS)
                             + ", request.headers[NAME], request.auth.claims[NAME]")
        if not self.values and not self.not_values:
            raise ValueError(f"when key {k!r}: set values or notValues")
        if k in ("source.ip", "remote.ip", "destination.ip"):
            for v in self.values + self.not_values:
                _cidr(v)
        if k == "destination.port":
            for v in self.values + self.not_values:
                _port(v)
        return self


class Rule(Strict):
    from_: list[From] = Field(default_factory=list, alias="from")
    to: list[To] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class Provider(Strict):
    name: NonEmptyStr


class AuthorizationPolicySpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: TargetRef | None = None
    target_refs: list[TargetRef] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    provider: Provider | None = None


class AuthorizationPolicy(Strict):
    api_version: str
    kind: Literal["AuthorizationPolicy"]
    metadata: Metadata
    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)
    status: Any = None

    @property
    def dry_run(self) -> bool:
        """Istio's ``istio.io/dry-run`` annotation: evaluated and logged (shadow rules), not enforced."""
        return self.metadata.annotations.get("istio.io/dry-run", "").lower() == "true"


# --------------------------------------------------------------------------- RequestAuthentication


class JwtHeader(Strict):
    name: NonEmptyStr
    prefix: str = ""


class ClaimToHeader(Strict):
    header: NonEmptyStr
    claim: NonEmptyStr


class JwtRule(Strict):  # noqa: D101 - Istio's JWTRule
    issuer: NonEmptyStr
    audiences: list[str] = Field(default_factory=list)
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JwtHeader] = Field(default_factory=list)
    from_params: list[str] = Field(default_factory=list)
    from_cookies: list[str] = Field(default_factory=list)
    output_payload_to_header: str | None = None
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    forward_original_token: bool = False
    space_delimited_claims: list[str] = Field(default_factory=list)
    timeout: unsupported("the JWKS is fetched when the bundle is built, not by the running gateway") = None


def _jwks_source(rule: JwtRule) -> JwtRule:
    if rule.jwks and rule.jwks_uri:
        raise ValueError("set jwks or jwksUri, not both")
    return rule


class RequestAuthenticationSpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: TargetRef | None = None
    target_refs: list[TargetRef] = Field(default_factory=list)
    jwt_rules: list[Annotated[JwtRule, AfterValidator(_jwks_source)]] = Field(default_factory=list)


class RequestAuthentication(Strict):
    api_version: str
    kind: Literal["RequestAuthentication"]
    metadata: Metadata
    spec: RequestAuthenticationSpec = Field(default_factory=RequestAuthenticationSpec)
    status: Any = None
