"""The shapes of Istio's samples/ and istio.io's traffic-management and security tasks,
re-expressed as envoygen's own test data (written for this suite, in those shapes).

Each case either builds and passes Envoy's own validation (``envoygen validate``: the
model, the analyzers and ``envoy --mode validate``), or is refused with a code that
README's finding table documents, for a feature README's feature table lists as refused.
Traffic for the main shapes is driven elsewhere (test_bookinfo, test_http_actions,
test_tcp, test_passthrough, test_auto_passthrough, test_mesh_identity).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def svc(name: str, port: int, versions: tuple[str, ...] = ("v1",), target: int | None = None, proto: str = "http") -> str:
    """A Kubernetes Service and one Deployment per version (the samples' shape)."""
    out = f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: {port}, name: {proto}, targetPort: {target or port}}}]
---
"""
    for v in versions:
        out += f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}-{v}}}
spec:
  selector: {{matchLabels: {{app: {name}, version: {v}}}}}
  template:
    metadata: {{labels: {{app: {name}, version: {v}}}}}
    spec: {{containers: [{{name: {name}, image: example/{name}:{v}}}]}}
---
"""
    return out


def addresses(*workloads: str) -> list[str]:
    out = []
    for i, w in enumerate(workloads):
        out += ["--workload-address", f"{w}=10.1.0.{i + 10}"]
    return out


def gateway(name: str, hosts: str, port: int = 80, proto: str = "HTTP", tls: str = "", selector: str = "ingressgateway") -> str:
    t = f"\n    tls: {tls}" if tls else ""
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: {selector}}}
  servers:
  - port: {{number: {port}, name: {proto.lower()}, protocol: {proto}}}
    hosts: {hosts}{t}
---
"""


def subsets_dr(host: str, *versions: str, tp: str = "") -> str:
    subs = ", ".join(f"{{name: {v}, labels: {{version: {v}}}}}" for v in versions)
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}}}
spec:
  host: {host}{tp}
  subsets: [{subs}]
---
"""


