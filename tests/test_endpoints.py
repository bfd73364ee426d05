"""Where traffic goes: ServiceEntry endpoints, Kubernetes Services, and the
analyzer errors for destinations without endpoints."""

from __future__ import annotations

import re
from pathlib import Path

from harness import http_get

REPO = Path(__file__).resolve().parent.parent
NS = "istioinaction"

GW = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw, namespace: istioinaction}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{hosts}]
"""


def gw_yaml(*hosts: str) -> str:
    return GW.format(hosts=", ".join(f'"{h}"' for h in hosts))


def vs(name: str, host: str, dest: str, extra: str = "") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {name}, namespace: istioinaction}}
spec:
  hosts: ["{host}"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: {dest}{extra}}}
"""


def clusters(gw) -> dict[str, dict]:
    out = {}
    for cfg in gw.config_dump()["configs"]:
        if cfg.get("@type", "").endswith("ClustersConfigDump"):
            for c in cfg.get("static_clusters", []) + cfg.get("dynamic_active_clusters", []):
                out[c["cluster"]["name"]] = c["cluster"]
    return out


def endpoints_of(cluster: dict) -> list[tuple[str, int]]:
    out = []
    for loc in cluster.get("load_assignment", {}).get("endpoints", []):
        for lb in loc.get("lb_endpoints", []):
            sa = lb["endpoint"]["address"]["socket_address"]
            out.append((sa["address"], sa["port_value"]))
    return out


def who(r) -> str:
    return r.headers.get("x-backend", f"<{r.status}>")


# --------------------------------------------------------------------------


def test_static_endpoints_labels_and_port_overrides(backend_factory, gateway_factory):
    a, b, c = backend_factory("a"), backend_factory("b"), backend_factory("c")
    text = gw_yaml("all.example.com", "gold.example.com")
    text += vs("vs-all", "all.example.com", "shop", ", port: {number: 80}")
    text += vs("vs-gold", "gold.example.com", "shop", ", port: {number: 80}, subset: gold")
    # c uses the port's targetPort; a and b override it through endpoints[].ports.
    text += f"""
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: shop, namespace: istioinaction}}
spec:
  hosts: [shop.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {c.port}}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a.port}}}, labels: {{tier: gold, zone: z1}}}}
  - {{address: 127.0.0.1, ports: {{http: {b.port}}}, labels: {{tier: silver}}}}
  - {{address: 127.0.0.1, labels: {{tier: gold, zone: z2}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: shop, namespace: istioinaction}}
spec:
  host: shop
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: gold, labels: {{tier: gold}}}}
"""
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)
    main = cl[f"outbound|80||shop.{NS}.svc.cluster.local"]
    assert main["type"] == "STATIC"
    assert sorted(endpoints_of(main)) == sorted(
        [("127.0.0.1", a.port), ("127.0.0.1", b.port), ("127.0.0.1", c.port)])
    gold = cl[f"outbound|80|gold|shop.{NS}.svc.cluster.local"]
    assert sorted(endpoints_of(gold)) == sorted([("127.0.0.1", a.port), ("127.0.0.1", c.port)])

    seen = [who(http_get(gw, 80, "/", host="all.example.com")) for _ in range(9)]
    assert sorted(set(seen)) == ["a", "b", "c"], seen
    seen = [who(http_get(gw, 80, "/", host="gold.example.com")) for _ in range(8)]
    assert sorted(set(seen)) == ["a", "c"], seen


def test_dns_endpoints(backend_factory, gateway_factory):
    web = backend_factory("web")
    text = gw_yaml("dns.example.com", "noep.example.com")
    text += vs("vs-dns", "dns.example.com", "dns.example.internal")
    text += vs("vs-noep", "noep.example.com", "api.example.internal")
    text += f"""
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: dns, namespace: istioinaction}}
spec:
  hosts: [dns.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {web.port}}}]
  resolution: DNS
  endpoints: [{{address: localhost}}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: noep, namespace: istioinaction}}
spec:
  hosts: [api.example.internal]
  ports: [{{number: 8000, name: http, protocol: HTTP, targetPort: 8443}}]
  resolution: DNS
"""
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)
    dns = cl["outbound|80||dns.example.internal"]
    assert dns["type"] == "STRICT_DNS"
    assert dns["dns_lookup_family"] == "V4_ONLY"
    assert endpoints_of(dns) == [("localhost", web.port)]
    r = http_get(gw, 80, "/x", host="dns.example.com")
    assert r.status == 200 and who(r) == "web", r
    assert web.requests[-1]["path"] == "/x"
    # DNS without endpoints: the endpoint is the host itself, on the targetPort.
    noep = cl["outbound|8000||api.example.internal"]
    assert noep["type"] == "STRICT_DNS"
    assert endpoints_of(noep) == [("api.example.internal", 8443)]


def test_kubernetes_service_becomes_strict_dns_cluster(gateway_factory):
    gw = gateway_factory([REPO / "samples/coolstore/gateway.yaml", REPO / "samples/coolstore/services.yaml"],
                         ports=(80,))
    text = gw.bootstrap_path.read_text()
    assert '"outbound|80||webapp.istioinaction.svc.cluster.local"' in text
    cl = clusters(gw)
    web = cl["outbound|80||webapp.istioinaction.svc.cluster.local"]
    assert web["type"] == "STRICT_DNS"
    assert endpoints_of(web) == [("webapp.istioinaction.svc.cluster.local", 8080)]
    cat = cl["outbound|80||catalog.istioinaction.svc.cluster.local"]
    assert endpoints_of(cat) == [("catalog.istioinaction.svc.cluster.local", 3000)]


