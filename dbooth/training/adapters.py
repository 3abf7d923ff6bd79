"""LoRA adapters through peft (saved by the model family, in diffusers' format: see dbooth.families)."""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from peft import LoraConfig, inject_adapter_in_model

# train.lora.init -> peft's init_lora_weights; both start with B = 0, so training starts at the base model.
# peft's data-driven inits (pissa, olora, ...) rewrite the base weights and would not export as a delta.
INITS = {"gaussian": "gaussian", "kaiming": True}


def lora_config(cfg, target_modules: list[str], *, text_encoder: bool = False) -> LoraConfig:
    """The peft config for ``cfg`` (train.lora); a text encoder may have a rank and alpha of its own."""
    rank = (cfg.text_encoder_rank if text_encoder else None) or cfg.rank
    alpha = (cfg.text_encoder_alpha if text_encoder else None) or cfg.alpha
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=cfg.dropout,
        init_lora_weights=INITS[cfg.init],
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        target_modules=list(target_modules),
    )


def add_lora(model: torch.nn.Module, config: LoraConfig) -> None:
    if isinstance(model, ModelMixin):
        model.add_adapter(config)
        return
    # transformers' own add_adapter insists on newer peft releases than PyPI may have;
    # peft's injection is what it does underneath
    inject_adapter_in_model(config, model)
    model.peft_config = {"default": config}
