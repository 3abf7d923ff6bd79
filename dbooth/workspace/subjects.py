"""The subjects a workspace trains into one model: the manifest's own, then each of ``subjects:``.

Each subject is seen through a copy of the manifest with its identifier, class noun and prompts at the
top level, so captions, class prompts and class-image recipes are built exactly as for a single subject.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from dbooth.workspace.schema import Manifest
from dbooth.workspace.folder import Workspace


@dataclass(frozen=True)
class Subject:
    name: str | None  # None: the manifest's top-level subject
    manifest: Manifest  # the manifest as this subject sees it
    instance_dir: Path
    class_dir: Path

    @property
    def identifier(self) -> str:
        return self.manifest.identifier

    @property
    def class_noun(self) -> str:
        return self.manifest.class_noun


def class_dir(ws: Workspace, manifest: Manifest, class_noun: str) -> Path:
    """``class/`` for the top-level subject's class (as with one subject), ``class/NOUN/`` for any other."""
    if class_noun == manifest.class_noun:
        return ws.class_dir
    return ws.class_dir / re.sub(r"[^\w-]+", "_", class_noun.strip())


def subjects(ws: Workspace, manifest: Manifest) -> list[Subject]:
    """Every subject, the top-level one first; one subject when ``subjects:`` is empty."""
    first = dataclasses.replace(manifest, subjects=[])
    found = [Subject(None, first, ws.instance_dir, ws.class_dir)]
    for s in manifest.subjects:
        view = dataclasses.replace(
            first, identifier=s.identifier, class_noun=s.class_noun,
            instance_prompt=s.instance_prompt if s.instance_prompt is not None else manifest.instance_prompt,
            class_prompt=s.class_prompt if s.class_prompt is not None else manifest.class_prompt,
        )
        found.append(Subject(s.name, view, ws.instance_dir / s.name, class_dir(ws, manifest, s.class_noun)))
    return found


def classes(ws: Workspace, manifest: Manifest) -> list[Subject]:
    """One subject per class folder (the first of its class): whose class prompt and recipe that folder holds."""
    seen: dict[Path, Subject] = {}
    for s in subjects(ws, manifest):
        seen.setdefault(s.class_dir, s)
    return list(seen.values())
