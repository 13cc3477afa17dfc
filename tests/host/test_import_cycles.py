"""Host tier: no import cycles in the toolchain (developer guide), checked on the source.

Two checks on the static import graph of ``toolchain/`` (every ``import`` statement, parsed
with :mod:`ast`; nothing is imported):

* module level — the imports that run when a module is loaded (not those inside functions or
  under ``TYPE_CHECKING``) form no cycle between modules;
* the report and the pipeline — ``toolchain.report`` reaches ``toolchain.pipeline`` by no
  import at all, lazy or for types: the report builds report.json from
  :class:`toolchain.artifacts.StageRecord` / ``StageOutput`` and the pipeline imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted((ROOT / "toolchain").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, *, module_level: bool) -> list[str]:
    """Imported names (``pkg.mod`` or ``pkg.mod.attr``); module level: the statements that
    run on import (top level, also inside try/if, but not under TYPE_CHECKING)."""
    out: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # a submodule when ``a.name`` is one, else (resolved below) the module itself
                out.extend(f"{node.module}.{a.name}" for a in node.names)
            elif module_level:
                if isinstance(node, ast.If) and _is_type_checking(node):
                    visit(node.orelse)
                elif isinstance(node, ast.If | ast.Try | ast.With):
                    for field in ("body", "orelse", "finalbody", "handlers"):
                        for sub in getattr(node, field, []):
                            visit(sub.body if isinstance(sub, ast.ExceptHandler) else [sub])
            elif not isinstance(node, ast.Import | ast.ImportFrom):
                visit([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])

    visit(tree.body)
    return out


def _graph(*, module_level: bool) -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {
            resolve(n) for n in _imports(ast.parse(path.read_text()), module_level=module_level)
        }
        graph[name] = {d for d in deps if d and d != name}
    return graph


def _path(graph: dict[str, set[str]], starts: list[str], dst: str, *, within: bool) -> list[str]:
    """The shortest import path from one of ``starts`` to ``dst`` (or, ``within``, to any
    module of the package ``dst``); [] when there is none."""
    prev: dict[str, str | None] = dict.fromkeys(starts)
    todo = list(starts)
    while todo:
        m = todo.pop(0)
        if m == dst or (within and m.startswith(dst + ".")):
            out = [m]
            while (p := prev[out[-1]]) is not None:
                out.append(p)
            return out[::-1]
        for d in sorted(graph.get(m, ())):
            if d not in prev:
                prev[d] = m
                todo.append(d)
    return []


def _package(graph: dict[str, set[str]], name: str) -> list[str]:
    return [m for m in graph if m == name or m.startswith(name + ".")]


def test_the_report_never_imports_the_pipeline() -> None:
    graph = _graph(module_level=False)
    report, pipeline = "toolchain.report", "toolchain.pipeline"
    path = _path(graph, _package(graph, report), pipeline, within=True)
    assert not path, " -> ".join(path)
    # the check sees imports: the pipeline does reach the report
    assert _path(graph, _package(graph, pipeline), report, within=True)


def test_no_module_level_import_cycle() -> None:
    graph = _graph(module_level=True)
    cycles = {
        " -> ".join([m, *back])
        for m in graph
        for d in graph[m]
        if (back := _path(graph, [d], m, within=False))
    }
    assert not cycles, "\n".join(sorted(cycles)[:10])
