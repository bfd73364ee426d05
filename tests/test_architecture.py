"""The shape of the package, checked statically (issue 9): module and function
sizes, no import cycle between envoygen's modules, and the stages' import
direction (load -> model -> resolve -> analyze / translate -> ir -> render -> bundle).

Imports inside functions count as edges too: a cycle dodged by a late import
is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "envoygen"
MAX_MODULE_LINES = 460  # "no module over ~450 lines"
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """envoygen modules that ``name`` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                   for stmt in block.body for n in ast.walk(stmt)}  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            # the longest known module that t names (a from-import may name a symbol)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("envoygen"):
                found.add(t)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: imports for annotations only, never executed."""
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {m: imports_of(m, p, known) for m, p in mods.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__: not an edge of design,
    # so package parents are dropped from a submodule's own edges
    for m, deps in g.items():
        parents = {".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)}
        deps -= parents
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules() -> None:
    g = graph()
    assert len(g) > 30  # the walk saw the package
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "stage, forbidden",
    [
        ("envoygen.analyze", "envoygen.translate"),
        ("envoygen.translate", "envoygen.render"),
        ("envoygen.translate", "envoygen.bundle"),
        ("envoygen.ir", "envoygen.translate"),
        ("envoygen.render", "envoygen.translate"),
        ("envoygen.model", "envoygen.resolve"),
        ("envoygen.load", "envoygen.model"),
    ],
)
def test_stages_import_one_way(stage: str, forbidden: str) -> None:
    g = graph()
    # everything reachable from the stage's modules
    start = [m for m in g if m == stage or m.startswith(stage + ".")]
    seen, todo = set(start), list(start)
    while todo:
        for d in g[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    bad = sorted(m for m in seen if m == forbidden or m.startswith(forbidden + "."))
    assert not bad, f"{stage} reaches {bad}"


FILE_ACCESS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "is_dir",
               "iterdir", "listdir", "stat", "lstat", "glob", "rglob", "scandir", "readlink"}


def test_translate_reads_no_file() -> None:
    """translate is pure: the resolved view in, IR out (credentials and every
    file are read in resolve)."""
    calls = []
    for p in (PACKAGE / "translate").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in FILE_ACCESS:
                    calls.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno} {name}()")
    assert not calls, f"file access in translate: {calls}"


def test_no_module_over_the_size_limit() -> None:
    big = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_no_function_over_the_size_limit() -> None:
    long = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
