"""Write a pipeline as one ``.safetensors`` checkpoint in the original Stable Diffusion key layout.

That layout is what AUTOMATIC1111, ComfyUI and diffusers' ``from_single_file`` read. Per family:

- ``sd1``: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE), ``cond_stage_model.transformer.*``
  (CLIP under its Hugging Face names).
- ``sd2``: as sd1, but the OpenCLIP text encoder is stored as OpenCLIP under ``cond_stage_model.model.*``.
- ``sdxl``: UNet and VAE as above, ``conditioner.embedders.0.transformer.*`` (CLIP, Hugging Face names) and
  ``conditioner.embedders.1.model.*`` (OpenCLIP bigG with its text projection).

A v-prediction model also gets the ``v_pred`` marker key, and every file carries ModelSpec metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file

from dbooth.util.errors import DboothError
from dbooth.families.clip_layout import clip_to_openclip, hf_clip_state_dict
from dbooth.export.dtypes import cast_floats
from dbooth.families.ldm_layout import unet_to_original, vae_to_original
from dbooth.export.modelspec import check_prediction_type, modelspec_metadata, prediction_markers
from dbooth.families import family_of, resolution_from_configs
from dbooth.families.layouts import (
    LAYOUTS,
    OPENCLIP_PREFIX,
    SDXL_TEXT_2_PREFIX,
    SDXL_TEXT_PREFIX,
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    detect_single_file_layout,
)
from dbooth.util.fsutil import atomic_path

def pipeline_layout(pipe: DiffusionPipeline) -> str:
    """The single-file layout of the pipeline's model family (see ``dbooth.families.family_of``)."""
    return family_of(pipe).single_file_layout


def pipeline_to_original_state_dict(
    pipe: DiffusionPipeline, layout: str | None = None, *, prediction_type: str | None = None
) -> dict[str, torch.Tensor]:
    """All UNet, VAE and text-encoder weights of ``pipe`` under their original names, plus prediction markers.

    ``layout`` defaults to ``pipeline_layout(pipe)``; ``prediction_type`` to the scheduler's.
    """
    layout = _check_layout(pipe, layout)
    out = _prefixed(UNET_PREFIX, unet_to_original(pipe.unet)) | _prefixed(VAE_PREFIX, vae_to_original(pipe.vae))
    if layout == "sd1":
        out |= _prefixed(TEXT_PREFIX, hf_clip_state_dict(pipe.text_encoder))
    elif layout == "sd2":
        out |= _prefixed(OPENCLIP_PREFIX, clip_to_openclip(pipe.text_encoder, penultimate=True))
    else:
        out |= _prefixed(SDXL_TEXT_PREFIX, hf_clip_state_dict(pipe.text_encoder))
        out |= _prefixed(SDXL_TEXT_2_PREFIX, clip_to_openclip(pipe.text_encoder_2))
    zero_snr = bool(getattr(getattr(pipe, "scheduler", None), "config", {}).get("rescale_betas_zero_snr", False))
    return out | prediction_markers(prediction_type or _prediction_type(pipe), zero_terminal_snr=zero_snr)


def save_single_file(
    pipe: DiffusionPipeline,
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
    layout: str | None = None,
    *,
    prediction_type: str | None = None,
) -> Path:
    """Write ``pipe`` to ``path`` as one safetensors checkpoint (atomically); returns ``path``.

    The header carries ModelSpec fields (architecture, prediction type, resolution, title = file stem)
    under ``metadata``, which overrides them.
    """
    path = Path(path)
    layout = _check_layout(pipe, layout)
    prediction_type = prediction_type or _prediction_type(pipe)
    state_dict = cast_floats(pipeline_to_original_state_dict(pipe, layout, prediction_type=prediction_type), dtype)
    resolution = resolution_from_configs(pipe.unet.config, pipe.vae.config)
    spec = modelspec_metadata(layout, prediction_type, title=path.stem, resolution=resolution)
    with atomic_path(path) as tmp:
        save_file(state_dict, str(tmp), metadata={"format": "pt", **spec, **(metadata or {})})
    return path


def _check_layout(pipe: DiffusionPipeline, layout: str | None) -> str:
    if layout is None:
        return pipeline_layout(pipe)
    if layout not in LAYOUTS:
        raise DboothError(f"unknown single-file layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if (layout == "sdxl") != (getattr(pipe, "text_encoder_2", None) is not None):
        raise DboothError(f"the {layout} layout needs {'two text encoders' if layout == 'sdxl' else 'one'}")
    return layout


def _prediction_type(pipe: DiffusionPipeline) -> str:
    scheduler = getattr(pipe, "scheduler", None)
    return check_prediction_type(scheduler.config.get("prediction_type", "epsilon") if scheduler else "epsilon")


def _prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state_dict.items()}
