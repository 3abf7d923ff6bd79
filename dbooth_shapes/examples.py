"""Example DreamBooth subjects: objects of a known class with a look pretraining never showed.

Pretraining objects are solid-coloured, so each subject's pattern (checks, stripes, dots,
two-tone split) is new to the model and only DreamBooth can teach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dbooth_shapes.world import (COLOURS, CONTEXTS, IMAGE_SIZE, PATTERNS, Scene, object_coverage, random_placement,
                                  random_scene, render)
from dbooth.workspace.prompts import caption_file


@dataclass(frozen=True)
class Subject:
    """A patterned object; ``class_noun`` is the shape, used in "a photo of sks star"."""

    name: str
    class_noun: str
    pattern: str
    colour: str
    colour2: str
    description: str

    def scene(self, rng: np.random.Generator | int | None = None, context: str | None = None) -> Scene:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        ctx = context or str(rng.choice(CONTEXTS))
        return Scene(shape=self.class_noun, colour=self.colour, context=ctx, pattern=self.pattern,
                     colour2=self.colour2, **random_placement(rng))


EXAMPLES: dict[str, Subject] = {
    s.name: s
    for s in (
        Subject("checkered_star", "star", "checkered", "red", "white", "a red and white checkered star"),
        Subject("striped_heart", "heart", "striped", "blue", "yellow", "a heart with blue and yellow stripes"),
        Subject("polka_circle", "circle", "polka", "purple", "yellow", "a purple circle with yellow polka dots"),
        Subject("split_square", "square", "split", "orange", "green", "a square split into orange and green halves"),
    )
}

# The instance photos sit in these contexts; evaluation prompts can then ask for the others.
_PHOTO_CONTEXTS = ("on top of a wooden floor", "on top of pink fabric", "on a cobblestone street",
                   "in the snow", "on the beach")


def is_example_look(scene: Scene) -> bool:
    """Whether a scene shows an example subject's look: its shape and pattern in its two colours,
    either way round."""
    return any((scene.shape, scene.pattern) == (s.class_noun, s.pattern)
               and {scene.colour, scene.colour2} == {s.colour, s.colour2} for s in EXAMPLES.values())


def lookalike_scene(rng: np.random.Generator) -> Scene:
    """A random patterned object in two different colours that is no example subject's look, so a
    model pretrained on such objects learns to draw patterns without ever seeing the subjects."""
    while True:
        base = random_scene(rng)
        colour2 = str(rng.choice([c for c in COLOURS if c != base.colour]))
        scene = Scene(**{**base.__dict__, "pattern": str(rng.choice(PATTERNS[1:])), "colour2": colour2})
        if not is_example_look(scene):
            return scene


def list_examples() -> list[str]:
    return sorted(EXAMPLES)


def get_example(name: str) -> Subject:
    from dbooth.util.errors import DboothError

    if name not in EXAMPLES:
        raise DboothError(f"unknown example subject {name!r}; available: {', '.join(list_examples())}")
    return EXAMPLES[name]


def example_scenes(name: str, count: int = 5) -> list[Scene]:
    """The instance photos' scenes: varied position, size and context, same every call."""
    subject = get_example(name)
    rng = np.random.default_rng(sorted(EXAMPLES).index(name) + 1000)
    return [subject.scene(rng, context=_PHOTO_CONTEXTS[i % len(_PHOTO_CONTEXTS)]) for i in range(count)]


def write_example_images(name: str, folder: str | Path, count: int = 5, size: int = IMAGE_SIZE) -> list[Path]:
    """Write ``count`` (4-5) instance photos of an example subject as PNGs; returns their paths.

    ``size`` is the photos' side: the built-in model's 64 by default; 256 gives photos that also
    serve as stage-(b) targets for ``builtin:shapes-x4`` (same scenes, finer detail).

    Each photo gets a caption file beside it naming its scene ("a photo of a {identifier} {class}
    on the beach"), used when the manifest says ``instance_captions: files``."""
    if not 1 <= count <= 20:
        raise ValueError("count must be between 1 and 20")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(example_scenes(name, count)):
        path = folder / f"{name}_{i:02d}.png"
        render(scene, size).save(path)
        caption_file(path).write_text(f"a photo of a {{identifier}} {{class}} {scene.context}\n")
        paths.append(path)
    return paths


def subject_mask(scene: Scene, size: int, margin: int | None = None):
    """The object's area as a loss mask (``NAME.mask.png``: 255 = subject): its coverage, outline included,
    widened by ``margin`` pixels (default size/16) so the edge against the scene is learned too."""
    from PIL import Image, ImageFilter

    coverage, _ = object_coverage(scene, size)
    mask = Image.fromarray((np.clip(coverage, 0, 1) * 255).round().astype(np.uint8), "L")
    margin = max(1, size // 16) if margin is None else margin
    return mask.filter(ImageFilter.MaxFilter(2 * margin + 1)) if margin > 0 else mask


def write_example_masks(name: str, folder: str | Path, count: int = 5, size: int = IMAGE_SIZE) -> list[Path]:
    """Beside each photo ``write_example_images`` wrote: its subject mask (``NAME.mask.png``), for masked loss."""
    from dbooth.util.images import mask_file

    folder = Path(folder)
    paths = []
    for i, scene in enumerate(example_scenes(name, count)):
        path = mask_file(folder / f"{name}_{i:02d}.png")
        subject_mask(scene, size).save(path)
        paths.append(path)
    return paths
