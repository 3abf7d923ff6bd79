"""Prompt templates: ``{identifier}`` and ``{class}`` placeholders, nothing else."""

from __future__ import annotations

import re

from dbooth.errors import DboothError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
KNOWN = ("identifier", "class")


def format_prompt(template: str, identifier: str, class_noun: str, *, where: str = "prompt") -> str:
    """Fill a prompt template; unknown placeholders are an error, not silently kept."""
    for name in _PLACEHOLDER.findall(template):
        if name not in KNOWN:
            raise DboothError(
                f"{where}: unknown placeholder {{{name}}} in {template!r}; use {{identifier}} or {{class}}"
            )
    values = {"identifier": identifier, "class": class_noun}
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return " ".join(text.split())


def instance_prompt(manifest) -> str:
    return format_prompt(manifest.instance_prompt, manifest.identifier, manifest.class_noun, where="instance_prompt")


def class_prompt(manifest) -> str:
    return format_prompt(manifest.class_prompt, manifest.identifier, manifest.class_noun, where="class_prompt")
