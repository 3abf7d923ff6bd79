"""SD 3.5's and FLUX.1's single file: the transformer alone in its original key layout (``families.sd3_layout``,
``families.flux_layout``), what ComfyUI's Load Diffusion Model node and ``from_single_file`` read; the text
encoders and VAE stay the base model's."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from dbooth.export.dtypes import cast_floats
from dbooth.export.modelspec import modelspec_metadata
from dbooth.util.fsutil import atomic_path


def transformer_to_original(family: str, transformer) -> dict[str, torch.Tensor]:
    from dbooth.families.flux_layout import flux_to_original
    from dbooth.families.sd3_layout import sd3_to_original

    state = transformer.state_dict()
    return flux_to_original(state) if family == "flux" else sd3_to_original(state)


def save_transformer_file(pipe, path: str | Path, family: str, *, dtype: torch.dtype = torch.float32,
                          metadata: dict[str, str] | None = None, resolution: int | None = None) -> Path:
    """Write ``pipe``'s transformer to ``path`` (atomically) in ``family``'s original layout, with ModelSpec fields."""
    path = Path(path)
    tensors = cast_floats(transformer_to_original(family, pipe.transformer), dtype)
    spec = modelspec_metadata(family, "flow", title=path.stem, resolution=resolution)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **spec, **(metadata or {})})
    return path
