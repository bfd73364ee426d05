"""The loader (envoygen/load.py): one pass over libyaml's events builds the values
and records every field's line; YAML problems become findings with FILE:LINE and
a field path; hostile input is refused quickly and within bounds."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import yaml

from envoygen import load, yamlevents
from envoygen.diagnostics import Findings
from envoygen.load import Document, parse_text
from scale_inputs import scale_input


def parse(text: str) -> tuple[list[Document], Findings]:
    findings = Findings()
    return parse_text(text, "in.yaml", findings), findings


def errors(findings: Findings) -> list[tuple[int, str, str, str]]:
    return [(f.line, f.code, f.path, f.message) for f in findings if f.severity == "error"]


BLOCK = """\
# a comment
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port:
      number: 80
      name: http
    hosts:
    - "a.example.com"
    - b.example.com
  - port: {number: 443, name: https}
    hosts: [c.example.com,
            d.example.com]
---
---
kind: Second
list: [1, 2.5, true, null, "7", 2024-01-02, ~]
"""


def test_values_are_the_same_as_pyyaml_safe_load() -> None:
    docs, findings = parse(BLOCK)
    assert not list(findings)
    expected = [d for d in yaml.safe_load_all(BLOCK) if d is not None]
    expected[1]["list"][5] = "2024-01-02"  # timestamps stay text: Kubernetes treats them as strings
    assert [d.data for d in docs] == expected
    assert [(d.index, d.line) for d in docs] == [(0, 2), (2, 19)]  # the empty document 1 is skipped


@pytest.mark.parametrize(("path", "line"), [
    (("apiVersion",), 2),
    (("metadata",), 4),
    (("metadata", "name"), 5),
    (("spec", "servers"), 7),
    (("spec", "servers", 0), 8),
    (("spec", "servers", 0, "port", "number"), 9),
    (("spec", "servers", 0, "port", "name"), 10),
    (("spec", "servers", 0, "hosts", 1), 13),
    (("spec", "servers", 1), 14),
    (("spec", "servers", 1, "port", "number"), 14),  # flow mapping: the line it is on
    (("spec", "servers", 1, "hosts", 0), 15),
    (("spec", "servers", 1, "hosts", 1), 16),  # a flow sequence over two lines
    (("spec", "servers", 1, "hosts", 1, "deeper"), 16),  # unknown below: the longest known prefix
    (("nosuch",), 2),  # the document's line
])
def test_every_field_has_its_line(path: tuple, line: int) -> None:
    docs, _ = parse(BLOCK)
    assert docs[0].line_of(path) == line


def test_positions_omit_what_line_of_finds_anyway() -> None:
    """A field on the same line as its parent needs no entry (flow style): fewer entries, same answers."""
    docs, _ = parse("a: {b: 1, c: [x, y]}\nd:\n- e\n")
    assert docs[0].positions == {("d",): 2, ("d", 0): 3}
    assert docs[0].line_of(("a", "c", 1)) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("a: 1\nb: 2\na: 3\n", (3, "EG0002", "a", "duplicate key 'a' in the same mapping")),
    ("a:\n  x: 1\n  <<: {y: 2}\n", (3, "EG0002", "a", "YAML merge keys (<<) are not supported")),
    ("a:\n  ? [k, l]\n  : v\n", (2, "EG0002", "a", "a mapping key must be a scalar")),
    ("a:\n  b: !!python/name:os.system x\n", (2, "EG0002", "a.b", "unsupported YAML tag tag:yaml.org,2002:python/name:os.system")),
    ("a:\n  b: !!python/tuple [1, 2]\n", (2, "EG0002", "a.b", "unsupported YAML tag tag:yaml.org,2002:python/tuple")),
    ("a:\n  b: !custom x\n", (2, "EG0002", "a.b", "unsupported YAML tag !custom")),
    ("a:\n  - !!int abc\n", (2, "EG0002", "a[0]", "bad scalar")),
    ("a: *nowhere\n", (1, "EG0002", "", "YAML does not parse: found undefined alias 'nowhere'")),
    ("a: [1, 2\nb: 3\n", (2, "EG0002", "", "YAML does not parse")),
])
def test_yaml_problems_are_findings_with_line_and_path(text: str, expected: tuple) -> None:
    _, findings = parse(text)
    got = errors(findings)
    assert len(got) == 1, got
    line, code, path, message = got[0]
    assert (line, code, path) == expected[:3]
    assert message.startswith(expected[3])


def test_a_duplicate_value_does_not_replace_the_first_or_its_positions() -> None:
    docs, _ = parse("a:\n  x: 1\nb: 0\na:\n  x: 2\n")
    assert docs[0].data == {"a": {"x": 1}, "b": 0}
    assert docs[0].line_of(("a", "x")) == 2


def test_aliases_share_the_anchored_value() -> None:
    docs, findings = parse("base: &l {version: v1}\nsubsets:\n- labels: *l\n- labels: *l\n")
    assert not list(findings)
    data = docs[0].data
    assert data["subsets"][0]["labels"] == {"version": "v1"}
    assert data["subsets"][0]["labels"] is data["subsets"][1]["labels"] is data["base"]
    assert docs[0].line_of(("subsets", 1, "labels", "version")) == 4  # where the alias is used


def test_alias_bomb_is_refused_without_expanding() -> None:
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.process_time()
    docs, findings = parse("\n".join(levels) + "\n")
    assert time.process_time() - start < 0.5
    assert not docs
    assert [(e[1], e[3]) for e in errors(findings)] == [
        ("EG0004", f"document 0: aliases expand to more than {load.MAX_ALIAS_NODES} YAML nodes; refused")]


@pytest.mark.parametrize("text", [
    "x: " + "[" * 10000 + "]" * 10000 + "\n",
    "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v\n",
    "- " * 10000 + "x\n",
    # nesting built through aliases: each level twice as deep as it looks
    "a: &a [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
    "b: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
])
def test_deep_nesting_is_refused_quickly(text: str) -> None:
    start = time.process_time()
    docs, findings = parse(text)
    assert time.process_time() - start < 0.5
    assert not docs
    assert [e[1] for e in errors(findings)] == ["EG0004"]
    assert "nesting" in errors(findings)[0][3]


def test_node_budget_counts_every_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "MAX_NODES_PER_FILE", 1000)
    docs, findings = parse("ok: 1\n---\nx: [" + ", ".join(["a"] * 600) + "]\n---\ny: [" + ", ".join(["b"] * 600) + "]\n")
    assert [d.index for d in docs] == [0, 1]  # documents before the refused one are kept (the run fails anyway)
    assert [(e[0], e[1], e[3]) for e in errors(findings)] == [
        (5, "EG0004", "document 2: more than 1000 YAML nodes (after expanding aliases); refused")]


def test_ten_thousand_hosts_fit_in_one_file() -> None:
    """Issue 14: one file with 10,000 hosts of its shape is accepted (size and node budget),
    measured on 10 hosts and scaled: every host's text and nodes are alike."""
    text = scale_input(10, shared=False)
    docs, findings = parse(text)
    assert not list(findings) and len(docs) == 40
    nodes_per_host = _count_nodes([d.data for d in docs]) / 10
    assert nodes_per_host * 10_000 < load.MAX_NODES_PER_FILE * 0.7
    assert len(text.encode()) / 10 * 10_000 < load.MAX_FILE_BYTES * 0.5


