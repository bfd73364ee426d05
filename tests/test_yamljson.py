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
    # found by review: YAML's other line breaks, and "-" as a value
    "b: 1\n# c\ra: 2\n", "b: 1\n# c\x85a: 2\n", "b: 1\n# c\u2028a: 2\n", "a: \"x\x85y\"\n", "\"x\u2029y\": 1\n",
    "a: - b\n", "a: -\n", "- a: -\n", "k: [- a]\n", "k: [a, - b]\n", "k: {- b: 1}\n", "k: [- ]\n",
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


def _emit(value, indent: int, st_draw) -> list[str]:
    """Block YAML in the templates' style for a mapping or list ``value``: strings JSON-quoted
    or plain, small collections sometimes written in flow style."""
    pad = " " * indent
    lines: list[str] = []
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    for k, v in items:
        head = f"{pad}{k}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(v, (dict, list)) and v and not st_draw("flow"):
            if isinstance(value, list) and isinstance(v, dict):
                sub = _emit(v, indent + 2, st_draw)
                lines.append(f"{pad}- " + sub[0].lstrip(" "))
                lines.extend(sub[1:])
            else:
                lines.append(head)
                lines.extend(_emit(v, indent + (0 if isinstance(value, dict) and isinstance(v, list) and st_draw("flat") else 2), st_draw))
        else:
            lines.append(f"{head} {_scalar(v, st_draw)}")
    return lines


def _scalar(v, st_draw) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_scalar(x, st_draw)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x, st_draw) for x in v) + "]"
    if isinstance(v, str) and st_draw("plain") and v.isidentifier():
        return v  # a plain word (PyYAML resolves words such as true, null, on by its own rules)
    return json.dumps(v, ensure_ascii=st_draw("ascii"))  # the templates: ensure_ascii=False


def test_random_documents_read_as_pyyaml_does():
    """Differential: nested mappings and lists in the templates' style, with JSON-quoted or plain
    strings, numbers, booleans and flow collections; yamljson builds what PyYAML builds, or refuses
    (NotSubset) where PyYAML would build something it does not read."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    keys = st.sampled_from(["a", "b", "name", "port_value", "x_y", "@type", "on", "null", "true"]).map(
        lambda k: json.dumps(k) if not k.isidentifier() else k)
    scalars = st.one_of(st.integers(-5, 2**32), st.booleans(), st.sampled_from([0.5, 10.0]),
                        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6),
                        st.sampled_from(["STATIC", "yes", "no", "on", "null", "~", "true", "0", "-0", "1e3", "x: y", "a, b"]))
    tree = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(keys, inner, max_size=3)), max_leaves=12)
    outcomes = {"same": 0, "refused": 0}

    @settings(max_examples=400, derandomize=True, database=None, deadline=None)
    @given(st.dictionaries(keys, tree, min_size=1, max_size=4), st.data())
    def same(doc, data):
        text = "\n".join(_emit(doc, 0, lambda label: data.draw(st.booleans(), label=label))) + "\n"
        try:
            expected = yaml.safe_load(text)
        except yaml.YAMLError:
            expected = yamljson.NotSubset  # PyYAML refuses it: yamljson must too
        try:
            got = yamljson.load(text)
        except yamljson.NotSubset:
            outcomes["refused"] += 1
            return  # the caller falls back to PyYAML: always correct
        assert expected is not yamljson.NotSubset, text
        assert got == expected, text
        assert json.loads(yamljson.to_json(text)) == expected
        outcomes["same"] += 1

    same()
    assert outcomes["same"] >= 100, outcomes  # the control: most documents are read, not refused
