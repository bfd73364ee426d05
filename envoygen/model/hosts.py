"""Istio's host, gateway-reference and naming rules, as pure functions.

One writer of each rule: the analyzer and the translator both call these.
Sources: istio/istio pilot/pkg/model/config.go (ResolveShortnameToFQDN),
pkg/config/host/name.go (Matches, SubsetOf), pkg/config/host/names.go
(Intersection), pilot/pkg/model/virtualservice.go (resolveGatewayName),
pilot/pkg/model/gateway.go (sanitizeServerHostNamespace).
"""

from __future__ import annotations

import ipaddress

DOMAIN_SUFFIX = "cluster.local"


def is_ip(text: str) -> bool:
    if "." not in text and ":" not in text:
        return False  # neither IPv4 nor IPv6: no need to raise and catch
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def fqdn(host: str, namespace: str) -> str:
    """ResolveShortnameToFQDN: ``webapp`` in ``ns`` → ``webapp.ns.svc.cluster.local``."""
    host = host.lower()
    if host == "*" or "." in host or (":" in host and is_ip(host)):
        return host
    return f"{host}.{namespace}.svc.{DOMAIN_SUFFIX}"


def gateway_ref(ref: str, namespace: str) -> str:
    """resolveGatewayName: the ``namespace/name`` a VirtualService gateway entry means."""
    if ref == "mesh":
        return "mesh"
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return f"{namespace if ns == '.' else ns}/{name}"
    parts = ref.split(".")
    if len(parts) >= 2 and "." in ref:
        # legacy form gw.ns.svc.cluster.local (or gw.ns)
        return f"{parts[1]}/{parts[0]}"
    return f"{namespace}/{ref}"


def split_server_host(host: str, gateway_namespace: str) -> tuple[str, str]:
    """sanitizeServerHostNamespace: ``(namespace or '*', hostname)``."""
    if "/" not in host:
        return "*", host.lower()
    ns, _, name = host.partition("/")
    if ns == ".":
        ns = gateway_namespace
    return ns, name.lower()


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def matches(a: str, b: str) -> bool:
    """host.Name.Matches: wildcard-aware in both directions."""
    if a == b or a == "*" or b == "*":
        return True
    aw, bw = is_wildcard(a), is_wildcard(b)
    if aw and bw:
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return False


def subset_of(a: str, b: str) -> bool:
    """host.Name.SubsetOf: every name matched by ``a`` is matched by ``b``."""
    if a == b or b == "*":
        return True
    if a == "*":
        return False
    if is_wildcard(b):
        return a.endswith(b[1:]) if not is_wildcard(a) else a[1:].endswith(b[1:])
    return False


class HostIndex:
    """Server hosts prepared for repeated intersections (exact names in a set)."""

    def __init__(self, server_hosts: list[str]) -> None:
        self.hosts = list(server_hosts)
        self.exact = {h for h in server_hosts if not is_wildcard(h)}
        self.wild = [h for h in server_hosts if is_wildcard(h)]

    def intersect(self, vs_hosts: list[str]) -> list[str]:
        """host.Names.Intersection: the more specific name of each matching pair.

        Same result set as Istio's double loop, sorted for stability; exact VS
        hosts are looked up in a set, so a server with thousands of hosts stays linear.
        """
        out: set[str] = set()
        for o in vs_hosts:
            if not is_wildcard(o):
                if o in self.exact or any(subset_of(o, w) for w in self.wild):
                    out.add(o)
                continue
            for h in self.hosts:
                if subset_of(h, o):
                    out.add(h)
                elif subset_of(o, h):
                    out.add(o)
        return sorted(out)


class HostSet:
    """Hosts prepared for "does this host match any of them" (``matches`` against each),
    in time linear in the length of the host asked about, not in the number of hosts."""

    def __init__(self, hosts: set[str] | list[str]) -> None:
        self.any = "*" in hosts
        self.nonempty = bool(hosts)
        self.exact = {h for h in hosts if not is_wildcard(h)}
        self.wild = {h[1:] for h in hosts if is_wildcard(h) and h != "*"}  # what follows the "*"
        self._suffixes: set[str] | None = None

    def _all_suffixes(self) -> set[str]:
        """Every suffix of every exact name and of every wildcard's tail (built on the first wildcard asked about)."""
        if self._suffixes is None:
            self._suffixes = {h[i:] for h in (*self.exact, *self.wild) for i in range(len(h) + 1)}
        return self._suffixes

    def matches_any(self, host: str) -> bool:
        if self.any or (host == "*" and self.nonempty) or host in self.exact:
            return True
        if not is_wildcard(host):
            # a wildcard "*t" matches host when host ends with t
            return any(host[i:] in self.wild for i in range(len(host) + 1))
        tail = host[1:]
        # "*tail" matches an exact name ending with tail, or a wildcard "*t" when t ends with tail
        # (tail is a suffix of some name) or tail ends with t
        return tail in self._all_suffixes() or any(tail[i:] in self.wild for i in range(len(tail) + 1))


def intersection(server_hosts: list[str], vs_hosts: list[str]) -> list[str]:
    return HostIndex(server_hosts).intersect(vs_hosts)


def visible_to(export_to: list[str], resource_ns: str, viewer_ns: str) -> bool:
    """exportTo: default public; '.' = own namespace; '*' = all; names = those."""
    if not export_to:
        return True
    for e in export_to:
        if e == "*" or (e == "." and viewer_ns == resource_ns) or e == viewer_ns:
            return True
    return False


