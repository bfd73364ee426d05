"""Read YAML from files, directories and stdin, keeping source positions.

Each YAML document becomes a :class:`Document` with plain Python data and a
``positions`` map from field path (a tuple of keys and list indexes) to the
1-based line where that field starts, so that later stages can point errors at
``FILE:LINE``.  Hostile input is bounded here: file size, node count (which also
stops alias bombs, since aliases are expanded while counting) and nesting depth.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from .diagnostics import Findings

try:  # libyaml when present: an order of magnitude faster on big inputs
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES_PER_FILE = 500_000
MAX_DEPTH = 64

_SCALARS = yaml.constructor.SafeConstructor()
_COLLECTION_TAGS = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
_PRESCAN_BYTES = 1024 * 1024  # below this a file cannot hold MAX_NODES_PER_FILE nodes

Path_ = tuple[Any, ...]


@dataclass
class Document:
    file: str
    index: int
    line: int
    data: Any
    positions: dict[Path_, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: Path_) -> int:
        """Line of the longest prefix of ``path`` that has a known position."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.line


class _TooBig(Exception):
    pass


class _Converter:
    def __init__(self, budget: list[int]) -> None:
        self.budget = budget
        self.positions: dict[Path_, int] = {}
        self.problems: list[tuple[int, str, str]] = []  # (line, message, path)

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and node.tag not in _COLLECTION_TAGS:
            self.problems.append((node.start_mark.line + 1, f"unsupported YAML tag {node.tag}", _fmt(path)))
            return None
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.positions[path + (i,)] = item.start_mark.line + 1
                out.append(self.convert(item, path + (i,), depth + 1))
            return out
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append((key_node.start_mark.line + 1, "YAML merge keys (<<) are not supported", _fmt(path)))
                    continue
                key = self.convert(key_node, path + ("<key>",), depth + 1)
                if isinstance(key, (list, dict)):
                    self.problems.append((key_node.start_mark.line + 1, "a mapping key must be a scalar", _fmt(path)))
                    continue
                if key in result:
                    self.problems.append(
                        (key_node.start_mark.line + 1, f"duplicate key {key!r} in the same mapping", _fmt(path + (key,)))
                    )
                    continue
                self.positions[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.convert(value_node, path + (key,), depth + 1)
            return result
        raise _TooBig(f"unexpected YAML node {type(node).__name__}")  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        tag = node.tag
        if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
            return node.value  # keep the text; Kubernetes treats these as strings
        ctor = _SCALARS.yaml_constructors.get(tag)
        if ctor is None or tag.startswith("tag:yaml.org,2002:python"):
            self.problems.append((node.start_mark.line + 1, f"unsupported YAML tag {tag}", _fmt(path)))
            return node.value
        try:
            return ctor(_SCALARS, node)
        except (yaml.YAMLError, ValueError) as exc:
            self.problems.append((node.start_mark.line + 1, f"bad scalar: {exc}", _fmt(path)))
            return node.value


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


format_path = _fmt


def _too_many_nodes(text: str) -> bool:
    """Count parser events (libyaml, one at a time, no tree) and stop at the node budget,
    so that a huge flat document is refused before a node tree is built for it."""
    n = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)):
            n += 1
            if n > MAX_NODES_PER_FILE:
                return True
    return False


def parse_text(text: str, display: str, findings: Findings) -> list[Document]:
    """Parse one file's text into documents; problems become findings."""
    docs: list[Document] = []
    budget = [MAX_NODES_PER_FILE]
    try:
        if len(text) > _PRESCAN_BYTES and _too_many_nodes(text):
            findings.error(display, 0, "EG0004", f"more than {MAX_NODES_PER_FILE} YAML nodes; refused")
            return docs
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            conv = _Converter(budget)
            try:
                data = conv.convert(node, (), 0)
            except _TooBig as exc:
                findings.error(display, node.start_mark.line + 1, "EG0004", f"document {index}: {exc}; refused")
                return docs
            for line, message, path in conv.problems:
                findings.error(display, line, "EG0002", message, path)
            if data is None:
                continue
            docs.append(Document(display, index, node.start_mark.line + 1, data, conv.positions))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = str(exc.problem or exc)
        code = "EG0004" if "nesting depth" in problem else "EG0002"
        findings.error(display, line, code, f"YAML does not parse: {problem}")
    except yaml.YAMLError as exc:
        findings.error(display, 0, "EG0002", f"YAML does not parse: {exc}")
    except RecursionError:
        findings.error(display, 0, "EG0004", "YAML nested too deeply; refused")
    return docs


def _read(data: bytes, display: str, findings: Findings) -> str | None:
    if len(data) > MAX_FILE_BYTES:
        findings.error(display, 0, "EG0001", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; refused")
        return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        findings.error(display, 0, "EG0001", "file is UTF-16/UTF-32 text; save it as UTF-8")
        return None
    if b"\x00" in data:
        findings.error(display, 0, "EG0001", "file is binary (contains NUL bytes), not YAML")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        findings.error(display, line, "EG0001", f"file is not UTF-8 text (byte offset {exc.start})")
        return None


def _expand(path: str, findings: Findings) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts)
        )
        if not files:
            findings.warning(path, 0, "EG0001", "directory holds no *.yaml or *.yml file")
        return files
    if p.is_file():
        return [p]
    findings.error(path, 0, "EG0001", "no such file or directory" if not p.exists() else "not a regular file")
    return []


def load_paths(
    paths: list[str], stdin: BinaryIO | None = None,
) -> tuple[list[Document], Findings, list[tuple[str, str]]]:
    """Load every document from ``paths`` (``-`` is stdin).

    Returns the documents, the findings and, for the manifest, every input read
    as (path, sha256 of the bytes read), in the order given; stdin is ``-``.
    """
    findings = Findings()
    docs: list[Document] = []
    read: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            raw = stream.read(MAX_FILE_BYTES + 1)
            text = _read(raw, "<stdin>", findings)
            read.append(("-", hashlib.sha256(raw).hexdigest()))
            if text is not None:
                docs.extend(parse_text(text, "<stdin>", findings))
            continue
        for f in _expand(path, findings):
            display = str(f)
            try:
                size = f.stat().st_size
                if size > MAX_FILE_BYTES:
                    findings.error(display, 0, "EG0001", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; refused")
                    continue
                raw = f.read_bytes()
            except OSError as exc:
                findings.error(display, 0, "EG0001", f"cannot read: {exc.strerror or exc}")
                continue
            read.append((display, hashlib.sha256(raw).hexdigest()))
            text = _read(raw, display, findings)
            if text is not None:
                docs.extend(parse_text(text, display, findings))
    return docs, findings, read
