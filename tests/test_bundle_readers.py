"""The commands that read a bundle or dump the IR at scale (issue 14: linear everywhere).

At 1,000 hosts of issue 14's shape, ``graph`` took 12 s (a list scan per edge made it
quadratic), ``diff`` 8 s and ``proxy-config`` 1.7 s (PyYAML's constructor builds the
5 MB bootstrap in Python), and ``ir`` 15 s (every object's type annotations were
resolved again, compiling each one). Work is counted here, not timed: this
machine's speed drifts.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from envoygen import irdump, yamljson
from envoygen.cli import cli
from envoygen.graph import Graph
from envoygen.proxyconfig import bundle as bundle_mod
from scale_inputs import scale_input
from test_scale_growth import call_counter
from test_yamljson import GOLDENS


def _pyyaml_refused(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError("PyYAML's loader was called")


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: str(p.relative_to(Path(__file__).parent)))
def test_bundle_bootstrap_read_without_pyyaml(path: Path, monkeypatch) -> None:
    """A bootstrap the packaged templates wrote is read by the subset reader, to the
    values PyYAML would build, and PyYAML's loader is never called for it."""
    text = path.read_text()
    expected = yaml.load(text, Loader=yaml.CSafeLoader)
    monkeypatch.setattr(yaml, "load", _pyyaml_refused)
    assert yamljson.read_bootstrap(text) == expected


def test_bootstrap_outside_the_subset_falls_back_to_pyyaml() -> None:
    """A bootstrap PyYAML wrote (EnvoyFilter patches) or a user's template's style is
    still read, by PyYAML, to PyYAML's values; JSON text is read as JSON."""
    data = {"static_resources": {"listeners": [{"name": "a", "per_connection_buffer_limit_bytes": 1024}],
                                 "clusters": []}, "admin": {"address": None}}
    dumped = "# head\n" + yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(yamljson.NotSubset):
        yamljson.load(dumped)
    assert yamljson.read_bootstrap(dumped) == data
    assert yamljson.read_bootstrap('{"a": [1, 2.5, "1e-05"], "b": 1e-05}', json_text=True) == \
        {"a": [1, 2.5, "1e-05"], "b": 1e-05}
    with pytest.raises(yaml.YAMLError):
        yamljson.read_bootstrap("a: [1\n")


