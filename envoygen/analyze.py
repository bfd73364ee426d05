"""Cross-resource checks, in the spirit of ``istioctl analyze``.

Each check has a stable code (diagnostics.CODES), a severity, the source
position and field path.  Errors stop the pipeline before translation; the
translator may then assume that references resolve.
"""

from __future__ import annotations

import re
from typing import Any

from .analyze_policies import check_policies
from .diagnostics import Findings
from .model import Res, Resources
from .model.hosts import HostIndex, fqdn, gateway_ref, matches, split_server_host
from .model.networking import Destination, Gateway, StringMatch, VirtualService
from .resolve import ROOT_NAMESPACE, View, resolve_namespace
from .resolve.matches import is_catch_all, route_match
from .resolve.registry import ServiceInfo, rule_for
from .resolve.workload_entries import workload_entry_yaml
from .workloads import Workload


HTTP = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}
KNOWN_PROTOCOLS = HTTP | {"HTTPS", "TLS", "TCP", "MONGO", "MYSQL", "REDIS"}


def _p(*parts: Any) -> str:
    out = ""
    for x in parts:
        out += f"[{x}]" if isinstance(x, int) else (("." if out else "") + str(x))
    return out


_RE2: list[Any] = []  # [module, options] once imported (only inputs with a regex need RE2)


def re2_error(pattern: str) -> str | None:
    if not _RE2:
        try:
            import re2
        except ImportError:  # pragma: no cover - google-re2 is a dependency
            _RE2.extend((None, None))
        else:
            opts = re2.Options()
            opts.log_errors = False
            _RE2.extend((re2, opts))
    re2, opts = _RE2
    if re2 is None:
        return None
    try:
        re2.compile(pattern, opts)
    except Exception as exc:  # re2.error carries bytes
        msg = exc.args[0] if exc.args else exc
        return msg.decode() if isinstance(msg, bytes) else str(msg)
    return None


def _check_regex(f: Findings, res: Res[Any], sm: StringMatch | None, *path: Any) -> None:
    if sm is None or sm.regex is None or sm.regex == "*":
        return
    err = re2_error(sm.regex)
    if err:
        f.error(res.file, res.line(*path), "EG0208", f"{res.kind} {res.key}: regex {sm.regex!r} is rejected by RE2: {err}",
                _p(*path), "Envoy uses RE2: no look-around or back-references")


def check_gateways(resources: Resources, workloads: list[Workload], f: Findings) -> None:
    for gw in resources.gateways:
        spec = gw.obj.spec
        if not any(w.selects(spec.selector) for w in workloads):
            f.warning(gw.file, gw.line("spec", "selector"), "EG0210",
                      f"Gateway {gw.key}: selector {spec.selector} matches no gateway workload "
                      f"({', '.join(w.name + ' ' + str(w.labels) for w in workloads)}); it has no effect", "spec.selector")
        names: dict[str, int] = {}
        for i, s in enumerate(spec.servers):
            proto = s.port.protocol.upper()
            sp = ("spec", "servers", i)
            if s.port.name in names:
                f.error(gw.file, gw.line(*sp, "port", "name"), "EG0106",
                        f"Gateway {gw.key}: port name {s.port.name!r} is used by server {names[s.port.name]} too; names must be unique",
                        _p(*sp, "port", "name"))
            names.setdefault(s.port.name, i)
            if proto not in KNOWN_PROTOCOLS:
                f.error(gw.file, gw.line(*sp, "port", "protocol"), "EG0104",
                        f"Gateway {gw.key}: protocol {s.port.protocol!r} is not supported (use HTTP, HTTP2, GRPC, HTTPS, TLS or TCP)",
                        _p(*sp, "port", "protocol"))
                continue
            tls = s.tls
            if proto in HTTP and tls is not None:
                extra = [k for k, v in tls.model_dump(exclude_defaults=True).items() if k != "https_redirect"]
                if extra:
                    f.error(gw.file, gw.line(*sp, "tls"), "EG0106",
                            f"Gateway {gw.key}: a plain {proto} server may only set tls.httpsRedirect", _p(*sp, "tls"))
            if proto in ("HTTPS", "TLS"):
                if tls is None:
                    f.error(gw.file, gw.line(*sp, "port"), "EG0106",
                            f"Gateway {gw.key}: server {s.port.name} ({proto}) needs a tls block", _p(*sp, "tls"))
                    continue
                if tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
                        tls.credential_name or tls.credential_names or tls.server_certificate or tls.private_key or tls.ca_certificates):
                    f.error(gw.file, gw.line(*sp, "tls"), "EG0106",
                            f"Gateway {gw.key}: tls mode {tls.mode} cannot carry certificates or credentialName",
                            _p(*sp, "tls"))
                if tls.mode == "ISTIO_MUTUAL" and (tls.credential_name or tls.credential_names):
                    f.error(gw.file, gw.line(*sp, "tls"), "EG0106",
                            f"Gateway {gw.key}: tls mode ISTIO_MUTUAL uses the mesh identity and cannot carry credentialName",
                            _p(*sp, "tls"))
                if tls.https_redirect:
                    f.warning(gw.file, gw.line(*sp, "tls", "httpsRedirect"), "EG0106",
                              f"Gateway {gw.key}: httpsRedirect on a {proto} server has no effect", _p(*sp, "tls", "httpsRedirect"))
            if proto in ("TCP", "MONGO", "MYSQL", "REDIS") and tls is not None:
                f.error(gw.file, gw.line(*sp, "tls"), "EG0106", f"Gateway {gw.key}: a TCP server cannot carry tls",
                        _p(*sp, "tls"))


