"""`make check`: every test that reads the wall clock is marked `clock` (tests/README.md).

A test reads the wall clock when its body, a fixture it takes or a helper it calls (followed
through other helpers, across the files of tests/) calls time.time(), time.time_ns(),
datetime.now(), datetime.utcnow(), date.today() or SystemClock(). Such a test must carry
`@pytest.mark.clock` (or its module `pytestmark` must include it), because CI runs the clock
tests again under libfaketime at the instants where naive date code breaks. time.monotonic()
is not the wall clock and is allowed (deadlines for polling).

Usage: python tests/clock_lint.py [DIR]; prints `file:line: test …` per offender, exits 1.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

WALL_CLOCK_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
}
WALL_CLOCK_NAMES = {"SystemClock"}


@dataclass
class Function:
    path: Path
    node: ast.FunctionDef
    marked: bool
    reads_clock: bool = False
    uses: set[str] = field(default_factory=set)


def _is_clock_mark(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "clock" and _is_mark(target.value)


def _is_mark(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "mark"


def _module_marked(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            values = (
                stmt.value.elts if isinstance(stmt.value, ast.List | ast.Tuple) else [stmt.value]
            )
            if any(_is_clock_mark(v) for v in values):
                return True
    return False


def _reads_clock(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in WALL_CLOCK_NAMES  # SystemClock(); naming the class is fine
    if isinstance(node, ast.Attribute):
        base = node.value
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        return (name, node.attr) in WALL_CLOCK_CALLS or node.attr in WALL_CLOCK_NAMES
    return False


def _imports(tree: ast.Module) -> dict[str, str]:
    """Names imported from other modules of tests/: name → module stem."""
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("tests."):
            for alias in stmt.names:
                out[alias.asname or alias.name] = stmt.module.removeprefix("tests.")
    return out


def _functions(path: Path) -> list[Function]:
    tree = ast.parse(path.read_text(), str(path))
    module_marked = _module_marked(tree)
    local = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    imported = _imports(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        marked = module_marked or any(_is_clock_mark(d) for d in node.decorator_list)
        fn = Function(path, node, marked)
        names = {a.arg for a in node.args.args}  # fixtures by parameter name
        for sub in ast.walk(node):
            fn.reads_clock |= _reads_clock(sub)
            if isinstance(sub, ast.Name):
                names.add(sub.id)
        for name in names:
            if name in local:
                fn.uses.add(f"{path.stem}.{name}")
            elif name in imported:
                fn.uses.add(f"{imported[name]}.{name}")
            else:  # a fixture from conftest.py
                fn.uses.add(f"conftest.{name}")
        found.append(fn)
    return found


def offenders(root: Path) -> list[str]:
    functions = [f for p in sorted(root.glob("*.py")) for f in _functions(p)]
    key = {id(f): f"{f.path.stem}.{f.node.name}" for f in functions}
    clocky = {key[id(f)] for f in functions if f.reads_clock}
    grew = True
    while grew:  # helpers and fixtures that call ones that read the clock
        more = {key[id(f)] for f in functions if f.uses & clocky} - clocky
        grew = bool(more)
        clocky |= more
    return [
        f"{f.path}:{f.node.lineno}: {f.node.name} reads the wall clock; mark it "
        "@pytest.mark.clock or give it a fixed instant (tests/README.md)"
        for f in functions
        if f.node.name.startswith("test_") and not f.marked and key[id(f)] in clocky
    ]


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    found = offenders(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
