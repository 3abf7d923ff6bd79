"""Prompt templates: {identifier} and {class}, whitespace tidied, anything else refused."""

from __future__ import annotations

import pytest

from dbooth.util.errors import DboothError
from dbooth.workspace.prompts import format_prompt


@pytest.mark.parametrize(
    "template,expected",
    [
        ("a photo of {identifier} {class}", "a photo of sks dog"),
        ("{class}", "dog"),
        ("{identifier} {identifier} {class}", "sks sks dog"),
        ("a {class} on the beach", "a dog on the beach"),
        ("no placeholders at all", "no placeholders at all"),
    ],
)
def test_placeholders_are_filled(template, expected):
    assert format_prompt(template, "sks", "dog") == expected


def test_whitespace_is_collapsed():
    assert format_prompt("  a   photo\tof\n {identifier}  {class}  ", "sks", "dog") == "a photo of sks dog"


def test_empty_values_leave_no_double_spaces():
    assert format_prompt("a photo of {identifier} {class}", "", "dog") == "a photo of dog"


@pytest.mark.parametrize("name", ["subject", "Class", "", "identifier "])
def test_unknown_placeholder_is_an_error_naming_it(name):
    template = "a photo of {%s} {class}" % name
    with pytest.raises(DboothError) as exc:
        format_prompt(template, "sks", "dog", where="class_prompt")
    message = str(exc.value)
    assert "{%s}" % name in message
    assert message.startswith("class_prompt:")
    assert "{identifier}" in message and "{class}" in message  # says what is allowed