def _bound_gateways(vs: Res[VirtualService], gateways: dict[str, Res[Gateway]]) -> list[Res[Gateway]]:
    return [gateways[r] for r in (gateway_ref(g, vs.namespace) for g in vs.obj.spec.gateways) if r in gateways]


class _Emitted:
    """Passes findings on and notes whether there was one."""

    def __init__(self, f: Findings) -> None:
        self.f, self.any = f, False

    def error(self, *args: Any, **kw: Any) -> None:
        self.any = True
        self.f.error(*args, **kw)


def _check_destination(f: Findings, vs: Res[VirtualService], d: Destination, registry: dict[str, ServiceInfo],
                       rules: dict, server_ports: set[int], path: tuple[Any, ...], clean: set | None = None) -> None:
    """Check one destination.  ``clean``: the destinations (host as written, namespace, port,
    subset, server ports) already checked without a finding in this run: the same checks
    on the same registry and rules would find nothing again."""
    if clean is None:
        _check_destination_now(f, vs, d, registry, rules, server_ports, path)
        return
    key = (d.host, vs.namespace, d.port.number if d.port is not None else None, d.subset, frozenset(server_ports))
    if key in clean:
        return
    probe = _Emitted(f)
    _check_destination_now(probe, vs, d, registry, rules, server_ports, path)  # type: ignore[arg-type]
    if not probe.any:
        clean.add(key)


def _check_destination_now(f: Findings, vs: Res[VirtualService], d: Destination, registry: dict[str, ServiceInfo],
                           rules: dict, server_ports: set[int], path: tuple[Any, ...]) -> None:
    host = fqdn(d.host, vs.namespace)
    svc = registry.get(host)
    where = _p(*path)
    if svc is None:
        f.error(vs.file, vs.line(*path, "host"), "EG0203",
                f"VirtualService {vs.key}: destination host {host} has no endpoints: no ServiceEntry or Service defines it",
                where + ".host", "add a ServiceEntry (resolution STATIC or DNS) or a Kubernetes Service for it")
        return
    if svc.resolution == "NONE":
        f.error(vs.file, vs.line(*path, "host"), "EG0203",
                f"VirtualService {vs.key}: destination host {host} comes from {svc.origin} with resolution NONE, "
                "which gives a gateway no endpoints (Istio answers 503)", where + ".host", "use resolution STATIC or DNS")
    if svc.dropped and (d.port is None or d.port.number in svc.dropped):
        return  # that port was already refused where the service defines it
    if d.port is not None:
        ports = [d.port.number]
    elif len(svc.ports) == 1:
        ports = [svc.ports[0].number]
    else:
        ports = sorted(server_ports)
    for port in ports:
        if svc.port(port) is None:
            how = "destination.port" if d.port else f"the gateway server port {port} (the service has several ports and none is named)"
            f.error(vs.file, vs.line(*path), "EG0205",
                    f"VirtualService {vs.key}: {svc.origin} exposes no port {port} for {host} (from {how}); "
                    f"ports: {', '.join(str(p.number) for p in svc.ports) or 'none'}", where + (".port" if d.port else ""))
    if d.subset:
        rule = rule_for(host, rules)
        subset = rule.subset(d.subset) if rule is not None else None
        if subset is None:
            f.error(vs.file, vs.line(*path, "subset"), "EG0204",
                    f"VirtualService {vs.key}: subset {d.subset!r} of {host} is not defined by any DestinationRule",
                    where + ".subset", "define it under a DestinationRule's spec.subsets")
        elif subset.labels and not any(all(ep.labels.get(k) == v for k, v in subset.labels.items()) for ep in svc.endpoints):
            _subset_without_endpoints(f, vs, d.subset, dict(subset.labels), svc, where + ".subset", vs.line(*path, "subset"))