def vs(name: str, hosts: str, gateways: str, body: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: {hosts}
  gateways: {gateways}
{body}
---
"""


@dataclass
class Shape:
    id: str
    text: Callable[[Path, object], str]  # (tmp dir, cert authority) → YAML
    args: Callable[[Path, object], list[str]] = lambda d, ca: []
    refused: str | None = None  # the code it is refused with; None: it builds and Envoy accepts it
    feature: str = ""  # the words README's feature table uses for it among the refused
    paths: list[Path] = field(default_factory=list)


def _secret(d: Path, ca, name: str, host: str, mutual: bool = False) -> str:  # noqa: ANN001
    issued = ca.issue(host)
    return issued.secret_yaml(name, include_ca=mutual) + "\n---\n"


def _mesh(d: Path, ca) -> list[str]:  # noqa: ANN001
    leaf = ca.issue("gw", client=True).write(d / "leaf")
    m = d / "mesh"
    m.mkdir(exist_ok=True)
    shutil.copy(leaf / "tls.crt", m / "cert-chain.pem")
    shutil.copy(leaf / "tls.key", m / "key.pem")
    ca.write_ca(m / "root-cert.pem")
    return ["--mesh-identity", str(m)]


HTTPBIN = svc("httpbin", 8000, target=8080)
HELLO = svc("helloworld", 5000, ("v1", "v2"))
TCP_ECHO = svc("tcp-echo", 9000, ("v1", "v2"), proto="tcp")
REVIEWS = svc("reviews", 9080, ("v1", "v2", "v3")) + svc("ratings", 9080)

SHAPES = [
    # ---- samples
    Shape("bookinfo", lambda d, ca: (REPO / "samples/bookinfo/bookinfo.yaml").read_text() + "\n---\n"
          + (REPO / "samples/bookinfo/bookinfo-gateway.yaml").read_text() + "\n---\n"
          + (REPO / "samples/bookinfo/destination-rule-all.yaml").read_text(),
          lambda d, ca: addresses("productpage-v1")),
    Shape("bookinfo-mtls", lambda d, ca: (REPO / "samples/bookinfo/bookinfo.yaml").read_text() + "\n---\n"
          + (REPO / "samples/bookinfo/bookinfo-gateway.yaml").read_text() + "\n---\n"
          + (REPO / "tests/bookinfo/destination-rule-all-mtls.yaml").read_text(),
          lambda d, ca: addresses("productpage-v1") + _mesh(d, ca)),
    Shape("httpbin-ingress", lambda d, ca: HTTPBIN + gateway("httpbin-gateway", '["httpbin.example.com"]')
          + vs("httpbin", '["httpbin.example.com"]', "[httpbin-gateway]", """  http:
  - match: [{uri: {prefix: /status}}, {uri: {prefix: /delay}}]
    route: [{destination: {host: httpbin, port: {number: 8000}}}]"""),
          lambda d, ca: addresses("httpbin-v1")),
    Shape("helloworld-shifting", lambda d, ca: HELLO + gateway("helloworld-gateway", '["*"]')
          + subsets_dr("helloworld", "v1", "v2")
          + vs("helloworld", '["*"]', "[helloworld-gateway]", """  http:
  - match: [{uri: {exact: /hello}}]
    route:
    - {destination: {host: helloworld, subset: v1, port: {number: 5000}}, weight: 90}
    - {destination: {host: helloworld, subset: v2, port: {number: 5000}}, weight: 10}"""),
          lambda d, ca: addresses("helloworld-v1", "helloworld-v2")),
    Shape("tcp-echo-shifting", lambda d, ca: TCP_ECHO + gateway("tcp-echo-gateway", '["*"]', 31400, "TCP")
          + subsets_dr("tcp-echo", "v1", "v2")
          + vs("tcp-echo", '["*"]', "[tcp-echo-gateway]", """  tcp:
  - match: [{port: 31400}]
    route:
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 20}"""),
          lambda d, ca: addresses("tcp-echo-v1", "tcp-echo-v2")),
    # ---- traffic management tasks
    Shape("request-routing-by-header", lambda d, ca: REVIEWS + gateway("gw", '["*"]') + subsets_dr("reviews", "v1", "v2", "v3")
          + vs("reviews", "[reviews]", "[gw]", """  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]"""),
          lambda d, ca: addresses("reviews-v1", "reviews-v2", "reviews-v3")),
    Shape("fault-injection", lambda d, ca: REVIEWS + gateway("gw", '["*"]') + subsets_dr("ratings", "v1")
          + vs("ratings", "[ratings]", "[gw]", """  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      delay: {percentage: {value: 100.0}, fixedDelay: 7s}
      abort: {percentage: {value: 100.0}, httpStatus: 500}
    route: [{destination: {host: ratings, subset: v1}}]
  - route: [{destination: {host: ratings, subset: v1}}]"""),
          lambda d, ca: addresses("ratings-v1")),
    Shape("mirroring", lambda d, ca: svc("httpbin", 8000, ("v1", "v2"), target=8080) + gateway("gw", '["*"]')
          + subsets_dr("httpbin", "v1", "v2")
          + vs("httpbin", '["*"]', "[gw]", """  http:
  - route: [{destination: {host: httpbin, subset: v1}, weight: 100}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 100.0}"""),
          lambda d, ca: addresses("httpbin-v1", "httpbin-v2")),
    Shape("timeouts-retries", lambda d, ca: REVIEWS + gateway("gw", '["*"]') + subsets_dr("reviews", "v2")
          + vs("reviews", "[reviews]", "[gw]", """  http:
  - route: [{destination: {host: reviews, subset: v2}}]
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 2s}"""),
          lambda d, ca: addresses("reviews-v2")),
    # ---- security tasks
    Shape("secure-ingress-simple", lambda d, ca: HTTPBIN + _secret(d, ca, "httpbin-credential", "httpbin.example.com")
          + gateway("mygateway", '["httpbin.example.com"]', 443, "HTTPS", "{mode: SIMPLE, credentialName: httpbin-credential}")
          + vs("httpbin", '["httpbin.example.com"]', "[mygateway]", """  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]"""),
          lambda d, ca: addresses("httpbin-v1")),
    Shape("secure-ingress-mutual", lambda d, ca: HTTPBIN + _secret(d, ca, "httpbin-credential", "httpbin.example.com", True)
          + gateway("mygateway", '["httpbin.example.com"]', 443, "HTTPS", "{mode: MUTUAL, credentialName: httpbin-credential}")
          + vs("httpbin", '["httpbin.example.com"]', "[mygateway]", """  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]"""),
          lambda d, ca: addresses("httpbin-v1")),
    Shape("tls-passthrough", lambda d, ca: svc("my-nginx", 443, proto="https")
          + gateway("mygateway", '["nginx.example.com"]', 443, "HTTPS", "{mode: PASSTHROUGH}")
          + vs("nginx", '["nginx.example.com"]', "[mygateway]", """  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: my-nginx, port: {number: 443}}}]"""),
          lambda d, ca: addresses("my-nginx-v1")),
    # ---- egress and east-west gateways
    Shape("egress-gateway-beside-ingress", lambda d, ca: HTTPBIN + gateway("ingress", '["httpbin.example.com"]')
          + vs("httpbin", '["httpbin.example.com"]', "[ingress]", """  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]""")
          + gateway("istio-egressgateway", '["edition.cnn.com"]', 443, "HTTPS",
                    "{mode: ISTIO_MUTUAL}", selector="egressgateway")
          + subsets_dr("istio-egressgateway.istio-system.svc.cluster.local", "cnn", tp="\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}")
          + """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
