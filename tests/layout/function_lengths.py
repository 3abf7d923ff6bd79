"""Function lengths read from the source: every def (methods and nested functions included), in lines."""

from __future__ import annotations

import ast
from pathlib import Path


def function_lengths(root: Path) -> dict[str, int]:
    """``path:qualified.name`` -> lines from the ``def`` (decorators excluded) to its last line."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))

        def visit(node, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    found[f"{path.relative_to(root.parent).as_posix()}:{name}"] = child.end_lineno - child.lineno + 1
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(tree, "")
    return found
