"""LoRA through peft, saved in diffusers' format so ``pipe.load_lora_weights`` reads it."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ModelMixin, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict


def add_lora(model: torch.nn.Module, cfg, target_modules: list[str]) -> None:
    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        init_lora_weights="gaussian",
        target_modules=list(target_modules),
    )
    if isinstance(model, ModelMixin):
        model.add_adapter(config)
        return
    # transformers' own add_adapter insists on newer peft releases than PyPI may have;
    # peft's injection is what it does underneath
    inject_adapter_in_model(config, model)
    model.peft_config = {"default": config}


def save_lora(path: Path, unet, text_encoder=None) -> None:
    """Write ``pytorch_lora_weights.safetensors`` (with the LoRA configs as metadata) into ``path``."""
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    te_layers = te_meta = None
    if text_encoder is not None:
        te_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(text_encoder))
        te_meta = text_encoder.peft_config["default"].to_dict()
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(path),
        unet_lora_layers={k: v.detach().float().contiguous() for k, v in unet_layers.items()},
        text_encoder_lora_layers=(
            {k: v.detach().float().contiguous() for k, v in te_layers.items()} if te_layers else None
        ),
        safe_serialization=True,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=te_meta,
    )
