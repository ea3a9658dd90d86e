"""The package's layers: imports go one way, floor by floor, and no module reaches
into another's private attributes. Read from the source with ast, imports inside
functions too."""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "adjoint"


def _name(path: Path) -> str:
    """``system.graph`` for adjoint/system/graph.py, ``api`` for adjoint/api.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


MODULES = {
    _name(p): ast.parse(p.read_text())
    for p in PACKAGE.rglob("*.py")
    if "__pycache__" not in p.parts
}
#: The floors, lowest first: a module imports from its own floor and those below.
FLOORS = ["core", "operations", "system", "programs coursework", "teaching", "top"]


ROOMS = {"core", "operations", "system", "programs", "coursework", "teaching"}


def _floor(module: str) -> int:
    head = module.split(".")[0]
    head = head if head in ROOMS else "top"
    return next(k for k, names in enumerate(FLOORS) if head in names.split())


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports, anywhere in it."""
    package = module.split(".")[:-1] if "." in module else []
    if module in ROOMS:  # a room's __init__
        package = [module]
    found = set()
    for node in ast.walk(MODULES[module]):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.level - 1 > len(package):
                continue
        elif (node.module or "").startswith("adjoint"):
            base = []
            node_module = node.module.split(".", 1)[1] if "." in node.module else ""
            candidates = [node_module] if node_module else []
            candidates += [".".join(filter(None, [node_module, a.name])) for a in node.names]
            found |= {c for c in candidates if c in MODULES}
            continue
        else:
            continue
        target = ".".join([*base, *(node.module.split(".") if node.module else [])])
        if node.module:
            found.add(target)
        found |= {".".join(filter(None, [target, a.name])) for a in node.names}
    return found & set(MODULES)


def _dependencies() -> nx.DiGraph:
    deps = nx.DiGraph()
    for name in MODULES:
        deps.add_node(name)
        deps.add_edges_from((name, other) for other in _imports(name) if other != name)
    return deps


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(_dependencies()))
    assert not cycles, f"import cycles: {cycles}"


def test_imports_go_down_the_floors():
    """core < operations < system < programs, coursework < teaching < the public face:
    a module imports nothing from a floor above its own."""
    upward = [
        f"{a} imports {b}"
        for a, b in _dependencies().edges
        if "." in a and _floor(b) > _floor(a) and b.split(".")[0] not in FLOORS[_floor(a)]
    ]
    assert not upward, upward


def test_every_module_has_a_floor():
    assert {m.split(".")[0] for m in MODULES if "." in m} == ROOMS
    top = {m for m in MODULES if "." not in m} - ROOMS
    assert top == {"__init__", "__main__", "api", "assignments", "cli", "examples", "functions"}


def test_the_graph_and_the_errors_sit_at_the_bottom():
    below = {"core.errors", "core.symbols", "core.expressions", "core.parsing"}
    assert _imports("system.graph") <= below
    assert _imports("core.errors") == set()


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
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            found += [f"imports {a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_reaches_into_another_modules_private_attributes():
    reaches = {name: _private_reaches(tree) for name, tree in MODULES.items()}
    assert {name: r for name, r in reaches.items() if r} == {}


def test_grading_sits_below_the_code_generator():
    """grading imported checks, and with it the code generator, for one function."""
    below = nx.descendants(_dependencies(), "coursework.grading")
    assert "programs.codegen" not in below
    assert "coursework.checks" not in below


def test_the_checkers_sit_below_the_code_generator():
    """A checker's reference (the function, for differences) is the forward sweep, not
    the generated program: a code generator's mistake cannot agree with itself."""
    assert "programs.codegen" not in nx.descendants(_dependencies(), "coursework.checks")


def test_the_layering_test_sees_imports():
    """The reader of imports finds what the modules import (it would pass vacuously
    if it found nothing)."""
    assert "core.errors" in _imports("system.graph")
    assert "system.lagrangian" in _imports("programs.codegen")
    assert "operations.functions" in _imports("functions")
    assert "coursework.checks" in _imports("api")


def test_readers_touch_conditions_never_partials_or_matrix_rules():
    """Code generation, checks, grading and teaching read the conditions and their
    contributions; the local partials and the matrix rules are the system's business
    (the conditions ask them), so a new kind of condition reaches every reader."""
    readers = [m for m in MODULES if m.split(".")[0] in {"programs", "coursework", "teaching"}]
    assert readers
    reaching = {
        m: sorted(_imports(m) & {"operations.partials", "operations.matrices"}) for m in readers
    }
    assert {m: r for m, r in reaching.items() if r} == {}