# --------------------------------------------------------------------------
# analyzer errors


SE_STATIC = """
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: webapp, namespace: istioinaction}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


def render_err(gateway_factory, text: str):
    gw = gateway_factory(text, ports=(80,), start=False)
    code, _, err, out = gw.render()
    assert code == 1, err
    assert not out.exists(), "nothing may be written on error"
    assert "Traceback" not in err
    return err


def finding(err: str, code: str) -> list[str]:
    return [ln for ln in err.splitlines() if re.match(rf"^\S+\.yaml:\d+: (?:error )?{code} ", ln)]


def test_destination_without_registry_entry(gateway_factory):
    err = render_err(gateway_factory, gw_yaml("a.example.com") + vs("my-vs", "a.example.com", "nowhere"))
    (ln,) = finding(err, "EG0203")
    assert "istioinaction/my-vs" in ln and "nowhere.istioinaction.svc.cluster.local" in ln, ln
    assert ln.endswith("[spec.http[0].route[0].destination.host]") or \
        "[spec.http[0].route[0].destination.host]" in ln, ln


def test_undefined_subset(gateway_factory):
    text = gw_yaml("a.example.com") + vs("vs-sub", "a.example.com", "webapp", ", subset: v9") + SE_STATIC
    (ln,) = finding(render_err(gateway_factory, text), "EG0204")
    assert "'v9'" in ln and "webapp.istioinaction.svc.cluster.local" in ln, ln
    assert "[spec.http[0].route[0].destination.subset]" in ln, ln


def test_destination_port_not_exposed(gateway_factory):
    text = gw_yaml("a.example.com") + vs("vs-port", "a.example.com", "webapp", ", port: {number: 9090}") + SE_STATIC
    (ln,) = finding(render_err(gateway_factory, text), "EG0205")
    assert "9090" in ln and "ServiceEntry istioinaction/webapp" in ln, ln
    assert "[spec.http[0].route[0].destination.port]" in ln, ln


def test_named_target_port_refused(gateway_factory):
    text = gw_yaml("a.example.com") + vs("vs", "a.example.com", "webapp") + """
---
apiVersion: v1
kind: Service
metadata: {name: webapp, namespace: istioinaction}
spec:
  ports: [{name: http, port: 80, targetPort: http-web}]
  selector: {app: webapp}
"""
    (ln,) = finding(render_err(gateway_factory, text), "EG0104")
    assert "http-web" in ln and "[spec.ports[0].targetPort]" in ln, ln


def test_resolution_none_refused(gateway_factory):
    text = gw_yaml("a.example.com") + vs("vs-none", "a.example.com", "ext.example.org") + """
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext, namespace: istioinaction}
spec:
  hosts: [ext.example.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
"""
    (ln,) = finding(render_err(gateway_factory, text), "EG0203")
    assert "resolution NONE" in ln and "istioinaction/vs-none" in ln, ln



def test_subset_selecting_no_endpoints_is_an_error(gateway_factory):
    """A subset of a Kubernetes Service that no WorkloadEntry (or --workload-address) serves, or
    a subset whose labels match no ServiceEntry endpoint gives a cluster without
    endpoints: every request would be a 503. envoygen's rule (docs/istio-fidelity.md,
    "Stricter at build time"): a subset without endpoints is EG0231, naming what to add."""
    text = gw_yaml("a.example.com", "b.example.com")
    text += vs("vs-svc", "a.example.com", "catalog", ", subset: version-v1")
    text += vs("vs-se", "b.example.com", "webapp", ", subset: v9")
    text += SE_STATIC.replace("endpoints: [{address: 127.0.0.1}]",
                              "endpoints: [{address: 127.0.0.1, labels: {version: v1}}]")
    text += """
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: istioinaction}
spec:
  ports: [{name: http, port: 80, targetPort: 3000}]
  selector: {app: catalog}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: catalog, namespace: istioinaction}
spec:
  host: catalog
  subsets:
  - {name: version-v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: webapp, namespace: istioinaction}
spec:
  host: webapp
  subsets:
  - {name: v9, labels: {version: v9}}
"""
    err = render_err(gateway_factory, text)
    lines = finding(err, "EG0231")  # a subset that selects nothing names the WorkloadEntry to add (issue 10)
    assert any("istioinaction/vs-svc" in ln and "version-v1" in ln and "kind: WorkloadEntry" in ln for ln in lines), err
    assert any("istioinaction/vs-se" in ln and "v9" in ln for ln in lines), err


def test_service_entry_export_to_limits_visibility(gateway_factory):
    """A ServiceEntry exported only to its own namespace (exportTo: ".") is not
    visible to the ingress gateway in istio-system (push_context.go: private
    services are indexed per namespace), so the route has no endpoints."""
    def text(export_to: str) -> str:
        return gw_yaml("a.example.com") + vs("vs-hidden", "a.example.com", "hidden.other.svc.cluster.local") + f"""
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: hidden, namespace: other}}
spec:
  hosts: [hidden.other.svc.cluster.local]
  exportTo: {export_to}
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 9}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    # exported to the gateway's namespace: visible
    gw = gateway_factory(text('["istio-system"]'), ports=(80,), start=False)
    code, _, err, out = gw.render()
    assert code == 0, err
    assert '"outbound|80||hidden.other.svc.cluster.local"' in (out / "envoy.yaml").read_text()
    # private to "other": the gateway does not see it
    err = render_err(gateway_factory, text('["."]'))
    lines = finding(err, "EG0203")
    assert any("istioinaction/vs-hidden" in ln and "hidden.other.svc.cluster.local" in ln for ln in lines), err
