"""LoRA adapters through peft (saved by the model family, in diffusers' format: see dbooth.families)."""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from peft import LoraConfig, inject_adapter_in_model


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
