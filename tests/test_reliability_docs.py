"""docs/reliability.md names the test that keeps each row of its hostile-tester tables: every one must exist."""

import ast
import re

from helpers import ROOT


def test_every_test_the_reliability_page_names_exists():
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = text[text.index("## What a hostile tester tried"):]
    named, module = [], None
    for cell in re.findall(r"`([a-z_]+\.py(?:::[a-z0-9_]+)?|test_[a-z0-9_]+)`", section):
        if "::" in cell:
            module, cell = cell.split("::")
        elif cell.endswith(".py"):
            continue
        named.append((module, cell))
    assert len(named) > 30
    for module, name in named:
        tree = ast.parse((ROOT / "tests" / module).read_text(encoding="utf-8"))
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"docs/reliability.md names {module}::{name}, which does not exist"
