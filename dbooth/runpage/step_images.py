"""The validation images a run drew while training (``RUN/validation/step-N/``), as a grid: one row per
prompt (``pN-sSEED.png``) or, for an upscaler, per photo (``photoN-sSEED.png``), one column per step.

The rows' labels come from the images' own PNG records (the prompt they were drawn with), so the grid
says what was asked even after the manifest changed. Nothing is decoded but the PNG text chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dbooth.util.pngmeta import read_record

STEP_DIR = re.compile(r"step-(\d+)")
IMAGE = re.compile(r"(?P<row>[a-z]+)(?P<index>\d+)-s(?P<seed>\d+)\.png")
MAX_COLUMNS = 8  # more steps than this: evenly spaced ones, the first and the last always among them


@dataclass
class StepImages:
    steps: list[int]  # every step with images
    shown: list[int]  # the columns the page shows
    rows: list[tuple[str, dict[int, list[Path]]]]  # (label, step -> images in seed order)


def read_step_images(validation_dir: Path) -> StepImages | None:
    """The grid of ``validation_dir``; None when it holds no images."""
    cells: dict[tuple[str, int], dict[int, list[tuple[int, Path]]]] = {}
    steps = []
    for folder in sorted(validation_dir.iterdir()) if validation_dir.is_dir() else []:
        match = STEP_DIR.fullmatch(folder.name)
        if not (match and folder.is_dir()):
            continue
        step = int(match.group(1))
        for path in folder.glob("*.png"):
            found = IMAGE.fullmatch(path.name)
            key = (found["row"], int(found["index"])) if found else (path.stem, 0)
            seed = int(found["seed"]) if found else 0
            cells.setdefault(key, {}).setdefault(step, []).append((seed, path))
        if any(step in by_step for by_step in cells.values()):
            steps.append(step)
    if not steps:
        return None
    rows = [(_row_label(key, by_step), {s: [p for _, p in sorted(ims)] for s, ims in sorted(by_step.items())})
            for key, by_step in sorted(cells.items())]
    return StepImages(steps=steps, shown=spread(steps, MAX_COLUMNS), rows=rows)


def spread(steps: list[int], most: int) -> list[int]:
    """At most ``most`` of ``steps``, evenly spaced by position, the first and the last included."""
    if len(steps) <= most:
        return list(steps)
    picked = {round(i * (len(steps) - 1) / (most - 1)) for i in range(most)}
    return [steps[i] for i in sorted(picked)]


def _row_label(key: tuple[str, int], by_step: dict[int, list[tuple[int, Path]]]) -> str:
    """What the row's images were drawn from, read from the record of its first image."""
    first = min(by_step.items())[1][0][1]
    record = read_record(first) or {}
    if record.get("photo"):
        return f"photo {record['photo']}, shrunk and enlarged again"
    if record.get("prompt"):
        return str(record["prompt"])
    return f"{key[0]} {key[1]}"
