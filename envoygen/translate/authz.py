"""AuthorizationPolicy → RBAC filters, as Istio's pilot/pkg/security/authz (builder, model, matcher) builds them.

- One RBAC filter per action present, in Istio's order AUDIT (LOG), DENY, ALLOW; dry-run policies
  (``istio.io/dry-run: "true"``) go to the filter's shadow rules.
- Each rule is an RBAC policy ``ns[NS]-policy[NAME]-rule[i]``: one permission per ``to`` (hosts, methods,
  paths, ports, then the ``when`` permission keys), one principal per ``from`` (principals,
  requestPrincipals, serviceAccounts, namespaces, remoteIpBlocks, ipBlocks, then the ``when`` principal
  keys); every field is an OR of its values, ``notX`` a NOT of that OR; all fields ANDed.
- A policy without rules matches nothing (an ALLOW one therefore denies everything).
- On a TCP filter chain, HTTP-only fields cannot be evaluated: an ALLOW rule that uses one is dropped
  (it allows nothing), a DENY/AUDIT rule drops just those values (denies more), as Istio does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from ipaddress import ip_network
from typing import TYPE_CHECKING, Any, Callable

from .. import ir
from ..diagnostics import Findings
from ..model import Res

if TYPE_CHECKING:  # annotations only: model.security is imported when such a policy is read
    from ..model.security import AuthorizationPolicy, Rule

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
ACTIONS = (("AUDIT", "LOG"), ("DENY", "DENY"), ("ALLOW", "ALLOW"))


class HttpOnly(Exception):
    """A field that only an HTTP filter chain can evaluate."""


def _any() -> ir.RbacRule:
    return ir.RbacRule("any")


def _and(rules: list[ir.RbacRule]) -> ir.RbacRule:
    return ir.RbacRule("and", tuple(rules))


def _or(rules: list[ir.RbacRule]) -> ir.RbacRule:
    return ir.RbacRule("or", tuple(rules))


def _not(rule: ir.RbacRule) -> ir.RbacRule:
    return ir.RbacRule("not", (rule,))


def string_matcher(value: str, prefix: str = "") -> ir.Matcher:
    """matcher.StringMatcherWithPrefix: ``*`` any non-empty, ``*x`` suffix, ``x*`` prefix, else exact."""
    if value == "*":
        return ir.Matcher("safe_regex", ".+")
    if value.startswith("*"):
        if not prefix:
            return ir.Matcher("suffix", value[1:])
        return ir.Matcher("safe_regex", prefix + ".*" + re.escape(value[1:]))
    if value.endswith("*"):
        return ir.Matcher("prefix", prefix + value[:-1])
    return ir.Matcher("exact", prefix + value)


def header_rule(name: str, value: str, ignore_case: bool = False) -> ir.RbacRule:
    """matcher.HeaderMatcher / HostMatcher: ``*`` present, ``*x`` suffix, ``x*`` prefix, else exact."""
    if value == "*":
        return ir.RbacRule("header", name=name)
    if value.startswith("*"):
        return ir.RbacRule("header", name=name, matcher=ir.Matcher("suffix", value[1:], ignore_case))
    if value.endswith("*"):
        return ir.RbacRule("header", name=name, matcher=ir.Matcher("prefix", value[:-1], ignore_case))
    return ir.RbacRule("header", name=name, matcher=ir.Matcher("exact", value, ignore_case))


def _cidr(value: str) -> tuple[str, int]:
    net = ip_network(value, strict=False)
    return str(net.network_address) if "/" in value else value, net.prefixlen


def _authenticated(m: ir.Matcher) -> ir.RbacRule:
    return ir.RbacRule("authenticated", matcher=m)


def _namespace(value: str) -> ir.RbacRule:
    regex = ".*".join(re.escape(p) for p in value.split("*"))
    return _authenticated(ir.Matcher("safe_regex", f".*/ns/{regex}/.*"))


def _service_account(policy_ns: str) -> Callable[[str], ir.RbacRule]:
    def gen(value: str) -> ir.RbacRule:
        ns, _, sa = value.partition("/") if "/" in value else (policy_ns, "", value)
        return _authenticated(ir.Matcher("safe_regex", f"spiffe://.+/ns/{re.escape(ns)}/(.+/|)sa/{re.escape(sa)}(/.+)?"))
    return gen


def _path(value: str) -> ir.RbacRule:
    if "{*}" in value or "{**}" in value:
        return ir.RbacRule("uri_template", template=value.replace("{**}", "**").replace("{*}", "*"))
    return ir.RbacRule("url_path", matcher=string_matcher(value))


def _claim(path: list[str], values: list[str]) -> ir.RbacRule:
    return ir.RbacRule("metadata", name=JWT_FILTER, path=(JWT_PAYLOAD, *path),
                       values=tuple(string_matcher(v) for v in values), list_match=True)


_ANY = ir.Matcher("safe_regex", ".+")


def _jwt_string(claim: str, m: ir.Matcher) -> ir.RbacRule:
    return ir.RbacRule("metadata", name=JWT_FILTER, path=(JWT_PAYLOAD, claim), values=(m,))


def request_principals(values: list[str]) -> ir.RbacRule:
    """requestPrincipalGenerator: ``iss/sub`` (split at the last ``/``), with ``*`` forms, on the JWT payload."""
    out = []
    for value in values:
        idx = value.rfind("/")
        found = idx >= 0
        iss, sub = (value[:idx], value[idx + 1:]) if found else (value, "")
        if value == "*":
            mi, ms = _ANY, _ANY
        elif value.startswith("*"):
            if found:
                mi = _ANY if iss == "*" else ir.Matcher("suffix", iss[1:])
                ms = ir.Matcher("exact", sub)
            else:
                mi, ms = _ANY, ir.Matcher("suffix", value[1:])
        elif value.endswith("*"):
            if found:
                mi = ir.Matcher("exact", iss)
                ms = _ANY if sub == "*" else ir.Matcher("prefix", sub[:-1])
            else:
                mi, ms = ir.Matcher("prefix", value[:-1]), _ANY
        else:
            mi, ms = ir.Matcher("exact", iss), ir.Matcher("exact", sub)
        out.append(_and([_jwt_string("iss", mi), _jwt_string("sub", ms)]))
    return out[0] if len(out) == 1 else _or(out)


@dataclass
class Key:
    """One field of a rule: a generator for each value (``single``) or for all values at once (``extended``)."""

    label: str
    values: list[str]
    not_values: list[str]
    single: Callable[[str], ir.RbacRule] | None = None
    extended: Callable[[list[str]], ir.RbacRule] | None = None
    http_only: bool = False


def _bracketed(key: str, prefix: str) -> list[str]:
    """``request.auth.claims[a][b]`` → ``[a, b]``; ``request.headers[x]`` → ``[x]``."""
    return re.findall(r"\[([^\]]+)\]", key[len(prefix):])


def _when_key(c: Any, policy_ns: str) -> tuple[str, Key]:
    """Which side (permission/principal) a ``when`` condition lands on, and its generator."""
    k = c.key
    if k == "destination.ip":
        return "permission", Key(k, c.values, c.not_values, lambda v: ir.RbacRule("destination_ip", cidr=_cidr(v)))
    if k == "destination.port":
        return "permission", Key(k, c.values, c.not_values, lambda v: ir.RbacRule("destination_port", port=int(v)))
    if k == "connection.sni":
        return "permission", Key(k, c.values, c.not_values,
                                 lambda v: ir.RbacRule("requested_server_name", matcher=string_matcher(v)))
    if k == "source.ip":
        return "principal", Key(k, c.values, c.not_values, lambda v: ir.RbacRule("direct_remote_ip", cidr=_cidr(v)))
    if k == "remote.ip":
        return "principal", Key(k, c.values, c.not_values, lambda v: ir.RbacRule("remote_ip", cidr=_cidr(v)))
    if k == "source.namespace":
        return "principal", Key(k, c.values, c.not_values, _namespace)
    if k == "source.serviceAccount":
        return "principal", Key(k, c.values, c.not_values, _service_account(policy_ns))
    if k == "source.principal":
        return "principal", Key(k, c.values, c.not_values, lambda v: _authenticated(string_matcher(v, "spiffe://")))
    if k == "request.auth.principal":
        return "principal", Key(k, c.values, c.not_values, extended=request_principals, http_only=True)
    if k == "request.auth.audiences":
        return "principal", Key(k, c.values, c.not_values, extended=lambda vs: _claim(["aud"], vs), http_only=True)
    if k == "request.auth.presenter":
        return "principal", Key(k, c.values, c.not_values, extended=lambda vs: _claim(["azp"], vs), http_only=True)
    if k.startswith("request.auth.claims["):
        claims = _bracketed(k, "request.auth.claims")
        return "principal", Key(k, c.values, c.not_values, extended=lambda vs: _claim(claims, vs), http_only=True)
    header = _bracketed(k, "request.headers")[0]
    return "principal", Key(k, c.values, c.not_values, lambda v: header_rule(header, v), http_only=True)


def _from_keys(s: Any, policy_ns: str) -> list[Key]:
    return [
        Key("principals", s.principals, s.not_principals, lambda v: _authenticated(string_matcher(v, "spiffe://"))),
        Key("requestPrincipals", s.request_principals, s.not_request_principals, extended=request_principals,
            http_only=True),
        Key("serviceAccounts", s.service_accounts, s.not_service_accounts, _service_account(policy_ns)),
        Key("namespaces", s.namespaces, s.not_namespaces, _namespace),
        Key("remoteIpBlocks", s.remote_ip_blocks, s.not_remote_ip_blocks,
            lambda v: ir.RbacRule("remote_ip", cidr=_cidr(v))),
        Key("ipBlocks", s.ip_blocks, s.not_ip_blocks, lambda v: ir.RbacRule("direct_remote_ip", cidr=_cidr(v))),
    ]


def _to_keys(o: Any) -> list[Key]:
    return [
        Key("hosts", o.hosts, o.not_hosts, lambda v: header_rule(":authority", v, ignore_case=True), http_only=True),
        Key("methods", o.methods, o.not_methods, lambda v: header_rule(":method", v), http_only=True),
        Key("paths", o.paths, o.not_paths, _path, http_only=True),
        Key("ports", o.ports, o.not_ports, lambda v: ir.RbacRule("destination_port", port=int(v))),
    ]


def _generate(keys: list[Key], for_tcp: bool, action: str, dropped: list[str]) -> ir.RbacRule:
    """AND of the keys' matchers; ``HttpOnly`` when an ALLOW rule needs a field a TCP chain lacks."""
    parts: list[ir.RbacRule] = []
    for key in keys:
        if not key.values and not key.not_values:
            continue
        if for_tcp and key.http_only:
            if action == "ALLOW":
                raise HttpOnly(key.label)
            dropped.append(key.label)
            continue
        for values, negate in ((key.values, False), (key.not_values, True)):
            if not values:
                continue
            node = key.extended(values) if key.extended else _or([key.single(v) for v in values])  # type: ignore[misc]
            parts.append(_not(node) if negate else node)
    return _and(parts or [_any()])