def _subset_without_endpoints(f: Findings, vs: Res[VirtualService], subset: str, labels: dict[str, str],
                              svc: ServiceInfo, where: str, line: int) -> None:
    """EG0231: name what is missing (pods with these labels) and show the WorkloadEntry to add."""
    if svc.origin.startswith("Service "):
        selector = svc.selector
        want = {**selector, **labels}
        missing = (f"no WorkloadEntry in namespace {svc.namespace} has the Service's selector {selector} and the "
                   f"subset's labels {labels} (envoygen does not see pods)")
        entry = workload_entry_yaml(svc.host.split(".")[0] + "-" + subset, svc.namespace, want)
        hint = (f"add {entry}, or pass "
                f"--workload-address NAME=ADDR for the Deployment whose pod labels are {want}")
    else:
        missing = f"no endpoint of {svc.origin} (nor a WorkloadEntry it selects) has the labels {labels}"
        hint = "label the ServiceEntry endpoints, or add a WorkloadEntry its workloadSelector selects"
    f.error(vs.file, line, "EG0231", f"VirtualService {vs.key}: subset {subset!r} of {svc.host} selects no endpoint: {missing}",
            where, hint)


def _server_index(gw: Res[Gateway], i: int, namespace: str, cache: dict) -> HostIndex:
    key = (gw.key, i, namespace)
    if key not in cache:
        hosts = [split_server_host(x, gw.namespace) for x in gw.obj.spec.servers[i].hosts]
        cache[key] = HostIndex([n for ns, n in hosts if ns in ("*", namespace)])
    return cache[key]


def check_virtual_services(resources: Resources, workloads: list[Workload], views: list[View], f: Findings) -> None:
    index_cache: dict = {}
    clean: set = set()  # destinations checked without a finding (see _check_destination)
    gateways = {g.key: g for g in resources.gateways}
    # destinations are checked against what the first workload sees (its findings are the resolve stage's)
    if views:
        registry, rules = views[0].registry, views[0].rules
    else:
        registry, rules = resolve_namespace(resources, ROOT_NAMESPACE, f)
    for vs in resources.virtual_services:
        spec = vs.obj.spec
        refs = [(i, gateway_ref(g, vs.namespace)) for i, g in enumerate(spec.gateways)]
        if not refs:
            f.info(vs.file, vs.line("spec"), "EG0005",
                   f"VirtualService {vs.key} has no gateways, so it binds only to the mesh; skipped", "spec.gateways")
            continue
        _check_gateway_refs(f, vs, refs, gateways)
        bound = _bound_gateways(vs, gateways)
        server_ports: set[int] = set()
        for gw in bound:
            for s in gw.obj.spec.servers:
                server_ports.add(s.port.number)
        if bound:
            vs_hosts = [fqdn(h, vs.namespace) for h in spec.hosts]
            indexes = [_server_index(gw, i, vs.namespace, index_cache)
                       for gw in bound for i in range(len(gw.obj.spec.servers))]
            for hi, h in enumerate(vs_hosts):
                served = any(ix.intersect([h]) for ix in indexes)
                if not served:
                    f.warning(vs.file, vs.line("spec", "hosts", hi), "EG0202",
                              f"VirtualService {vs.key}: host {h} is served by none of its gateways' servers",
                              _p("spec", "hosts", hi))
        if not spec.hosts:
            f.error(vs.file, vs.line("spec"), "EG0103", f"VirtualService {vs.key}: spec.hosts is required", "spec.hosts")
        for i, http in enumerate(spec.http):
            _check_http_route(f, vs, i, http, registry, rules, server_ports, gateways, clean)
        _check_unreachable(f, vs)
        _check_l4_routes(f, vs, registry, rules, server_ports, clean)


def _check_gateway_refs(f: Findings, vs: Res[VirtualService], refs: list[tuple[int, str]],
                        gateways: dict[str, Res[Gateway]]) -> None:
    """Istio binds a VirtualService to the gateways that exist: missing ones are a warning naming
    them, and an error only when none of its gateways exists (it would bind nowhere)."""
    missing = [(i, ref) for i, ref in refs if ref != "mesh" and ref not in gateways]
    if not missing:
        return
    some_exist = len(missing) < len(refs)
    for i, ref in missing:
        text = f"VirtualService {vs.key}: gateway {ref} does not exist in the input"
        if some_exist:
            bound = ", ".join(r for _, r in refs if r == "mesh" or r in gateways)
            f.warning(vs.file, vs.line("spec", "gateways", i), "EG0201", f"{text}; it binds to {bound} only",
                      _p("spec", "gateways", i))
        else:
            f.error(vs.file, vs.line("spec", "gateways", i), "EG0201", text + " (none of its gateways does)",
                    _p("spec", "gateways", i), "check the name and namespace (<namespace>/<name>)")


