"""A run's final weights: the family's LoRA file, or a full pipeline folder with the trained parts swapped in."""

from __future__ import annotations

import torch

from dbooth.util.fsutil import atomic_path
from dbooth.families.loading import load_pipeline


def save_final(accelerator, manifest, run, models) -> None:
    denoiser = accelerator.unwrap_model(models.denoiser)
    encoders = {name: accelerator.unwrap_model(m) for name, m in models.trained_encoders.items()}
    with atomic_path(run.final_dir) as tmp:
        tmp.mkdir(parents=True)
        if manifest.train.method == "lora":
            models.family.save_lora(tmp, denoiser, encoders)
        else:
            # reload frozen parts in full precision so mixed precision never degrades them
            base = load_pipeline(manifest.base_model, allow_pickle=manifest.allow_pickle)
            parts = {name: m.to("cpu", torch.float32) for name, m in encoders.items()}
            out = models.family.with_denoiser(base, denoiser.to("cpu", torch.float32), **parts)
            out.save_pretrained(str(tmp), safe_serialization=True)
