"""yamljson (the --bootstrap-format json path) builds exactly what PyYAML builds, or refuses."""

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
    assert yamljson.load(text) == yaml.safe_load(text) == yamljson.load(text, shared=True)


@pytest.mark.parametrize("text", [
    "a: yes\n", "a: no\n", "a: on\n", "a: ~\n", "a: null\n", "a:\nb: 1\n", "a: 0755\n", "a: 1_000\n",
    "a: 2001-12-14\n", "a: &x 1\nb: *x\n", "a: 1 # c\n", "a: |\n  x\n", "a: 1\na: 2\n", "a: 'x'\n", "---\na: 1\n",
    "a: {b: yes}\n", "a: [1, ~]\n", "a: {b: 1, b: 2}\n", "a: \"\\x41\"\n", "a: !!str 1\n", "- a\nb: 1\n", "a:\n\tb: 1\n",
    "a: b: c\n", "a: .5\n", "a: 1.\n", "a: +1\n", "a: 0x1F\n", "a: <<\n", "a: {b: c:d}\n",
])
def test_outside_the_subset_refused(text):
    with pytest.raises(yamljson.NotSubset):
        yamljson.load(text)


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n  - x\n  - {c: \"d\", e: [1, 2.5, true]}\nf:\n- g: h i\n  j: -3\n",
    "- - 1\n  - 2\n- k: v\n",
    "a:\n  b:\n    c: 0.0.0.0\n  d: /dev/null\ne: []\n",
])
def test_subset_matches(text):
    assert yamljson.load(text) == yaml.safe_load(text) == yamljson.load(text, shared=True)


def test_shared_flow_collections_are_one_object_only_when_asked():
    text = "a: {b: 1}\nc: {b: 1}\n"
    fresh, shared = yamljson.load(text), yamljson.load(text, shared=True)
    assert fresh == shared == {"a": {"b": 1}, "c": {"b": 1}}
    assert fresh["a"] is not fresh["c"]  # a caller may change one without the other
    assert shared["a"] is shared["c"]  # parsed once, for callers that only write it out
