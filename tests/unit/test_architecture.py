"""The shape of the code base (docs/architecture.md): no import cycles, nothing below the CLI
imports the public facade ``pgshift.api``, the CLI imports nothing else of pgshift (but errors,
config and the version), every module sits in a declared layer and imports only
its own layer or lower ones, and the architecture page names only modules that exist.

The import graph is read from the source with ``ast``: module-level, function-level and
``TYPE_CHECKING`` imports all count, so an import moved into a function to dodge a cycle is still
a cycle here.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"

# Bottom to top; a module may import its own layer and the layers before it. A module belongs to
# the layer of its longest listed prefix (the root package ``pgshift`` itself is matched exactly).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("pgshift", "pgshift.errors", "pgshift.exit_codes", "pgshift.units")),
    # ops.model is the data of an .ops.yaml file, which the native reader loads like any migration file;
    # its operations (ops.operations) plan through an interface and need only the catalog facts' shapes
    # and the SQL text builders (ops.facts, ops.sync, ops.names).
    ("migrations", ("pgshift.migrations", "pgshift.discovery", "pgshift.ops.model", "pgshift.ops.operations",
                    "pgshift.ops.facts", "pgshift.ops.sync", "pgshift.ops.names")),
    ("config", ("pgshift.config",)),
    # The rewrite guard is armed on every deploy session (pgshift.db.session); it needs only the server.
    # ops.ledger reads the ops_state table beside the ledger (the lint gate's model and status need it).
    ("db", ("pgshift.db", "pgshift.embedded", "pgshift.ops.guard", "pgshift.ops.ledger")),
    ("lint", ("pgshift.lint",)),
    # The watcher probes the application's health the way check and restore do (pgshift.safety.hooks).
    ("safety", ("pgshift.safety", "pgshift.watch")),
    ("runner", ("pgshift.runner",)),
    ("ops", ("pgshift.ops",)),
    ("deploy", ("pgshift.deploy",)),
    # Whole-deploy tools built on the workflows: `pgshift rehearse`, `pgshift check`, `pgshift demo`, `pgshift
    # deploy` (rollout) and the fleet rollout (`--targets`) that runs the workflows and check per target.
    ("tools", ("pgshift.rehearsal", "pgshift.safety.checks", "pgshift.demo", "pgshift.demo_migrations",
               "pgshift.rollout", "pgshift.fleet")),
    ("api", ("pgshift.api",)),
    ("entry", ("pgshift.cli", "pgshift.docs", "pgshift.__main__", "pgshift.testing")),
]

# Imports that cross the layers upwards on purpose: (importer, imported) -> why. Keep it empty.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

FACADE = "pgshift.api"
FACADE_USERS = ("pgshift.cli", "pgshift.testing")
# All the CLI may import of pgshift: it parses flags, calls the facade and renders its reports.
CLI = "pgshift.cli"
CLI_IMPORTS = (FACADE, "pgshift.errors", "pgshift.config", "pgshift")  # pgshift: __version__


@dataclass
class Graph:
    modules: dict[str, Path]
    # importer -> imported -> line numbers
    edges: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    optional_imports: list[str] = field(default_factory=list)  # `except ImportError` around pgshift's own


def _module_name(path: Path, src: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or for ``pkg.mod.attr`` the longest existing prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = [handler.type] if not isinstance(handler.type, ast.Tuple) else list(handler.type.elts)
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def build_graph(src: Path = SRC) -> Graph:
    modules = {}
    packages = set()
    for path in sorted((src / "pgshift").rglob("*.py")):
        name, is_package = _module_name(path, src)
        modules[name] = path
        if is_package:
            packages.add(name)
    graph = Graph(modules)
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = importer if importer in packages else importer.rpartition(".")[0]
        targets: dict[str, list[int]] = {}
        for node in ast.walk(tree):
            found: list[str] = []
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
                found = [f"{origin}.{alias.name}" for alias in node.names]
            for name in found:
                if name == "pgshift" or name.startswith("pgshift."):
                    target = _resolve(name, modules)
                    if target is not None and target != importer:
                        targets.setdefault(target, []).append(line)
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
                for inner in node.body:
                    for sub in ast.walk(inner):
                        if isinstance(sub, (ast.Import, ast.ImportFrom)) and "pgshift" in ast.unparse(sub):
                            graph.optional_imports.append(f"{importer}:{sub.lineno}: {ast.unparse(sub)}")
        graph.edges[importer] = targets
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for number, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix if prefix == "pgshift" else module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), number)
    return None if best is None else best[1]


def cycle_problems(graph: Graph) -> list[str]:
    problems = []
    for component in cycles(graph):
        members = set(component)
        links = [f"{a} -> {b} (line {', '.join(map(str, graph.edges[a][b]))})"
                 for a in component for b in sorted(graph.edges[a]) if b in members]
        problems.append("import cycle between " + ", ".join(component) + ": " + "; ".join(links))
    return problems


def facade_problems(graph: Graph) -> list[str]:
    return [f"{importer} imports {FACADE} (line {', '.join(map(str, targets[FACADE]))}); import the layer "
            "below it instead (pgshift.deploy, pgshift.db.session)"
            for importer, targets in sorted(graph.edges.items())
            if FACADE in targets and not importer.startswith(FACADE_USERS)]


def cli_problems(graph: Graph) -> list[str]:
    """A CLI module importing pgshift beyond the facade: the logic it reaches for belongs below
    pgshift.api, re-exported there."""
    return [f"{importer} imports {target} (line {', '.join(map(str, lines))}); the CLI imports only "
            f"{', '.join(CLI_IMPORTS[:3])} and pgshift.__version__: re-export what it needs in {FACADE}"
            for importer, targets in sorted(graph.edges.items()) if importer == CLI or importer.startswith(CLI + ".")
            for target, lines in sorted(targets.items())
            if target not in CLI_IMPORTS and target != CLI and not target.startswith(CLI + ".")]


def layer_problems(graph: Graph) -> list[str]:
    problems = [f"{module} is in no layer; add it to LAYERS and docs/architecture.md"
                for module in sorted(graph.modules) if layer_of(module) is None]
    for importer, targets in sorted(graph.edges.items()):
        own = layer_of(importer)
        for target, lines in sorted(targets.items()):
            theirs = layer_of(target)
            if own is None or theirs is None or theirs <= own or (importer, target) in ALLOWED_UPWARD:
                continue
            problems.append(f"{importer} (layer {LAYERS[own][0]}) imports {target} (layer {LAYERS[theirs][0]}, "
                            f"higher) at line {', '.join(map(str, lines))}")
    return problems


def test_no_import_cycles() -> None:
    assert cycle_problems(build_graph()) == []


def test_only_the_cli_imports_the_facade() -> None:
    assert facade_problems(build_graph()) == []


def test_the_cli_imports_only_the_facade_errors_and_config() -> None:
    assert cli_problems(build_graph()) == []


def test_the_facade_exports_each_name_once_for_runtime_and_type_checkers() -> None:
    """api.py loads its names lazily from _EXPORTS and imports them under TYPE_CHECKING for mypy:
    the two lists and __all__ must agree, and every name must resolve."""
    from pgshift import api

    tree = ast.parse((SRC / "pgshift" / "api.py").read_text())
    typed = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.If)
             and ast.unparse(node.test) == "TYPE_CHECKING" for sub in node.body if isinstance(sub, ast.ImportFrom)
             for alias in sub.names}
    assert typed == set(api._EXPORTS) == set(api.__all__)
    for name, (module, original) in api._EXPORTS.items():
        assert ast.unparse(tree).count(f"from {module} import") >= 1, name
        assert getattr(api, name) is getattr(importlib.import_module(module), original)


def test_lint_through_the_facade_does_not_load_the_database_driver(tmp_path: Path) -> None:
    """Names load on first use: `pgshift lint` pays for neither psycopg nor the workflows."""
    (tmp_path / "1.sql").write_text("CREATE TABLE t (id int);\n")
    code = ("import sys; from pgshift.cli import lint_cmds; from pgshift import api; from pgshift.config import "
            f"Settings; api.lint(Settings(), [{str(tmp_path / '1.sql')!r}]); "
            "print(sorted(m for m in sys.modules if m == 'psycopg' or m == 'pgshift.deploy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_module_imports_only_its_layer_or_lower() -> None:
    assert layer_problems(build_graph()) == []


def test_pgshift_never_treats_its_own_modules_as_optional() -> None:
    assert build_graph().optional_imports == []


def test_the_allow_list_holds_only_real_imports() -> None:
    graph = build_graph()
    stale = [pair for pair in ALLOWED_UPWARD if pair[1] not in graph.edges.get(pair[0], {})]
    assert stale == [], "remove these from ALLOWED_UPWARD"


def test_the_graph_sees_function_level_relative_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pgshift"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("X = 1\n")
    (package / "rel.py").write_text("from . import low\n")
    (package / "lazy.py").write_text("def f() -> None:\n    from pgshift.low import X\n")
    (package / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pgshift.low\n")
    edges = build_graph(tmp_path).edges
    assert edges["pgshift.rel"] == {"pgshift.low": [1]}
    assert edges["pgshift.lazy"] == {"pgshift.low": [2]}
    assert edges["pgshift.typed"] == {"pgshift.low": [3]}


def test_a_cycle_and_an_upward_import_are_reported(tmp_path: Path) -> None:
    """The checks themselves, on a tiny made-up package: they can fail."""
    package = tmp_path / "pgshift"
    (package / "db").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "db" / "__init__.py").write_text("")
    (package / "db" / "a.py").write_text("def f() -> None:\n    from pgshift.db import b\n")
    (package / "db" / "b.py").write_text("from pgshift.db.a import f\nfrom pgshift import api\n")
    (package / "api.py").write_text("")
    (package / "db" / "c.py").write_text("try:\n    from pgshift.db import a\nexcept ImportError:\n    a = None\n")
    (package / "cli").mkdir()
    (package / "cli" / "__init__.py").write_text("")
    (package / "cli" / "x.py").write_text("from pgshift import api\nfrom pgshift.cli import __init__\n"
                                          "def f() -> None:\n    from pgshift.db.a import f\n")
    graph = build_graph(tmp_path)
    assert cycle_problems(graph) == ["import cycle between pgshift.db.a, pgshift.db.b: pgshift.db.a -> "
                                     "pgshift.db.b (line 2); pgshift.db.b -> pgshift.db.a (line 1)"]
    assert [p.split(" (")[0] for p in facade_problems(graph)] == ["pgshift.db.b imports pgshift.api"]
    assert layer_problems(graph) == ["pgshift.db.b (layer db) imports pgshift.api (layer api, higher) at line 2"]
    assert graph.optional_imports == ["pgshift.db.c:2: from pgshift.db import a"]
    assert [p.split(" (")[0] for p in cli_problems(graph)] == ["pgshift.cli.x imports pgshift.db.a"]


# -- docs/architecture.md ----------------------------------------------------------------------
_DOTTED = re.compile(r"\bpgshift(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
NOT_MODULES = {"pgshift.toml"}  # a file name


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign,)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    names.update(_exported(path))  # pgshift.api's names load lazily: it lists them in __all__
    return names


def _exported(path: Path) -> list[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [str(e.value) for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)]
    return []


def doc_problems(text: str, graph: Graph) -> list[str]:
    problems = []
    for name in sorted(set(_DOTTED.findall(text)) - NOT_MODULES):
        module = _resolve(name, graph.modules)
        rest = name[len(module) + 1:].split(".") if module and name != module else []
        if module is None or (rest and rest[0] not in _top_level_names(graph.modules[module])):
            problems.append(f"docs/architecture.md names {name}, which does not exist")
    for path in sorted(set(re.findall(r"`((?:src|bench|docs|tests)/[^`*<\s]+)`", text))):
        if not (ROOT / path).exists():
            problems.append(f"docs/architecture.md names {path}, which does not exist")
    top_level = sorted(m for m in graph.modules if m.count(".") == 1)
    problems += [f"docs/architecture.md does not mention {m}" for m in top_level if m not in text]
    return problems


def test_the_architecture_page_names_only_what_exists_and_every_package() -> None:
    assert doc_problems(DOC.read_text(), build_graph()) == []


def test_the_readme_links_the_architecture_page() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def test_the_architecture_page_check_can_fail() -> None:
    graph = build_graph()
    problems = doc_problems("`pgshift.nothing_here`, pgshift.api.no_such_function, `src/pgshift/gone.py`", graph)
    assert "docs/architecture.md names pgshift.nothing_here, which does not exist" in problems
    assert "docs/architecture.md names pgshift.api.no_such_function, which does not exist" in problems
    assert "docs/architecture.md names src/pgshift/gone.py, which does not exist" in problems
    assert "docs/architecture.md does not mention pgshift.deploy" in problems


def test_the_architecture_page_lists_the_layers_in_order() -> None:
    text = DOC.read_text()
    positions = [text.find(f"**{name}**") for name, _prefixes in LAYERS]
    assert -1 not in positions, f"name every layer as **layer** in docs/architecture.md: {[n for n, _ in LAYERS]}"
    assert positions == sorted(positions, reverse=True), "list the layers top to bottom, as LAYERS does bottom up"
