"""Prompt templates: ``{identifier}`` and ``{class}`` placeholders, nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from dbooth.util.errors import DboothError

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


def caption_file(image: Path) -> Path:
    """Where a photo's own caption lives: ``NAME.txt`` beside ``NAME.png`` (kohya's convention)."""
    return Path(image).with_suffix(".txt")


def instance_captions(manifest, images: list[Path]) -> list[str]:
    """One caption per instance photo: ``instance_prompt`` for all of them, or with
    ``instance_captions: files`` each photo's ``NAME.txt`` (placeholders filled). Every problem
    with the files is found before training starts and reported in one error."""
    if manifest.instance_captions == "prompt":
        return [instance_prompt(manifest)] * len(images)
    missing = [caption_file(p).name for p in images if not caption_file(p).is_file()]
    if missing:
        folder = Path(images[0]).parent
        raise DboothError(
            f"instance_captions is 'files' but {len(missing)} photo(s) in {folder} have no caption file: "
            f"{', '.join(missing)}; write one line of text in each, or set instance_captions: prompt"
        )
    captions, lacking = [], []
    for image in images:
        path = caption_file(image)
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DboothError(f"caption file {path} cannot be read ({exc}); save it as UTF-8 text") from None
        text = format_prompt(raw, manifest.identifier, manifest.class_noun, where=f"caption file {path}")
        if manifest.identifier not in text.split():
            lacking.append(path.name)
        captions.append(text)
    if lacking:
        raise DboothError(
            f"caption files without the identifier {manifest.identifier!r}: {', '.join(lacking)}; "
            "put {identifier} (or the token itself) in each, so it learns your subject"
        )
    return captions
