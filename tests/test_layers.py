"""The floors of the package hold: lower floors never import higher ones, and the faces (cli, experiments, web) reach
an index only through ``Index`` and the names ``cbir.index`` hands on. docs/architecture.md draws the same map.

The rules are checked on the source (every import statement, at module level or inside a function), so a lazy
import cannot slip past them; the checker is run on a small planted tree as well, to show that it can fail.
"""

import ast
from pathlib import Path

import pytest

import cbir.index

PACKAGE = Path(cbir.__file__).resolve().parent

# Each floor and the floors it may import (itself always allowed). "index:public" means the names cbir.index
# hands on, imported from the package itself; "index" means its modules too.
FLOORS = {
    "errors": set(),
    "core": {"errors"},
    "store": {"errors"},
    "settings": {"errors", "core"},
    "io": {"errors"},
    "viz": {"errors", "core"},
    "index": {"errors", "core", "store", "settings", "io"},
    "experiments": {"errors", "core", "settings", "io", "index:public"},
    "web": {"errors", "core", "settings", "io", "viz", "index:public"},
    "cli": {"package", "errors", "core", "settings", "io", "viz", "experiments", "web", "index:public"},
    "package": {"errors", "core", "settings", "io", "cli"},
}
# What only the index may touch on an Index, an engine or a store.
PRIVATE_ATTRIBUTES = {"engine", "store", "backend", "_engine", "_store", "_loaded", "_tuning"}


def floor_of(module):
    """The floor of a dotted module name inside the package (``cbir.core.qfd`` -> ``core``)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "package"
    head = parts[1]
    if head in ("imageio", "files", "limits"):
        return "io"
    return head


def module_name(path, root):
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path, module):
    """``(line, imported module, names)`` of every import of the package in one source file, relative ones
    resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    top = module.split(".")[0]
    return [(line, target, names) for line, target, names in found if target.split(".")[0] == top], tree


def violations(root):
    """Every broken rule in the package at ``root``: a list of readable strings (empty when the floors hold)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        floor = floor_of(module)
        allowed = FLOORS.get(floor)
        if allowed is None:
            problems.append(f"{module}: in no floor; add it to a floor of tests/test_layers.py and the docs")
            continue
        found, tree = imports_of(path, module)
        for line, target, names in found:
            target_floor = floor_of(target)
            if target_floor == floor and floor != "package":
                continue
            if target_floor == "package":
                # "from cbir import x": x is a module or subpackage (its floor counts) or a name of the package
                targets = {floor_of(f"{target}.{name}") if (root / name).is_dir() or (root / f"{name}.py").exists()
                           else "package" for name in names} or {"package"}
                if targets <= allowed | {floor}:
                    continue
                problems.append(f"{module}:{line} imports {target} ({', '.join(names)}) from floor {floor}")
                continue
            if target_floor == "index" and "index" not in allowed and "index:public" in allowed:
                if target == f"{root.name}.index":
                    continue
                problems.append(f"{module}:{line} imports {target}: outside cbir/index/, use what cbir.index hands "
                                "on (Index and friends)")
                continue
            if target_floor not in allowed:
                problems.append(f"{module}:{line} imports {target} (floor {target_floor}) from floor {floor}")
        if floor != "index":
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                    problems.append(f"{module}:{node.lineno} touches .{node.attr}: only cbir/index/ may")
    return problems


def test_the_floors_hold_in_the_package():
    assert violations(PACKAGE) == []


def test_the_faces_use_only_what_cbir_index_hands_on():
    names = set(cbir.index.__all__)
    assert {"Index", "Result", "IndexReport", "Tuning"} <= names
    for path in [*PACKAGE.joinpath("cli").rglob("*.py"), *PACKAGE.joinpath("experiments").rglob("*.py"),
                 *PACKAGE.joinpath("web").rglob("*.py")]:
        found, _ = imports_of(path, module_name(path, PACKAGE))
        for line, target, imported in found:
            if target == "cbir.index":
                assert set(imported) <= names, (path, line, imported)


@pytest.mark.parametrize("planted, expected", [
    ("core/colour.py", "core.colour:1 imports fake.store.database (floor store) from floor core"),
    ("viz/page.py", "viz.page:1 imports fake.store.database (floor store) from floor viz"),
    ("store/database.py", None),  # the store importing itself is fine
])
def test_the_checker_fails_on_a_wrong_import(tmp_path, planted, expected):
    root = tmp_path / "fake"
    for module in ("__init__.py", "errors.py", "core/__init__.py", "core/colour.py", "store/__init__.py",
                   "store/database.py", "viz/__init__.py", "viz/page.py"):
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text("")
    (root / planted).write_text("from fake.store.database import Store\n")
    found = violations(root)
    assert found == ([f"fake.{expected}"] if expected else []), found


def test_the_checker_fails_on_a_face_reaching_into_the_engine(tmp_path):
    root = tmp_path / "fake"
    (root / "cli").mkdir(parents=True)
    (root / "index").mkdir()
    for module in ("__init__.py", "cli/__init__.py", "index/__init__.py", "index/engine.py"):
        (root / module).write_text("")
    (root / "cli" / "query.py").write_text("from ..index.engine import load_engine\n\n"
                                          "def rows(index):\n    return index.engine.ids\n")
    assert violations(root) == [
        "fake.cli.query:1 imports fake.index.engine: outside cbir/index/, use what cbir.index hands on (Index and "
        "friends)",
        "fake.cli.query:4 touches .engine: only cbir/index/ may",
    ]
