"""The package's layers: imports go one way, and no module reaches into another's
private attributes. Read from the source with ast, imports inside functions too."""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "adjoint"
MODULES = {p.stem: ast.parse(p.read_text()) for p in PACKAGE.glob("*.py")}


def _imports(tree: ast.Module) -> set[str]:
    """The package modules a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import a, b
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adjoint."):
            found.add(node.module.split(".")[1])
    return found & set(MODULES)


def test_no_import_cycle():
    deps = nx.DiGraph()
    for name, tree in MODULES.items():
        deps.add_node(name)
        deps.add_edges_from((name, other) for other in _imports(tree) if other != name)
    cycles = list(nx.simple_cycles(deps))
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_and_the_errors_sit_at_the_bottom():
    below = {"errors", "symbols", "expressions", "parsing"}
    assert _imports(MODULES["graph"]) <= below
    assert _imports(MODULES["errors"]) == set()


def _private_reaches(tree: ast.Module) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls`` (sympy's printer protocol,
    ``printer._print`` and friends, is public to printers), and imports of ``_names``
    from other modules."""
    allowed_on = {"self", "cls", "printer"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in allowed_on:
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super":
                continue
            found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found += [f"imports {a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_reaches_into_another_modules_private_attributes():
    reaches = {name: _private_reaches(tree) for name, tree in MODULES.items()}
    assert {name: r for name, r in reaches.items() if r} == {}


def test_grading_sits_below_the_code_generator():
    """grading imported checks, and with it the code generator, for one function."""
    deps = nx.DiGraph()
    for name, tree in MODULES.items():
        deps.add_edges_from((name, other) for other in _imports(tree) if other != name)
    assert "codegen" not in nx.descendants(deps, "grading")
    assert "checks" not in nx.descendants(deps, "grading")


def test_the_checkers_sit_below_the_code_generator():
    """A checker's reference (the function, for differences) is the forward sweep, not
    the generated program: a code generator's mistake cannot agree with itself."""
    deps = nx.DiGraph()
    for name, tree in MODULES.items():
        deps.add_edges_from((name, other) for other in _imports(tree) if other != name)
    assert "codegen" not in nx.descendants(deps, "checks")
