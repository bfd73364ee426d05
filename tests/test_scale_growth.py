"""Work grows linearly with the input: doubling the number of hosts doubles the
number of function calls the compiler makes, in total and for every function
(counted with a profiler hook, not timed: this machine's speed drifts).

The shape is Istio's usual layout, which used to be quadratic (issue 14): one
Gateway per host, one VirtualService per Gateway, a ServiceEntry per backend, and
DestinationRules for only half of the hosts (the other half have wildcard rules
that match nothing), so the lookup of "the most specific rule" misses half the time.
Before the resolve stage indexed VirtualServices by Gateway and rules by suffix,
gateway_ref, subset_of and rule_for grew 4x when the input doubled.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from envoygen.pipeline import Request, translate_inputs


def layout(n: int) -> str:
    docs = []
    for i in range(n):
        host, svc = f"h{i}.example.com", f"svc{i}.apps.svc.cluster.local"
        subset = ", subset: v1" if i % 2 == 0 else ""
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw{i}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{host}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs{i}, namespace: istio-system}}
spec:
  hosts: ["{host}"]
  gateways: [gw{i}]
  http:
  - match: [{{uri: {{prefix: /a}}}}]
    route: [{{destination: {{host: {svc}{subset}}}}}]
  - route: [{{destination: {{host: {svc}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se{i}, namespace: istio-system}}
spec:
  hosts: [{svc}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.{1 + i % 200}, labels: {{version: v1}}}}]
""")
        rule = (f"host: {svc}\n  subsets: [{{name: v1, labels: {{version: v1}}}}]" if i % 2 == 0
                else f'host: "*.zone{i}.example.org"')
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr{i}, namespace: istio-system}}
spec:
  {rule}
""")
    return "---\n".join(docs)


def call_counter(calls: collections.Counter):  # noqa: ANN201 - a sys.setprofile hook
    """A profiler hook counting calls by function (file:name) and builtin into ``calls``."""
    def hook(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call":
            code = frame.f_code
            calls["/".join(code.co_filename.rsplit("/", 2)[-2:]) + ":" + code.co_name] += 1
        elif event == "c_call":
            calls[f"builtin:{getattr(arg, '__qualname__', repr(arg))}"] += 1
    return hook


def calls_to_compile(n: int, tmp: Path) -> collections.Counter:
    f = tmp / f"in-{n}.yaml"
    f.write_text(layout(n))
    calls: collections.Counter = collections.Counter()
    sys.setprofile(call_counter(calls))
    try:
        compiled = translate_inputs(Request((str(f),)))
    finally:
        sys.setprofile(None)
    assert len(compiled.bundles[0].bootstrap.listeners[0].filter_chains[0].http.route_config.virtual_hosts) == n
    return calls


def test_compile_work_doubles_when_the_input_doubles(tmp_path: Path) -> None:
    small, large = calls_to_compile(60, tmp_path), calls_to_compile(120, tmp_path)
    total_small, total_large = sum(small.values()), sum(large.values())
    print(f"calls: 60 hosts {total_small}, 120 hosts {total_large}, ratio {total_large / total_small:.2f}")
    assert total_large / total_small < 2.3
    grew = sorted(((large[k] / max(small[k], 1), k, small[k], large[k]) for k in large if large[k] >= 500), reverse=True)
    print("fastest growing:", grew[:5])
    offenders = [g for g in grew if g[0] > 2.5]
    assert not offenders, f"functions growing faster than the input: {offenders[:10]}"
