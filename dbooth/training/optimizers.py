"""The optimizer a run asks for (``train.optimizer``), built with the settings each needs for DreamBooth."""

from __future__ import annotations

import torch

from dbooth.util.errors import DboothError


def make_optimizer(cfg, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """``groups`` carry their own learning rates (UNet, text encoders); ``cfg`` is the train section."""
    if cfg.optimizer == "adamw8bit":
        if device.type != "cuda":
            raise DboothError("train.optimizer: adamw8bit needs a CUDA GPU (bitsandbytes); use adamw here")
        bnb = _require("bitsandbytes", "adamw8bit", "bitsandbytes")
        return bnb.optim.AdamW8bit(groups, weight_decay=cfg.adam_weight_decay)
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        # kohya's and OneTrainer's fine-tuning settings: the run's own learning rate and schedule, not
        # Adafactor's relative step sizes, which scale a zero-initialised LoRA half's updates to nothing
        return Adafactor(groups, lr=None, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=0.0)
    if cfg.optimizer == "prodigy":
        prodigyopt = _require("prodigyopt", "prodigy", "prodigyopt")
        # the settings diffusers' advanced DreamBooth LoRA script recommends with a learning rate of 1.0
        return prodigyopt.Prodigy(groups, betas=(0.9, 0.99), weight_decay=cfg.adam_weight_decay, decouple=True,
                                  use_bias_correction=True, safeguard_warmup=True)
    # torch's fused kernel runs on CUDA and the CPU; on the CPU it is ~3x faster than the per-tensor default
    return torch.optim.AdamW(groups, weight_decay=cfg.adam_weight_decay, fused=device.type in ("cuda", "cpu"))


def _require(module: str, choice: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DboothError(
            f"train.optimizer: {choice} needs the {package} package; `pip install {package}` or set train.optimizer: adamw"
        ) from None
