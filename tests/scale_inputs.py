"""Issue 14's input shape, at any size: per host one Gateway server host, one
VirtualService with ten routes, one ServiceEntry (two endpoints) and one
DestinationRule with two subsets.

``shared``: one Gateway lists every host (else one Gateway per host, Istio's usual
layout). ``rules_every``: only every k-th host has its DestinationRule; the others
get a wildcard rule that matches no host, so the most-specific-rule lookup misses.
Used by tests/test_load.py, tests/test_compile_growth.py and bench/compile_scale.py.
"""

from __future__ import annotations

ROUTES_PER_HOST = 10


def _gateway(name: str, hosts: list[str]) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{", ".join(f'"{h}"' for h in hosts)}]
"""


def _host(i: int, gateway: str, with_rule: bool) -> str:
    svc = f"svc{i}.example.com"
    routes = "".join(f"""  - match: [{{uri: {{prefix: /r{r}}}}}]
    route: [{{destination: {{host: {svc}{f", subset: v{1 + r % 2}" if with_rule else ""}}}}}]
""" for r in range(ROUTES_PER_HOST - 1))
    routes += f"  - route: [{{destination: {{host: {svc}}}}}]\n"
    rule = (f"""  host: {svc}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""" if with_rule else f'  host: "*.zone{i}.example.org"\n')
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs{i}, namespace: istio-system}}
spec:
  hosts: ["h{i}.example.com"]
  gateways: [{gateway}]
  http:
{routes}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc{i}, namespace: istio-system}}
spec:
  hosts: [{svc}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.{i // 250}.{i % 250 + 1}, labels: {{version: v1}}}}
  - {{address: 10.1.{i // 250}.{i % 250 + 1}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}, namespace: istio-system}}
spec:
{rule}"""


def scale_input(n: int, shared: bool = False, rules_every: int = 1) -> str:
    """``n`` hosts of issue 14's shape as one multi-document YAML text."""
    docs = [_gateway("gw", [f"h{i}.example.com" for i in range(n)])] if shared else []
    for i in range(n):
        if not shared:
            docs.append(_gateway(f"gw{i}", [f"h{i}.example.com"]))
        docs.append(_host(i, "gw" if shared else f"gw{i}", i % rules_every == 0))
    return "---\n".join(docs)
