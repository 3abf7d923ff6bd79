"""Write a pipeline as a diffusers folder with its model card."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from dbooth.export.dtypes import cast_pipeline
from dbooth.util.fsutil import atomic_path


def save_pipeline_folder(pipe: DiffusionPipeline, path: str | Path, *, dtype: torch.dtype, card: str) -> Path:
    """``save_pretrained`` (safetensors, weights cast to ``dtype``) plus README.md, written atomically."""
    path = Path(path)
    cast_pipeline(pipe, dtype)
    with atomic_path(path) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return path