""" + vs("direct-cnn-through-egress-gateway", "[edition.cnn.com]", "[istio-egressgateway, mesh]", """  tls:
  - match: [{gateways: [istio-egressgateway], port: 443, sniHosts: [edition.cnn.com]}]
    route: [{destination: {host: edition.cnn.com, port: {number: 443}}}]"""),
          lambda d, ca: addresses("httpbin-v1")),
    Shape("east-west-gateway", lambda d, ca: """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: eastwest, namespace: istio-system}
spec:
  components:
    ingressGateways:
    - name: istio-eastwestgateway
      enabled: true
      label: {istio: eastwestgateway, topology.istio.io/network: network2}
      k8s:
        service:
          ports:
          - {name: tls, port: 15443, targetPort: 15443}
---
""" + gateway("cross-network-gateway", '["*.local"]', 15443, "TLS", "{mode: AUTO_PASSTHROUGH}", selector="eastwestgateway")
          + HELLO + subsets_dr("helloworld", "v1", "v2"),
          lambda d, ca: addresses("helloworld-v1", "helloworld-v2")),
    Shape("ingress-server-istio-mutual", lambda d, ca: HTTPBIN
          + gateway("mesh-gw", '["httpbin.example.com"]', 443, "HTTPS", "{mode: ISTIO_MUTUAL}")
          + vs("httpbin", '["httpbin.example.com"]', "[mesh-gw]", """  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]"""),
          lambda d, ca: addresses("httpbin-v1") + _mesh(d, ca)),
    # ---- refused, as README documents
    Shape("delegate", lambda d, ca: HTTPBIN + gateway("gw", '["*"]')
          + vs("root", '["*"]', "[gw]", """  http:
  - match: [{uri: {prefix: /productpage}}]
    delegate: {name: productpage}"""),
          refused="EG0104", feature="`delegate`"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_istio_shape(shape: Shape, tmp_path: Path, cert_authority) -> None:  # noqa: ANN001
    d = tmp_path / "in"
    d.mkdir()
    (d / "input.yaml").write_text(shape.text(tmp_path, cert_authority))
    p = run_envoygen(["validate", "-f", str(d), *shape.args(tmp_path, cert_authority)])
    if shape.refused is None:
        assert p.returncode == 0, p.stderr
        assert "error " not in p.stderr, p.stderr
        return
    assert p.returncode == 1, p.stderr
    assert f"error {shape.refused} " in p.stderr, p.stderr
    assert f"| {shape.refused} |" in README, f"README's finding table lacks {shape.refused}"
    refused_cells = [row.split("|")[3] for row in README.splitlines() if row.startswith("| ") and row.count("|") >= 5]
    assert any(shape.feature in cell for cell in refused_cells), f"README's feature table lists no refused {shape.feature!r}"