def _count_nodes(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(1 + _count_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_nodes(v) for v in value)
    return 1


@pytest.mark.slow
def test_ten_thousand_hosts_in_one_file_load() -> None:
    text = scale_input(10_000, shared=False)
    docs, findings = parse(text)
    assert not [f for f in findings if f.severity == "error"]
    assert len(docs) == 40_000
    assert docs[-1].line_of(("spec", "subsets", 1)) == text.count("\n")


def test_one_pass_no_node_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader neither composes a node tree nor pre-scans the text with a second parse."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a second pass over the YAML")

    for name in ("compose_all", "compose", "parse", "load_all", "safe_load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    docs, _ = parse(scale_input(3, shared=True))
    assert len(docs) == 10


# The events libyaml hands over are this module's C-made classes (load.events_in_c): the same
# documents, positions and findings as through PyYAML's own event classes, and yaml._yaml is left
# as it was found, whatever happens during the parse.

HERE = Path(__file__).parent
YAML_FILES = sorted(p for p in [*HERE.rglob("*.yaml"), *HERE.parent.joinpath("samples").rglob("*.yaml")]
                    if ".venv" not in p.parts)
BINDING = getattr(yaml, "_yaml", None)
PYYAML_EVENTS = {c.__name__: c for c in yamlevents.PYYAML_TO_OURS}


def _outcome(text: str) -> tuple[list, list]:
    docs, findings = parse(text)
    return ([(d.index, d.line, d.data, d.positions) for d in docs],
            [(f.line, f.code, f.path, f.message, f.severity) for f in findings])


def _binding_untouched() -> bool:
    return all(getattr(BINDING, name) is cls for name, cls in PYYAML_EVENTS.items())


def test_quoted_and_plain_text_stay_apart() -> None:
    """A plain scalar's value is remembered by its text; quoted text of the same letters stays a string."""
    text = 'a: [1, "1", true, "true", null, "null"]\n"1": y\n"2": z\n2: w\ntrue: t\n"true": s\n'
    docs, findings = parse(text)
    assert not list(findings)
    assert docs[0].data == yaml.safe_load(text)
    assert list(docs[0].data) == ["a", "1", "2", 2, True, "true"]


def test_c_made_events_build_what_pyyaml_events_build(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(YAML_FILES) > 80  # every input of the tests, the hostile corpus and the samples
    texts = [p.read_bytes().decode("utf-8", "replace") for p in YAML_FILES]
    texts += [BLOCK, "a: &x [1, *x]\n", "k: !!binary aGk=\nt: 2001-12-14t21:59:43.10-05:00\n", "a:\n  - !!int abc\n"]
    fast = [_outcome(t) for t in texts]
    monkeypatch.setattr(load, "events_in_c", contextlib.nullcontext)  # PyYAML's classes, adapted
    assert [_outcome(t) for t in texts] == fast


@pytest.mark.skipif(BINDING is None, reason="PyYAML without libyaml: its own event classes are adapted")
def test_no_pyyaml_event_object_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for cls in PYYAML_EVENTS.values():
        monkeypatch.setattr(cls, "__init__", lambda self, *a, **k: made.append(type(self)))
    docs, findings = parse(scale_input(3, shared=False))
    assert len(docs) == 12 and not list(findings)
    assert made == []


@pytest.mark.parametrize("text", ["a: [1, 2\nb: 3\n", "a: *nowhere\n", "x: " + "[" * 10000 + "]" * 10000 + "\n", "ok: 1\n"])
def test_the_binding_is_restored_after_every_parse(text: str) -> None:
    parse(text)
    assert _binding_untouched()
    if BINDING is not None:  # yaml.dump with libyaml's emitter reads the same names
        assert yaml.dump({"a": [1]}, Dumper=yaml.CSafeDumper) == "a:\n- 1\n"


def test_the_binding_is_restored_when_the_parse_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object, ev: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(load._Builder, "document", boom)
    with pytest.raises(KeyboardInterrupt):
        parse("a: 1\n")
    assert _binding_untouched()


def test_parses_in_threads_do_not_see_each_others_swap() -> None:
    """yamlevents swaps module globals: parses in several threads at once are serialized by its
    lock, so none is handed the other's classes (or PyYAML's) halfway through."""
    import threading

    text = scale_input(20, shared=False)
    expected = _outcome(text)
    results: list[object] = []

    def work() -> None:
        for _ in range(3):
            try:
                results.append(_outcome(text))
            except Exception as exc:  # noqa: BLE001 - a failure in a thread is reported by the assertion below
                results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 12 and all(r == expected for r in results)
    assert _binding_untouched()
