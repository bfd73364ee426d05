"""``tls.httpsRedirect: true`` → ``require_tls: ALL`` on the virtual host, seen from an *internal* client.

Istio (istio-semantics.md 2.6, ``gateway.go``) sets ``require_tls: ALL``: every plain-HTTP
request is redirected. ``EXTERNAL_ONLY`` would redirect only requests Envoy considers
external, and lets internal ones through. From 127.0.0.1 the two look the same, because
Envoy 1.40 trusts no address as internal unless the HCM has an ``internal_address_config``
(the RFC1918/loopback default was removed with ``explicit_internal_address_config``).

How Envoy decides (``conn_manager_utility.cc`` ``mutateRequestHeaders``, with
``use_remote_address: true`` as envoygen emits it): a request is internal when it arrives
*without* ``x-forwarded-for`` and the peer address is in ``internal_address_config``; it then
carries ``x-envoy-internal: true``, and ``EXTERNAL_ONLY`` does not redirect it. A client's
``x-forwarded-for`` makes a request external whatever its content, so no XFF value can make
a client internal.

So the test adds exactly one thing to the rendered bootstrap, in its own copy of the bundle:
``internal_address_config`` with 127.0.0.0/8 on every HCM. Then a 127.0.0.1 client without
XFF is internal (the backend sees ``x-envoy-internal: true`` on a non-redirecting host), and
the redirecting host must still answer 301 with the exact Location. The same bundle with
``require_tls`` rewritten to ``EXTERNAL_ONLY`` (the weakened config) is run as well, to show
that the setup tells the two apart: there the internal request reaches the backend.
"""

from __future__ import annotations

import yaml

from harness import http_get

NS = "web"
HCM = "envoy.filters.network.http_connection_manager"
LOOPBACK = {"cidr_ranges": [{"address_prefix": "127.0.0.0", "prefix_len": 8}]}

DOCS = f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http-redirect, protocol: HTTP}}
    hosts: [secure.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 80, name: http-plain, protocol: HTTP}}
    hosts: [plain.example.com]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: app, namespace: {NS}}}
spec:
  hosts: [secure.example.com, plain.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: app, port: {{number: 80}}}}
"""


def service_entry(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: app, namespace: {NS}}}
spec:
  hosts: [app.{NS}.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def hcms(boot: dict) -> list[dict]:
    out = []
    for lst in boot["static_resources"]["listeners"]:
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f["name"] == HCM:
                    out.append(f["typed_config"])
    return out


def gateway_vhosts(boot: dict, port: int) -> dict[str, dict]:
    """Domain → vhost of the gateway listener bound to ``port``."""
    out = {}
    for lst in boot["static_resources"]["listeners"]:
        if lst["address"]["socket_address"]["port_value"] != port:
            continue
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                for vh in f.get("typed_config", {}).get("route_config", {}).get("virtual_hosts", []):
                    for d in vh["domains"]:
                        out[d] = vh
    return out


def start_internal(gateway_factory, backend, *, require_tls: str | None = None):  # noqa: ANN001, ANN201
    """Render, add ``internal_address_config`` (loopback) to every HCM of this bundle's own bootstrap,
    optionally replace the value of every ``require_tls``, and run it."""
    gw = gateway_factory([DOCS, service_entry(backend.port)], ports=(80,), start=False)
    r = gw.render()
    assert r.exit_code == 0, r.stderr
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    vhosts = gateway_vhosts(boot, gw.port(80))
    assert set(vhosts) == {"secure.example.com", "plain.example.com"}, vhosts
    for h in hcms(boot):
        assert "internal_address_config" not in h  # the test adds it; envoygen does not emit it
        h["internal_address_config"] = LOOPBACK
    if require_tls is not None:
        for vh in vhosts.values():
            if "require_tls" in vh:
                vh["require_tls"] = require_tls
    gw.bootstrap_path.write_text(yaml.safe_dump(boot, sort_keys=False))
    return gw.start()


def loaded_require_tls(gw) -> dict[str, str | None]:  # noqa: ANN001
    """Domain → require_tls of the gateway listener's vhosts, as Envoy loaded them."""
    out = {}
    for c in gw.config_dump("static_listeners")["configs"]:
        lst = c["listener"]
        if lst["address"]["socket_address"]["port_value"] != gw.port(80):
            continue
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                for vh in f["typed_config"].get("route_config", {}).get("virtual_hosts", []):
                    for d in vh["domains"]:
                        out[d] = vh.get("require_tls")
    return out


def test_https_redirect_applies_to_internal_clients(backend_factory, gateway_factory):
    app = backend_factory("app")
    gw = start_internal(gateway_factory, app)

    # this client is internal for Envoy: a host without the redirect shows it
    r = http_get(gw, 80, "/who", host="plain.example.com")
    assert r.status == 200, r
    assert app.requests[-1]["headers"].get("x-envoy-internal") == "true", app.requests[-1]["headers"]
    app.reset()

    # ALL: the internal client is redirected anyway, every method, exact Location
    r = http_get(gw, 80, "/a/b?c=1&d=%2F", host="secure.example.com")
    assert r.status == 301, r
    assert r.headers["location"] == "https://secure.example.com/a/b?c=1&d=%2F"
    r = http_get(gw, 80, "/form", host="secure.example.com", method="POST", body="x=1")
    assert (r.status, r.headers["location"]) == (301, "https://secure.example.com/form"), r
    # and so is an external one (an x-forwarded-for makes the request external)
    r = http_get(gw, 80, "/ext", host="secure.example.com", headers={"X-Forwarded-For": "203.0.113.7"})
    assert (r.status, r.headers["location"]) == (301, "https://secure.example.com/ext"), r
    assert app.count == 0, app.requests
    # what Envoy loaded (checked last: the behaviour above is the point)
    assert loaded_require_tls(gw) == {"secure.example.com": "ALL", "plain.example.com": None}


def test_external_only_would_let_the_internal_client_through(backend_factory, gateway_factory):
    """The weakened config (require_tls EXTERNAL_ONLY) on the same setup: the internal request is not
    redirected. This is what the test above would see if envoygen emitted EXTERNAL_ONLY."""
    app = backend_factory("app")
    gw = start_internal(gateway_factory, app, require_tls="EXTERNAL_ONLY")
    assert loaded_require_tls(gw) == {"secure.example.com": "EXTERNAL_ONLY", "plain.example.com": None}
    r = http_get(gw, 80, "/a/b?c=1", host="secure.example.com")
    assert r.status == 200 and r.headers["x-backend"] == "app", r
    assert app.requests[-1]["headers"].get("x-envoy-internal") == "true"
    r = http_get(gw, 80, "/ext", host="secure.example.com", headers={"X-Forwarded-For": "203.0.113.7"})
    assert (r.status, r.headers["location"]) == (301, "https://secure.example.com/ext"), r