def _check_http_route(f: Findings, vs: Res[VirtualService], i: int, http: Any, registry: dict[str, ServiceInfo],
                      rules: dict, server_ports: set[int], gateways: dict[str, Res[Gateway]], clean: set | None = None) -> None:
    base = ("spec", "http", i)
    if not http.route and http.redirect is None and http.direct_response is None:
        f.error(vs.file, vs.line(*base), "EG0103",
                f"VirtualService {vs.key}: http[{i}] needs route, redirect or directResponse", _p(*base))
    if len(http.route) > 1 and sum(d.weight for d in http.route) == 0:
        f.error(vs.file, vs.line(*base, "route"), "EG0106",
                f"VirtualService {vs.key}: http[{i}] has several destinations and all weights are 0", _p(*base, "route"))
    if http.redirect is None and http.direct_response is None:
        for j, d in enumerate(http.route):
            _check_destination(f, vs, d.destination, registry, rules, server_ports, (*base, "route", j, "destination"), clean)
    if http.mirror is not None:
        _check_destination(f, vs, http.mirror, registry, rules, server_ports, (*base, "mirror"), clean)
    for j, m in enumerate(http.mirrors):
        _check_destination(f, vs, m.destination, registry, rules, server_ports, (*base, "mirrors", j, "destination"), clean)
    for j, m in enumerate(http.match):
        mp = (*base, "match", j)
        for key in ("uri", "scheme", "method", "authority"):
            sm = getattr(m, key)
            if sm is not None and sm.regex is not None:
                _check_regex(f, vs, sm, *mp, key)
        for group, alias in (("headers", "headers"), ("query_params", "queryParams"), ("without_headers", "withoutHeaders")):
            for k, sm in getattr(m, group).items():
                _check_regex(f, vs, sm, *mp, alias, k)
        for gi, g in enumerate(m.gateways):
            ref = gateway_ref(g, vs.namespace)
            if ref != "mesh" and ref not in gateways:
                f.error(vs.file, vs.line(*mp, "gateways", gi), "EG0201",
                        f"VirtualService {vs.key}: match gateway {ref} does not exist in the input", _p(*mp, "gateways", gi))
    if http.rewrite and http.rewrite.uri_regex_rewrite:
        err = re2_error(http.rewrite.uri_regex_rewrite.match)
        if err:
            f.error(vs.file, vs.line(*base, "rewrite", "uriRegexRewrite", "match"), "EG0208",
                    f"VirtualService {vs.key}: regex is rejected by RE2: {err}", _p(*base, "rewrite", "uriRegexRewrite", "match"))
    if http.cors_policy:
        for j, o in enumerate(http.cors_policy.allow_origins):
            _check_regex(f, vs, o, *base, "corsPolicy", "allowOrigins", j)
    _check_headers(f, vs, http.headers, base)
    for j, d in enumerate(http.route):
        _check_headers(f, vs, d.headers, (*base, "route", j))


def _check_l4_routes(f: Findings, vs: Res[VirtualService], registry: dict[str, ServiceInfo], rules: dict,
                     server_ports: set[int], clean: set | None = None) -> None:
    spec = vs.obj.spec
    for i, tcp in enumerate(spec.tcp):
        if not tcp.route:
            f.error(vs.file, vs.line("spec", "tcp", i), "EG0103", f"VirtualService {vs.key}: tcp[{i}] needs a route",
                    _p("spec", "tcp", i, "route"))
        for j, d in enumerate(tcp.route):
            _check_destination(f, vs, d.destination, registry, rules, server_ports, ("spec", "tcp", i, "route", j, "destination"), clean)
    for i, tls in enumerate(spec.tls):
        if not tls.route:
            f.error(vs.file, vs.line("spec", "tls", i), "EG0103", f"VirtualService {vs.key}: tls[{i}] needs a route",
                    _p("spec", "tls", i, "route"))
        for j, m in enumerate(tls.match):
            for k, sni in enumerate(m.sni_hosts):
                if not any(matches(sni.lower(), fqdn(h, vs.namespace)) for h in spec.hosts):
                    f.error(vs.file, vs.line("spec", "tls", i, "match", j, "sniHosts", k), "EG0106",
                            f"VirtualService {vs.key}: sniHost {sni} is not one of the VirtualService hosts",
                            _p("spec", "tls", i, "match", j, "sniHosts", k))
        for j, d in enumerate(tls.route):
            _check_destination(f, vs, d.destination, registry, rules, server_ports, ("spec", "tls", i, "route", j, "destination"), clean)