def test_proxy_config_bundle_load_uses_the_subset_reader(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(3))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["render", "-q", "-f", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(yaml, "load", _pyyaml_refused)
    b = bundle_mod.load(out)
    assert len(b.clusters) == 2 + 3 * 3  # prometheus_stats, agent, and 3 per host


class _Id(str):
    """A node id that counts how often it is compared for equality."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _Id.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_graph_links_without_scanning_its_edges() -> None:
    """Linking an edge costs the same whatever the number of edges already there (a
    list's membership test compared each new edge with every earlier one: ~n²/2)."""
    g = Graph()
    n = 2_000
    _Id.compared = 0
    for i in range(n):
        g.link(_Id(f"route:{i}"), _Id(f"cluster:{i % 7}"))
    for i in range(0, n, 3):  # repeats keep the first place, and are not added twice
        g.link(_Id(f"route:{i}"), _Id(f"cluster:{i % 7}"))
    assert _Id.compared < 4 * n, _Id.compared
    assert list(g.edges)[:3] == [("route:0", "cluster:0"), ("route:1", "cluster:1"), ("route:2", "cluster:2")]
    assert len(g.edges) == n


def test_ir_dump_resolves_each_class_annotations_once(tmp_path: Path, monkeypatch) -> None:
    import typing

    calls = collections.Counter()
    real = typing.get_type_hints

    def counting(obj, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls[obj] += 1
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)
    irdump._fields.cache_clear()
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(20))
    r = CliRunner().invoke(cli, ["ir", "-f", str(src)])
    assert r.exit_code == 0, r.output
    assert '"outbound|80|v1|svc19.example.com"' in r.output
    assert calls and max(calls.values()) == 1, calls.most_common(3)


def _calls(args: list[str]) -> tuple[collections.Counter, str]:
    calls: collections.Counter = collections.Counter()
    runner = CliRunner()
    sys.setprofile(call_counter(calls))
    try:
        r = runner.invoke(cli, args)
    finally:
        sys.setprofile(None)
    assert r.exit_code in (0, 1), r.output
    return calls, r.output


def _growth(command: str, tmp_path: Path) -> tuple[float, list[tuple[float, str]]]:
    """(growth of the total calls, functions growing faster than 2.5x) from 40 to 80 hosts."""
    counts = []
    for n in (40, 80):
        src = tmp_path / f"in{n}.yaml"
        src.write_text(scale_input(n))
        b = tmp_path / f"b{n}"
        r = CliRunner().invoke(cli, ["render", "-q", "-f", str(src), "-o", str(b)])
        assert r.exit_code == 0, r.output
        calls, output = _calls(command.format(b=b, src=src, tmp=tmp_path).split())
        assert f"svc{n - 1}.example.com" in output or "g.html" in command or "diff" in command
        counts.append(calls)
    small, large = counts
    grew = sorted(((large[k] / max(small[k], 1), k) for k in large if large[k] >= 500), reverse=True)
    return sum(large.values()) / sum(small.values()), [g for g in grew if g[0] > 2.5]


@pytest.mark.parametrize("command", ["proxy-config all {b}", "graph {b} -o {tmp}/g.html", "diff {b} {b}",
                                     "ir -f {src}"])
def test_bundle_commands_grow_linearly(command: str, tmp_path: Path) -> None:
    """Doubling the hosts at most ~doubles the calls, in total and for every function."""
    ratio, offenders = _growth(command, tmp_path)
    assert ratio < 2.3, ratio
    assert not offenders, offenders[:5]


def test_growth_check_catches_a_scan_per_edge(tmp_path: Path, monkeypatch) -> None:
    """Control: a graph that scans its edges in Python for every new one is caught."""
    def scanning_link(self, a, b):  # noqa: ANN001, ANN202
        if not any(e == (a, b) for e in self.edges):
            self.edges[(a, b)] = None

    monkeypatch.setattr(Graph, "link", scanning_link)
    ratio, offenders = _growth("graph {b} -o {tmp}/g.html", tmp_path)
    assert ratio > 2.5 and any("genexpr" in name for _, name in offenders), (ratio, offenders[:5])


def _random_value(rng, depth: int = 0):  # noqa: ANN001, ANN202
    kinds = ["str", "int", "float", "bool", "none"] + (["dict", "list"] * 2 if depth < 4 else [])
    k = rng.choice(kinds)
    if k == "dict":
        return {rng.choice(["a", "b", "é", "\"q\"", "k\n", "10", "2"]) + str(rng.randrange(3)): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if k == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"str": lambda: rng.choice(["", "x", "é\u2028\x00\\", "\ud800", "/a b"]), "int": lambda: rng.randrange(-10**20, 10**20),
            "float": lambda: rng.choice([0.5, -0.0, 1e-05, 1e300, float("nan"), float("inf")]),
            "bool": lambda: rng.random() < 0.5, "none": lambda: None}[k]()


def test_ir_json_is_json_dumps_text(tmp_path: Path) -> None:
    """``envoygen ir`` writes json.dumps(indent=2, sort_keys=True, ensure_ascii=False)'s text,
    by a faster writer: the same on random values and on a sample's whole output."""
    import json
    import random

    rng = random.Random(14)
    for _ in range(500):
        v = _random_value(rng)
        assert irdump.pretty_json(v) == json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
    src = tmp_path / "in.yaml"
    src.write_text(scale_input(3))
    r = CliRunner().invoke(cli, ["ir", "-f", str(src)])
    assert r.exit_code == 0, r.output
    assert r.output == json.dumps(json.loads(r.output), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
