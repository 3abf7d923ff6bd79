"""The prompts an evaluation samples: DreamBench's lists (shipped as data) or the manifest's validation prompts."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from dbooth.workspace.prompts import format_prompt

DREAMBENCH_FILE = Path(__file__).resolve().parent / "dreambench.json"
# DreamBench gives its live-subject list (outfits, hats) to the dogs and cats; other animals and people fit it too
LIVE_CLASSES = frozenset(
    "dog cat puppy kitten pet person man woman boy girl child baby horse bird rabbit bear".split()
)


@lru_cache(maxsize=1)
def dreambench_lists() -> dict[str, list[str]]:
    """``{"objects": [...25], "live_subjects": [...25]}`` with {identifier} and {class} placeholders."""
    data = json.loads(DREAMBENCH_FILE.read_text(encoding="utf-8"))
    return {"objects": data["objects"], "live_subjects": data["live_subjects"]}


def dreambench_kind(class_noun: str) -> str:
    """"live_subjects" for animals and people (the last word of the class noun decides), else "objects"."""
    words = class_noun.lower().split()
    word = words[-1] if words else ""
    live = word in LIVE_CLASSES or (word.endswith("s") and word[:-1] in LIVE_CLASSES)
    return "live_subjects" if live else "objects"


def eval_prompts(manifest, source: str | None = None) -> tuple[str, list[str]]:
    """(what the list is, the subject prompts filled in) for ``source`` (default: ``eval.prompts``)."""
    source = source or manifest.eval.prompts
    if source == "dreambench":
        kind = dreambench_kind(manifest.class_noun)
        templates, label = dreambench_lists()[kind], f"dreambench:{kind}"
    elif source == "validation":
        templates, label = manifest.train.validation_prompts, "validation"
    else:
        from dbooth.util.errors import DboothError

        raise DboothError(f"eval prompts {source!r}: expected dreambench or validation")
    if manifest.eval.num_prompts:
        templates = templates[: manifest.eval.num_prompts]
    return label, [format_prompt(t, manifest.identifier, manifest.class_noun) for t in templates]
