"""Ten times the input costs at most ~11 times the work (issue 14), for both Gateway
layouts and with DestinationRules for only half of the hosts.

Work is counted, not timed (this machine's speed drifts): cProfile's call count of
every function, Python and builtin, from load to translate, at 200 and 2,000 hosts
of issue 14's shape (tests/scale_inputs.py). The total and every function called
at least 2,000 times must grow at most 11x. A control re-introduces the scan that
made one-Gateway-per-host quadratic and checks that the count catches it.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest

from envoygen import resolve
from envoygen.pipeline import Request, translate_inputs
from envoygen.model.hosts import gateway_ref
from scale_inputs import scale_input

LIMIT = 11.0


def call_counts(n: int, shared: bool, tmp: Path) -> dict[str, int]:
    src = tmp / f"in-{n}-{'shared' if shared else 'per-host'}.yaml"
    src.write_text(scale_input(n, shared=shared, rules_every=2))
    prof = cProfile.Profile()
    prof.enable()
    try:
        compiled = translate_inputs(Request((str(src),)))
    finally:
        prof.disable()
    vhosts = compiled.bundles[0].bootstrap.listeners[0].filter_chains[0].http.route_config.virtual_hosts
    assert len(vhosts) == n
    counts: dict[str, int] = {}
    for (file, line, func), (_, ncalls, *_rest) in pstats.Stats(prof).stats.items():
        key = f"{'/'.join(file.rsplit('/', 2)[-2:])}:{line}:{func}"
        counts[key] = counts.get(key, 0) + ncalls
    return counts


def growth(small: dict[str, int], large: dict[str, int], floor: int = 2000) -> tuple[float, list[tuple[float, str, int, int]]]:
    """Total ratio, and the functions (called at least ``floor`` times at the large size) that grew over LIMIT."""
    total = sum(large.values()) / sum(small.values())
    offenders = sorted(((large[k] / max(small.get(k, 0), 1), k, small.get(k, 0), large[k])
                        for k in large if large[k] >= floor and large[k] / max(small.get(k, 0), 1) > LIMIT), reverse=True)
    return total, offenders


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["gateway-per-host", "shared-gateway"])
def test_ten_times_the_hosts_cost_at_most_eleven_times_the_calls(shared: bool, tmp_path: Path) -> None:
    small, large = call_counts(200, shared, tmp_path), call_counts(2000, shared, tmp_path)
    total, offenders = growth(small, large)
    print(f"calls: 200 hosts {sum(small.values())}, 2,000 hosts {sum(large.values())}, ratio {total:.2f}")
    assert total <= LIMIT
    assert not offenders, f"functions growing faster than the input: {offenders[:10]}"


def test_the_count_catches_a_scan_per_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: with ``virtual_services_for`` scanning every VirtualService (as before the
    resolve stage indexed them by Gateway), the same measure fails."""
    def scanning(self: resolve.View, gateway_key: str) -> list:
        return [v for v in self.resources.virtual_services
                if any(gateway_ref(g, v.namespace) == gateway_key for g in v.obj.spec.gateways)]

    monkeypatch.setattr(resolve.View, "virtual_services_for", scanning)
    small, large = call_counts(20, False, tmp_path), call_counts(200, False, tmp_path)
    total, offenders = growth(small, large)
    assert any("gateway_ref" in k for _, k, _, _ in offenders), offenders[:5]


def test_host_set_agrees_with_matches() -> None:
    """HostSet (the scope stage's index of destination hosts) answers as ``any(matches(h, d) for d in hosts)``."""
    import itertools
    import random

    from envoygen.model.hosts import HostSet, matches

    names = ["*", "*.com", "*example.com", "*.example.com", "a.example.com", "b.a.example.com", "example.com",
             "*.a.example.com", "*.org", "x.org", "*ample.com", "svc.ns.svc.cluster.local"]
    rng = random.Random(14)
    sets = [set(c) for r in range(3) for c in itertools.combinations(names, r)]
    sets += [set(rng.sample(names, rng.randint(3, len(names)))) for _ in range(200)]
    for hosts in sets:
        index = HostSet(hosts)
        for h in names:
            assert index.matches_any(h) == any(matches(h, d) for d in hosts), (h, hosts)
