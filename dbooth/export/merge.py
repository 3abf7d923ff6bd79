"""Fuse a LoRA into its base weights, giving a plain pipeline any tool can load."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from dbooth.util.errors import DboothError
from dbooth.export.dtypes import cast_pipeline
from dbooth.export.lora_file import read_lora_file

ADAPTER = "dbooth_merge"


def merge_lora_into_pipeline(
    pipe: DiffusionPipeline,
    lora_file: str | Path,
    scale: float = 1.0,
    *,
    default_alpha: float | None = None,
) -> DiffusionPipeline:
    """Add ``scale * (alpha/r) * up @ down`` to every targeted weight of ``pipe`` in place and return it.

    Uses diffusers' own loaders (``load_lora_into_unet`` / ``load_lora_into_text_encoder``, which also serves
    SDXL's ``text_encoder_2``), then ``fuse_lora`` and ``unload_lora_weights``, so the result has no LoRA
    layers left. ``default_alpha`` is the run's alpha, used when the file does not record one. Merging
    happens in float32; cast afterwards.
    """
    lora = read_lora_file(lora_file, default_alpha=default_alpha)
    cast_pipeline(pipe, torch.float32)
    for component in lora.components.values():
        state_dict = {f"{component.name}.{k}": v for k, v in component.peft_state_dict().items()}
        metadata = {f"{component.name}.{k}": v for k, v in component.config.items()}
        if getattr(pipe, component.name, None) is None:
            raise DboothError(f"{lora_file}: the LoRA adapts {component.name}, which this pipeline lacks")
        if component.name == "unet":
            _load_into_unet(pipe, state_dict, metadata)
        elif component.name == "transformer":
            _load_into_transformer(pipe, state_dict, metadata)
        else:
            _load_into_text_encoder(pipe, component.name, state_dict, metadata)
    pipe.fuse_lora(components=list(lora.components), lora_scale=scale, adapter_names=[ADAPTER])
    pipe.unload_lora_weights()
    return pipe


def _load_into_unet(pipe, state_dict, metadata):
    pipe.load_lora_into_unet(
        state_dict, network_alphas=None, unet=pipe.unet, adapter_name=ADAPTER, metadata=metadata, _pipeline=pipe
    )


def _load_into_transformer(pipe, state_dict, metadata):
    """SD 3.5's and FLUX's transformer; their loaders take the ``transformer.``-prefixed keys as unet's do."""
    import inspect

    kwargs = dict(transformer=pipe.transformer, adapter_name=ADAPTER, metadata=metadata, _pipeline=pipe)
    if "network_alphas" in inspect.signature(pipe.load_lora_into_transformer).parameters:
        kwargs["network_alphas"] = None
    pipe.load_lora_into_transformer(state_dict, **kwargs)


def _load_into_text_encoder(pipe, name, state_dict, metadata):
    pipe.load_lora_into_text_encoder(
        state_dict,
        network_alphas=None,
        text_encoder=getattr(pipe, name),
        prefix=name,
        adapter_name=ADAPTER,
        metadata=metadata,
        _pipeline=pipe,
    )
