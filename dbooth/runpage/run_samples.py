"""The samples ``dbooth sample`` drew from a run: ``WS/samples/LABEL/STAMP/`` where LABEL is the run's id,
``RUN@step-N`` for a checkpoint, and ``+UPSCALER`` when stage (b) enlarged them (``dbooth.api.sample``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dbooth.util.pngmeta import read_record

MAX_SETS = 6  # the newest; the rest stay in samples/


@dataclass
class SampleSet:
    folder: Path
    label: str  # the samples folder's name: which weights drew them
    prompt: str | None
    images: list[Path]
    grid: Path | None
    seeds: list[int]


def belongs_to(label: str, run_id: str) -> bool:
    """Whether a samples folder name is this run's: ``RUN``, ``RUN@step-N``, ``RUN+UP`` or ``RUN@step-N+UP``."""
    return label == run_id or label.startswith((run_id + "@", run_id + "+"))


def find_samples(samples_dir: Path, run_id: str, most: int = MAX_SETS) -> tuple[list[SampleSet], int]:
    """The run's newest ``most`` sample sets (newest first) and how many there are in all."""
    found = []
    for label_dir in samples_dir.iterdir() if samples_dir.is_dir() else []:
        if label_dir.is_dir() and belongs_to(label_dir.name, run_id):
            found += [f for f in label_dir.iterdir() if f.is_dir() and any(f.glob("*.png"))]
    found.sort(key=lambda f: (f.name, f.parent.name), reverse=True)  # the folders are named by their time
    return [_read(f) for f in found[:most]], len(found)


def _read(folder: Path) -> SampleSet:
    images = sorted(p for p in folder.glob("*.png") if p.name != "grid.png")
    record = (read_record(images[0]) if images else None) or {}
    seeds = []
    for p in images:
        head = p.stem.partition("-seed")[2]
        if head.isdigit():
            seeds.append(int(head))
    grid = folder / "grid.png"
    return SampleSet(folder=folder, label=folder.parent.name, prompt=record.get("prompt"), images=images,
                     grid=grid if grid.is_file() else None, seeds=seeds)
