"""The package layers of `marketflow_assets`, kept by reading the source (no import needed).

A module may import modules of its own layer and of the layers below it, never above; the
module import graph has no cycle; and nothing under `marketflow_assets` imports the project
inside a function (the usual way to hide a cycle) except where `LAZY_IMPORTS` says why.
Imports under `if TYPE_CHECKING:` name types only and are not counted. `LAYERS` lists the
layers bottom to top (README.md, "Architecture"); a new top-level module or package must be
given one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "marketflow_assets"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "core: configuration, calendars, contracts, small shared helpers",
        frozenset(
            {
                "settings",
                "settings_file",
                "calendar",
                "calendar_cache",
                "exchanges",
                "tickers",
                "contracts",
                "cadence",
                "charts",
                "faults",
                "redaction",
                "data",
                "instance",
                "dbt_guard",
                "run_launcher",
                "session_windows",
            }
        ),
    ),
    (
        "io: providers, storage, pure transforms, snapshot publishing",
        frozenset({"sources", "storage", "transforms", "serving", "fetch_plan"}),
    ),
    (
        "wiring: Dagster resources, session partitions, file-drop ingestion",
        frozenset({"resources", "partitions", "ingestion"}),
    ),
    (
        "features: assets, checks, automation; the API and BI read the snapshot",
        frozenset({"assets", "checks", "automation", "api", "bi"}),
    ),
    (
        "domains: each domain's Definitions (its assets, checks, automation, resources)",
        frozenset({"domains"}),
    ),
    ("definitions: the domains merged into one Definitions", frozenset({"definitions"})),
    (
        "apps: demo, benchmark, repair report, prepare (they run the definitions or their parts)",
        frozenset({"demo", "demo_progress", "benchmark", "repair_report", "prepare"}),
    ),
)

# (importing module, imported module) -> why it is imported inside a function.
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("marketflow_assets", "marketflow_assets.definitions"): (
        "PEP 562 `marketflow_assets.defs`: importing the package must not build the definitions "
        "from the environment"
    ),
    ("marketflow_assets.resources", "marketflow_assets.storage.s3_lake"): (
        "only an S3 lake imports dagster-aws (boto3 and every dagster-aws component, ~0.5 s)"
    ),
    **{
        ("marketflow_assets.resources", f"marketflow_assets.sources.{name}"): (
            "only the configured provider is imported (yfinance and its HTTP stack cost seconds)"
        )
        for name in ("simulator", "csv_files", "yahoo")
    },
    **{
        ("marketflow_assets.resources.fundamentals", f"marketflow_assets.sources.{name}"): (
            "only the configured fundamentals provider is imported"
        )
        for name in (
            "simulator",
            "simulator_fundamentals",
            "fundamentals_csv",
            "fundamentals_yahoo",
            "fundamentals_edgar",
        )
    },
}
# Benchmark child processes import (and time) Dagster and the definitions only after they have
# set up the environment the definitions are built from.
LAZY_PACKAGES = ("marketflow_assets.benchmark",)


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    lazy: bool


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[Import]:
    source = _module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(source, a.name, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from pkg import mod` imports pkg.mod when mod is a module.
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    target = candidate if _exists(candidate) else child.module
                    found.append(Import(source, target, child.lineno, lazy))
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), lazy=False)
    return [i for i in found if i.target.split(".")[0] == PACKAGE.name]


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _all_imports() -> list[Import]:
    return [i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports(path)]


def _unit(module: str) -> str:
    """The top-level module or package of `marketflow_assets` a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer_of(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(
        f"marketflow_assets.{unit} belongs to no layer: add it to LAYERS in {Path(__file__).name}"
    )


def test_every_package_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {""}
    for unit in sorted(units):
        _layer_of(unit)


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for imp in _all_imports():
        if imp.lazy or not _unit(imp.source) or not _unit(imp.target):
            continue
        source, target = _layer_of(_unit(imp.source)), _layer_of(_unit(imp.target))
        if target > source:
            upward.append(
                f"{imp.source}:{imp.line} imports {imp.target} "
                f"({LAYERS[source][0].split(':')[0]} -> {LAYERS[target][0].split(':')[0]})"
            )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_module_imports_have_no_cycle():
    graph: dict[str, set[str]] = {}
    for imp in _all_imports():
        if not imp.lazy and imp.source != imp.target:
            graph.setdefault(imp.source, set()).add(imp.target)
    # A package's __init__ importing its own submodules is how packages work; a submodule
    # importing its package back is the cycle to catch, so keep both directions.
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []
    cycles: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_function_level_imports_of_the_project():
    hidden = [
        f"{imp.source}:{imp.line} imports {imp.target} inside a function"
        for imp in _all_imports()
        if imp.lazy
        and (imp.source, imp.target) not in LAZY_IMPORTS
        and not imp.source.startswith(LAZY_PACKAGES)
    ]
    assert not hidden, (
        "import at module level (a cycle means the code is in the wrong layer), or add the pair "
        "to LAZY_IMPORTS with the reason:\n" + "\n".join(hidden)
    )


def test_the_checker_sees_a_lazy_import_and_an_upward_one(tmp_path):
    """The walk itself: a function-level import is lazy, a TYPE_CHECKING one is not counted."""
    module = PACKAGE / "storage" / "_layer_probe.py"
    assert not module.exists()
    try:
        module.write_text(
            "from typing import TYPE_CHECKING\n"
            "from marketflow_assets.assets import raw\n"
            "if TYPE_CHECKING:\n"
            "    from marketflow_assets.checks import framework\n"
            "def f():\n"
            "    from marketflow_assets import definitions\n"
        )
        found = {(i.target, i.lazy) for i in _imports(module)}
    finally:
        module.unlink()
    assert found == {
        ("marketflow_assets.assets.raw", False),
        ("marketflow_assets.definitions", True),
    }
    assert _layer_of("assets") > _layer_of("storage")