_HEADER_NAME = re.compile(r"^[0-9A-Za-z!#$%&'*+\-.^_|~`]+$")
_FORMAT_COMMAND = re.compile(r"%([A-Z_0-9]+(\([^)]*\))?(:[0-9]+)?)?%")


def _header_value_problem(value: str) -> str | None:
    if any(c in value for c in "\r\n\x00"):
        return "contains CR, LF or NUL"
    rest = _FORMAT_COMMAND.sub("", value)
    if "%" in rest:
        return "has a '%' that is not an Envoy format command; write a literal % as %%"
    return None


def _check_headers(f: Findings, vs: Res[VirtualService], headers: Any, base: tuple[Any, ...]) -> None:
    """Header operations Envoy would refuse, or that Istio drops (pseudo-headers, host)."""
    if headers is None:
        return
    for side in ("request", "response"):
        ops = getattr(headers, side, None)
        if ops is None:
            continue
        for kind in ("set", "add", "remove"):
            items = getattr(ops, kind)
            names = list(items) if kind != "remove" else list(items)
            for i, k in enumerate(names):
                path = (*base, "headers", side, kind, k if kind != "remove" else i)
                lk = k.lower()
                if lk.startswith(":") or lk == "host":
                    if side == "request" and kind != "remove" and lk in (":authority", "host"):
                        continue  # becomes host_rewrite_literal
                    f.warning(vs.file, vs.line(*path), "EG0106",
                              f"VirtualService {vs.key}: header {k!r} cannot be {'removed' if kind == 'remove' else 'set'}; "
                              "Istio drops it", _p(*path))
                    continue
                if not _HEADER_NAME.match(k):
                    f.error(vs.file, vs.line(*path), "EG0106", f"VirtualService {vs.key}: {k!r} is not a valid header name",
                            _p(*path))
                    continue
                if kind != "remove":
                    why = _header_value_problem(items[k])
                    if why:
                        f.error(vs.file, vs.line(*path), "EG0106",
                                f"VirtualService {vs.key}: value of header {k!r} {why}", _p(*path))


def _matches_everything(m: Any) -> bool:
    """is_catch_all(route_match(m)), without building the match when its uri already says
    no (an exact uri, or a prefix other than '/': route_match keeps that path)."""
    uri = m.uri
    if uri is not None and (uri.exact is not None or (uri.prefix is not None and uri.prefix != "/")):
        return False
    return is_catch_all(route_match(m))


def _check_unreachable(f: Findings, vs: Res[VirtualService]) -> None:
    for i, http in enumerate(vs.obj.spec.http):
        catch_all = not http.match or any(
            _matches_everything(m) and m.port is None and not m.gateways and not m.source_labels
            and not m.source_namespace for m in http.match)
        if catch_all and i + 1 < len(vs.obj.spec.http):
            f.warning(vs.file, vs.line("spec", "http", i + 1), "EG0207",
                      f"VirtualService {vs.key}: http[{i + 1}] and later routes are unreachable: http[{i}] matches every request",
                      _p("spec", "http", i + 1), "move the catch-all route last")
            return


def check_destination_rules(resources: Resources, f: Findings) -> None:
    for dr in resources.destination_rules:
        tps = [(dr.obj.spec.traffic_policy, ("spec", "trafficPolicy"))]
        tps += [(s.traffic_policy, ("spec", "subsets", i, "trafficPolicy")) for i, s in enumerate(dr.obj.spec.subsets)]
        for tp, path in tps:
            if tp is None:
                continue
            items = [(tp, path)] + [(pl, (*path, "portLevelSettings", i)) for i, pl in enumerate(tp.port_level_settings)]
            for pol, pp in items:
                lb = pol.load_balancer
                if lb is not None and lb.simple == "PASSTHROUGH":
                    f.error(dr.file, dr.line(*pp, "loadBalancer", "simple"), "EG0104",
                            f"DestinationRule {dr.key}: loadBalancer PASSTHROUGH needs original-destination routing, "
                            "which a gateway cannot do", _p(*pp, "loadBalancer", "simple"))


def analyze(resources: Resources, workloads: list[Workload], views: list[View], f: Findings) -> None:
    """Cross-resource checks over the resolved views (``views[i]`` is ``workloads[i]``'s)."""
    check_gateways(resources, workloads, f)
    check_virtual_services(resources, workloads, views, f)
    check_destination_rules(resources, f)
    check_policies(resources, workloads, f)
