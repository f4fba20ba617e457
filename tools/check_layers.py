"""The import contract of src/tunesmith: layers point one way and no two modules import each other in a cycle.

Every ``import`` counts, including those inside functions (deferred only for start-up time, they are still
dependencies). A unit is a top-level module or sub-package of tunesmith; a unit may import itself and the units
of lower layers, never a unit of its own layer or above. Run by ``make lint``; exits 1 with one line per breach.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "tunesmith"

# Top to bottom. Units on one line are siblings: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("ui",),
    ("serve", "export", "tune"),
    ("review",),
    ("doctor",),
    ("train",),
    ("evaluate",),
    ("engine",),  # the built-in inference engine: below eval, in-training metrics and serve
    ("track",),
    ("rewards",),  # GRPO rewards: read by train, doctor and evaluate
    ("methods", "models", "data"),
    ("rundir", "metric_specs", "console", "cache"),
    ("config",),
    ("errors",),
    ("__init__",),  # the package itself: its version string
]


def module_name(path: Path, src: Path) -> str:
    """tunesmith.train.runner for src/tunesmith/train/runner.py; the package for an __init__.py."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The tunesmith modules that ``path`` (module ``name``) imports, anywhere in its body."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module (or package) itself
                found.add(base)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")} - {name}


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the tunesmith modules it imports."""
    paths = {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}
    known = set(paths)
    return {name: imports_of(path, name, known) for name, path in paths.items()}


def unit(module: str) -> str:
    """The layered unit a module belongs to: tunesmith.train.runner -> train; tunesmith -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_breaches(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """One line per import that points up a layer or sideways to a sibling."""
    rank = {name: index for index, names in enumerate(layers) for name in names}
    breaches = []
    for module, targets in sorted(graph.items()):
        here = unit(module)
        if here not in rank:
            breaches.append(f"{module}: unit {here!r} is in no layer (add it to LAYERS in tools/check_layers.py)")
            continue
        for target in sorted(targets):
            there = unit(target)
            if there != here and rank.get(there, -1) <= rank[here]:
                breaches.append(f"{module} imports {target}: {here} may not depend on {there}")
    return breaches


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(src: Path) -> Iterable[str]:
    """Every breach of the contract in the tree under ``src``."""
    graph = import_graph(src)
    yield from layer_breaches(graph, LAYERS)
    for group in cycles(graph):
        yield "import cycle: " + " -> ".join(group)


def main() -> int:
    """Check src/ next to this script's parent; print each problem; 1 if there are any."""
    src = Path(__file__).resolve().parent.parent / "src"
    found = list(problems(src))
    for line in found:
        print(line)
    if not found:
        print(f"layers: {len(import_graph(src))} modules, no upward import, no cycle")
    return 1 if found else 0


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    sys.exit(main())
