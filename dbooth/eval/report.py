"""The evaluation's image grids, ``RUN/eval/grid-NN-MODEL.png``: one row of samples per prompt and model.

``dbooth eval`` saves them here and keeps only those of the models the run page shows (base, the best
checkpoint, final); the page itself (``dbooth.runpage``) reads them back by name with ``grid_file``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from dbooth.util.fsutil import atomic_write_bytes

GRID_DIR = "eval"
BASE, FINAL = "base", "final"
CLASS = "class"  # the grids' key for the class prompt's samples (what PRES judges)


def grid_file(index: int | str, model: str) -> str:
    """Path of one grid relative to the run folder; prompts are numbered, as their text may be anything."""
    key = f"{index:02d}" if isinstance(index, int) else index
    return f"{GRID_DIR}/grid-{key}-{model}.png"


def shown_models(data: dict) -> list[str]:
    """Whose samples the page shows: the base model, the best checkpoint when it is not the final weights, final."""
    best = (data.get("best") or {}).get("checkpoint")
    return [BASE] + ([best] if best and best not in (BASE, FINAL) else []) + [FINAL]


def step_of(name: str) -> int | None:
    match = re.fullmatch(r"step-(\d+)", name)
    return int(match.group(1)) if match else None


def save_grids(run_dir: Path, model: str, images: dict[str, list], class_images: list) -> dict[str, str]:
    """One row of samples per prompt as ``RUN/eval/grid-NN-MODEL.png``; returns prompt -> relative path."""
    from dbooth.generate.sample import make_grid

    saved = {}
    for key, index, ims in [*((p, i, ims) for i, (p, ims) in enumerate(images.items(), 1)),
                            (CLASS, CLASS, class_images)]:
        if not ims:
            continue
        buf = io.BytesIO()
        make_grid(ims, cols=len(ims)).save(buf, format="PNG")
        rel = grid_file(index, model)
        atomic_write_bytes(Path(run_dir) / rel, buf.getvalue())
        saved[key] = rel
    return saved


def prune_grids(run_dir: Path, data: dict, grids: dict[str, dict[str, str]]) -> None:
    """Remove the grids of models the page does not show (the checkpoints that are neither base, best nor final)."""
    run_dir = Path(run_dir)
    keep = {run_dir / rel for m in shown_models(data) for rel in grids.get(m, {}).values()}
    for old in (run_dir / GRID_DIR).glob("grid-*.png"):
        if old not in keep:
            old.unlink(missing_ok=True)