def _rule_policy(name: str, rule: Rule, policy_ns: str, for_tcp: bool, action: str,
                 dropped: list[str]) -> ir.RbacPolicy:
    when_perm: list[Key] = []
    when_prin: list[Key] = []
    for c in rule.when:
        side, key = _when_key(c, policy_ns)
        (when_perm if side == "permission" else when_prin).append(key)
    perms = [_generate(_to_keys(t.operation) + when_perm, for_tcp, action, dropped) for t in rule.to] \
        or [_generate(when_perm, for_tcp, action, dropped)]
    prins = [_generate(_from_keys(f.source, policy_ns) + when_prin, for_tcp, action, dropped) for f in rule.from_] \
        or [_generate(when_prin, for_tcp, action, dropped)]
    return ir.RbacPolicy(name, tuple(perms), tuple(prins))


MATCH_NEVER = (_not(_any()),)


def policy_name(ns: str, name: str, i: int) -> str:
    return f"ns[{ns}]-policy[{name}]-rule[{i}]"


def _build_action(policies: list[Res[AuthorizationPolicy]], action: str, for_tcp: bool,
                  findings: Findings) -> ir.Rbac | None:
    enforced: list[ir.RbacPolicy] | None = None
    shadow: list[ir.RbacPolicy] | None = None
    for p in policies:
        bucket: list[ir.RbacPolicy]
        if p.obj.dry_run:
            shadow = bucket = shadow if shadow is not None else []
        else:
            enforced = bucket = enforced if enforced is not None else []
        if not p.obj.spec.rules:
            bucket.append(ir.RbacPolicy(policy_name(p.namespace, p.name, 0), MATCH_NEVER, MATCH_NEVER))
        for i, rule in enumerate(p.obj.spec.rules):
            dropped: list[str] = []
            try:
                bucket.append(_rule_policy(policy_name(p.namespace, p.name, i), rule, p.namespace, for_tcp, action,
                                           dropped))
            except HttpOnly as exc:
                findings.warning(p.file, p.line("spec", "rules", i), "EG0216",
                                 f"AuthorizationPolicy {p.key}: ALLOW rule {i} uses {exc}, which a TCP filter chain "
                                 "cannot evaluate; on TCP servers the rule allows nothing (as in Istio)",
                                 f"spec.rules[{i}]")
                continue
            if dropped:
                findings.warning(p.file, p.line("spec", "rules", i), "EG0216",
                                 f"AuthorizationPolicy {p.key}: {action} rule {i} uses {', '.join(sorted(set(dropped)))}, "
                                 "which a TCP filter chain cannot evaluate; on TCP servers the rule applies without "
                                 "them, so it matches more connections (as in Istio)", f"spec.rules[{i}]")
    if enforced is None and shadow is None:
        return None
    envoy_action = dict(ACTIONS)[action]
    return ir.Rbac(envoy_action, tuple(enforced) if enforced is not None else None,  # type: ignore[arg-type]
                   tuple(shadow) if shadow is not None else None)


