"""What a run folder holds, each item with what it is and how it loads: the final weights, checkpoints,
exports (their format read from the safetensors header or the pipeline folder), merged pipelines and the
run's records. Torch-free: the loading lines come from ``dbooth.export.clients``' table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dbooth.export.clients import EXPORT_FORMATS, load_lines
from dbooth.workspace.folder import has_resume_state
from dbooth.util.fsutil import disk_size

LORA_FILE = "pytorch_lora_weights.safetensors"
RECORDS = (  # (name in the run folder, what it is)
    ("config.yaml", "the settings the run trained with (the workspace's dbooth.yaml as it was)"),
    ("run.json", "the run's record: status, steps, timings, best checkpoint"),
    ("loss.csv", "loss, prior loss and learning rate per step (the curve above)"),
    ("eval.json", "every figure of `dbooth eval` and the samples' prompts and seeds"),
    ("validation", "validation images, one folder per step"),
    ("eval", "the evaluation's image grids"),
    ("tensorboard", "TensorBoard logs: `tensorboard --logdir {runs}` compares runs"),
)
OWN = {"final", "checkpoints", "export", *(name for name, _ in RECORDS)}


@dataclass
class Item:
    path: Path
    what: str
    size: int
    loads: list[str] = field(default_factory=list)  # "client: how", Markdown-style backticks kept


def safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file from its JSON header (no tensor is read); {} when unreadable."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length < 100_000_000:
                return {}
            header = json.loads(f.read(length))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def final_item(run_dir: Path, lora: bool, pipeline: str) -> Item | None:
    final = run_dir / "final"
    if lora and (final / LORA_FILE).is_file():
        path = final / LORA_FILE
        return Item(path, "the final LoRA weights (diffusers format), for the run's base model", disk_size(path),
                    load_lines("lora", path.resolve(), markdown=True, pipeline=pipeline))
    if not lora and (final / "model_index.json").is_file():
        return Item(final, "the final model: a whole diffusers pipeline folder", disk_size(final),
                    load_lines("diffusers", final.resolve(), markdown=True, pipeline=pipeline))
    return None


def checkpoint_items(checkpoints: list[Path], run_id: str) -> list[Item]:
    items = []
    for folder in checkpoints:
        step = int(folder.name.split("-")[1])
        resume = " and the state `dbooth train --resume` continues from" if has_resume_state(folder) else ""
        items.append(Item(folder, f"the weights at step {step}{resume}; `--run {run_id}@{step}` samples or "
                                  "exports them", disk_size(folder)))
    return items


def export_items(run_dir: Path, pipeline: str) -> list[Item]:
    """Every export in ``RUN/export/`` (the default place), its format and the clients that load it."""
    folder = run_dir / "export"
    items = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        fmt = _format_of(path)
        if fmt is None:
            continue
        meta = safetensors_metadata(path) if path.is_file() else {}
        what = EXPORT_FORMATS[fmt].title + (f", {meta['dbooth.dtype']}" if meta.get("dbooth.dtype") else "")
        if meta.get("dbooth.checkpoint"):
            what += f", weights of {meta['dbooth.checkpoint']}"
        card = path.with_suffix(".md") if path.is_file() else path / "README.md"
        if card.is_file():
            what += f" (model card: {card.name})"
        items.append(Item(path, what, disk_size(path), load_lines(fmt, path.resolve(), markdown=True,
                                                                pipeline=pipeline)))
    return items


def _format_of(path: Path) -> str | None:
    if path.is_dir():
        return "diffusers" if (path / "model_index.json").is_file() else None
    if path.suffix != ".safetensors":
        return None
    fmt = safetensors_metadata(path).get("dbooth.format")
    return fmt if fmt in EXPORT_FORMATS else None


def merged_items(run_dir: Path, pipeline: str) -> list[Item]:
    """Pipelines ``dbooth merge-lora`` wrote into the run folder (any folder of it with model_index.json)."""
    items = []
    for path in sorted(run_dir.iterdir()):
        if path.is_dir() and path.name not in OWN and (path / "model_index.json").is_file():
            items.append(Item(path, "the LoRA merged into its base model: a whole diffusers pipeline folder",
                              disk_size(path), load_lines("diffusers", path.resolve(), markdown=True,
                                                        pipeline=pipeline)))
    return items


def record_items(run_dir: Path, workspace: Path | None = None) -> list[Item]:
    runs = str((workspace / "runs").resolve()) if workspace is not None else "WORKSPACE/runs"
    return [Item(run_dir / name, what.format(runs=runs), disk_size(run_dir / name)) for name, what in RECORDS
            if (run_dir / name).exists()]
