"""yamljson (the --bootstrap-format json path) builds exactly what PyYAML builds, or refuses."""

import json
from pathlib import Path

import pytest
import yaml

from envoygen import yamljson

# a bootstrap with EnvoyFilter patches is written by yaml.safe_dump, never read by yamljson
GOLDENS = [p for p in sorted(Path(__file__).parent.rglob("envoy.yaml"))
           if "# EnvoyFilter patches applied." not in p.read_text()]


def test_goldens_exist():
    assert len(GOLDENS) > 10


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: str(p.relative_to(Path(__file__).parent)))
def test_same_values_as_pyyaml(path):
    text = path.read_text()
    assert yamljson.load(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", [
    "a: yes\n", "a: no\n", "a: on\n", "a: ~\n", "a: null\n", "a:\nb: 1\n", "a: 0755\n", "a: 1_000\n",
    "a: 2001-12-14\n", "a: &x 1\nb: *x\n", "a: 1 # c\n", "a: |\n  x\n", "a: 1\na: 2\n", "a: 'x'\n", "---\na: 1\n",
    "a: {b: yes}\n", "a: [1, ~]\n", "a: {b: 1, b: 2}\n", "a: \"\\x41\"\n", "a: !!str 1\n", "- a\nb: 1\n", "a:\n\tb: 1\n",
    "a: b: c\n", "a: .5\n", "a: 1.\n", "a: +1\n", "a: 0x1F\n", "a: <<\n", "a: {b: c:d}\n",
    # shapes the fast flow path must leave to the full one, which refuses them
    "a: {b: 1, b: 2}\n", "a: [1, {b: 1, b: \"x\"}]\n", "a: {b: \"x\", }\n", "a: {b: 1,, c: 2}\n", "a: \"x\ny\"\n", "b: [a: 1]\n",
])
def test_outside_the_subset_refused(text):
    with pytest.raises(yamljson.NotSubset):
        yamljson.load(text)


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n  - x\n  - {c: \"d\", e: [1, 2.5, true]}\nf:\n- g: h i\n  j: -3\n",
    "- - 1\n  - 2\n- k: v\n",
    "a:\n  b:\n    c: 0.0.0.0\n  d: /dev/null\ne: []\n",
    # flow collections and quoted strings on the fast path, and next to it
    "a: {b: \"x: y, z\", c: [1, -2, true, false], d: {}}\nc: {b: -0}\nd: \"\\u0041\\t\"\ne: \"é\"\n",
    "- {address: \"10.0.0.1\", port_value: 80}\n- {k: HUNDRED, n: 100}\n- [[], {}]\n",
    "a:\n  b:\n  - 1\n  c: 2\nd:\n- e: 1\n  f:\n    g: 2\n  h: 3\ni: 4\n",
])
def test_subset_matches(text):
    assert yamljson.load(text) == yaml.safe_load(text)


def test_json_text_keeps_written_order_and_is_compact():
    text = 'b: 1\na:\n  - {y: "x", x: [1, 2.5]}\n  - "名"\nc: []\n'
    assert yamljson.to_json(text) == '{"b":1,"a":[{"y":"x","x":[1,2.5]},"\\u540d"],"c":[]}'
    assert json.loads(yamljson.to_json(text)) == yaml.safe_load(text)