def build_rbac(policies: list[Res[AuthorizationPolicy]], for_tcp: bool, findings: Findings) -> tuple[ir.Rbac, ...]:
    """The RBAC filters of one filter chain kind (HTTP or TCP), in Istio's order: AUDIT, DENY, ALLOW."""
    out = []
    for action, _ in ACTIONS:
        chosen = [p for p in policies if p.obj.spec.action == action]
        built = _build_action(chosen, action, for_tcp, findings) if chosen else None
        if built is not None:
            out.append(built)
    return tuple(out)


def attach_rbac(listeners: list[ir.Listener], policies: list[Res[AuthorizationPolicy]],
                findings: Findings) -> list[ir.Listener]:
    """Every HTTP filter chain gets the HTTP RBAC filters, every TCP one the network RBAC filters."""
    if not policies:
        return listeners
    chains = [fc for l in listeners for fc in l.filter_chains]
    http = build_rbac(policies, False, findings) if any(fc.http for fc in chains) else ()
    tcp = build_rbac(policies, True, findings) if any(fc.tcp for fc in chains) else ()
    out = []
    for l in listeners:
        fcs = tuple(replace(fc, http=replace(fc.http, rbac=http)) if fc.http is not None else
                    replace(fc, network_rbac=tcp) for fc in l.filter_chains)
        out.append(replace(l, filter_chains=fcs))
    return out
