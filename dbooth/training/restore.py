"""A run's pipeline as it was at a saved checkpoint: the base model with the checkpoint's trained tensors.

Checkpoints hold only what trained (``dbooth.training.state``): the whole UNet (and text encoders) for
a full fine-tune, the adapters for LoRA. So the base pipeline is loaded, LoRA adapters are injected with
the run's own settings (from its ``config.yaml``), and the tensors are copied in, EMA averages on top
when the run's outputs use them. ``save_checkpoint_lora`` writes a LoRA checkpoint's adapters as the
run's final LoRA file would be, so exports of a checkpoint take the same road as exports of the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dbooth.util.errors import DboothError
from dbooth.workspace.folder import Run


def checkpoint_pipeline(run: Run, checkpoint: Path, *, allow_pickle: bool = False,
                        loader: Callable[[str], object] | None = None):
    """The pipeline at ``checkpoint``; ``loader(base_model)`` loads the base (default: ``load_pipeline``)."""
    pipe, _ = _rebuild(run, checkpoint, allow_pickle=allow_pickle, loader=loader)
    return pipe


def save_checkpoint_lora(run: Run, checkpoint: Path, folder: Path, *,
                         loader: Callable[[str], object] | None = None) -> Path:
    """Write a LoRA run's ``checkpoint`` to ``folder/pytorch_lora_weights.safetensors`` (the final file's format)."""
    pipe, trained_encoders = _rebuild(run, checkpoint, loader=loader)
    from dbooth.families import family_of

    family = family_of(pipe)
    family.save_lora(folder, family.denoiser(pipe), trained_encoders)
    from dbooth.export.run_info import LORA_WEIGHTS_NAME

    return Path(folder) / LORA_WEIGHTS_NAME


def _rebuild(run: Run, checkpoint: Path, *, allow_pickle: bool = False, loader=None):
    """(pipeline, the trained text encoders by name) with the checkpoint's tensors in place."""
    from dbooth.workspace.config import load_manifest
    from dbooth.families import family_of
    from dbooth.families.loading import load_pipeline
    from dbooth.training.adapters import add_lora, lora_config
    from dbooth.training.state import apply_ema, apply_trainable

    cfg = load_manifest(run.config_path).train  # the settings the run trained with
    base = run.info().get("base_model") or load_manifest(run.config_path).base_model
    pipe = loader(base) if loader is not None else load_pipeline(base, allow_pickle=allow_pickle)
    family = family_of(pipe)
    encoders = family.trained_text_encoders(pipe) if cfg.train_text_encoder else {}
    models = [family.denoiser(pipe), *encoders.values()]
    if cfg.method == "lora":
        for model in models:
            model.requires_grad_(False)
        add_lora(models[0], lora_config(cfg.lora, family.lora_targets(cfg.lora.target_modules)))
        for encoder in models[1:]:
            add_lora(encoder, lora_config(cfg.lora, cfg.lora.text_encoder_target_modules, text_encoder=True))
    else:
        for model in models:
            model.requires_grad_(True)
    try:
        apply_trainable(models, checkpoint)
        if cfg.ema.enabled and cfg.ema.use_for_output:
            apply_ema(models, checkpoint)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise DboothError(f"checkpoint {checkpoint}: cannot be applied to {base} ({reason}); "
                          "the checkpoint is damaged or from another run") from None
    for model in models:
        model.requires_grad_(False).eval()
    return pipe, encoders
