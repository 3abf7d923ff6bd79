"""The tree reads as the architecture: no import cycle, the core never imports the toy world, one name per file,
and functions that fit on a screen. Each check runs on a planted defect first, to show it can fail."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from function_lengths import function_lengths
from import_graph import all_imports, cycles, import_graph

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "dbooth"
TOY = ROOT / "dbooth_shapes"
TOOLS = ROOT / "tools"
OUTSIDE_THE_CORE = ("dbooth_shapes", "tools", "tests")

TRAINING_LIMIT = 60  # lines per function in dbooth/training/: the loop reads as named steps
PACKAGE_LIMIT = 80
# Longer on purpose, each with its reason:
EXCEPTIONS = {
    # a Typer verb declares one typer.Option per setting it can override; its body is a dozen lines
    "dbooth/cli/app.py:train": "one typer.Option per training setting",
}


def core_violations(root: Path) -> list[str]:
    return sorted(f"{module} imports {name}" for module, names in all_imports(root).items() for name in names
                  if name.split(".")[0] in OUTSIDE_THE_CORE)


def too_long(root: Path) -> dict[str, int]:
    found = {}
    for name, length in function_lengths(root).items():
        limit = TRAINING_LIMIT if name.startswith("dbooth/training/") else PACKAGE_LIMIT
        if length > limit and name not in EXCEPTIONS:
            found[name] = length
    return found


@pytest.fixture
def planted(tmp_path):
    """A copy of the core to plant defects in."""
    copy = tmp_path / "dbooth"
    shutil.copytree(CORE, copy, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    return copy


def test_the_core_has_no_import_cycle():
    assert cycles(import_graph(CORE)) == []


def test_a_planted_cycle_is_found(planted):
    errors = planted / "util" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _planted():\n    from dbooth import api  # noqa\n")
    assert any({"dbooth.api", "dbooth.util.errors"} <= set(c) for c in cycles(import_graph(planted)))


def test_the_core_never_imports_the_toy_world_or_the_tools():
    assert core_violations(CORE) == []
    assert "dbooth_shapes" in {n.split(".")[0] for names in all_imports(TOY).values() for n in names}  # it is used


def test_a_planted_toy_import_is_found(planted):
    source = planted / "families" / "source.py"
    source.write_text(source.read_text() + "\n\ndef _planted():\n    from dbooth_shapes import world  # noqa\n")
    assert core_violations(planted) == ["dbooth.families.source imports dbooth_shapes"]


def test_no_file_name_is_used_twice():
    names = Counter(p.name for root in (CORE, TOY, TOOLS) for p in root.rglob("*.py") if p.name != "__init__.py")
    assert [n for n, count in names.items() if count > 1] == []


@pytest.mark.parametrize("root", [CORE, TOY], ids=["dbooth", "dbooth_shapes"])
def test_functions_fit_on_a_screen(root):
    assert too_long(root) == {}


def test_a_planted_long_function_is_found(planted):
    body = "".join(f"    x{i} = {i}\n" for i in range(TRAINING_LIMIT))
    (planted / "training" / "planted.py").write_text(f"def long_step():\n{body}\n\ndef short_step():\n{body[:-11]}")
    found = too_long(planted)
    assert found["dbooth/training/planted.py:long_step"] == TRAINING_LIMIT + 1
    assert "dbooth/training/planted.py:short_step" not in found


def test_every_exception_is_still_needed():
    lengths = function_lengths(CORE)
    assert all(lengths.get(name, 0) > PACKAGE_LIMIT for name in EXCEPTIONS), lengths


def test_the_old_api_batch_still_answers_with_a_deprecation():
    from dbooth import api
    from dbooth.batch.runner import run_workspaces

    with pytest.warns(DeprecationWarning, match="dbooth.batch.run_workspaces"):
        assert api.batch is run_workspaces
