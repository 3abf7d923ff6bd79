"""dbooth.export's lazy public API: every advertised name resolves, and nothing else does."""

from __future__ import annotations

import pytest

import dbooth.export as export


def test_every_public_name_resolves():
    assert set(export.__all__) == {"FORMATS", *export._LAZY}
    for name in export.__all__:
        assert getattr(export, name) is not None, name
    assert export.export_run.__module__ == "dbooth.export.run_export"


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        export.nope  # noqa: B018
