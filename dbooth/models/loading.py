"""Resolve a base-model spec and load it with diffusers' own loaders.

A spec is a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``), a local diffusers
folder, a single ``.safetensors``/``.ckpt`` checkpoint, or ``builtin:NAME``. All of them end
up as a ``StableDiffusionPipeline``; nothing downstream knows which kind it was.
"""

from __future__ import annotations

import os

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from dbooth.errors import DboothError
from dbooth.models.source import resolve_model


def _honour_progress_env() -> None:
    """diffusers' "Loading pipeline components" bar ignores the hub's own switch; make it listen."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in ("1", "true", "yes", "on"):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()


_honour_progress_env()


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (and warns on the old name); use whichever it knows."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def load_pipeline(spec: str, *, dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """Load a base model as a StableDiffusionPipeline (no safety checker)."""
    source = resolve_model(spec)
    extra = dict(safety_checker=None, requires_safety_checker=False, **dtype_kwarg(dtype))
    try:
        if source.kind == "single_file":
            pipe = StableDiffusionPipeline.from_single_file(source.location, **extra)
        elif source.kind == "hub":
            pipe = _load_from_hub(source.location, extra)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(source.location, local_files_only=True, **extra)
    except DboothError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = (
            "download it once while online (huggingface-cli download "
            f"{spec}) or pass a local folder / .safetensors file with --base"
            if source.kind in ("hub", "single_file")
            else "check that the folder is a complete diffusers pipeline"
        )
        raise DboothError(f"base model {spec} cannot be loaded: {reason[:200]}; {hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_from_hub(repo_id: str, extra: dict) -> StableDiffusionPipeline:
    try:
        return StableDiffusionPipeline.from_pretrained(repo_id, local_files_only=True, **extra)
    except OSError:
        pass
    try:
        return StableDiffusionPipeline.from_pretrained(repo_id, **extra)
    except OSError as exc:
        raise DboothError(
            f"base model {repo_id} cannot be reached: it is not in the local Hugging Face cache "
            "and the hub is unreachable (offline?); download it once while online "
            f"(huggingface-cli download {repo_id}) or pass a local folder / .safetensors file with --base"
        ) from exc


def inference_device() -> torch.device:
    """Where class images and samples are generated: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype() -> torch.dtype:
    """Half precision on a GPU (as SD is usually sampled); float32 on the CPU."""
    return torch.float16 if torch.cuda.is_available() else torch.float32


def training_scheduler(pipe: StableDiffusionPipeline) -> DDPMScheduler:
    """The noise schedule used for training, taken from the base model's scheduler config."""
    return DDPMScheduler.from_config(pipe.scheduler.config)


def compose_pipeline(*, vae, text_encoder, tokenizer, unet, scheduler) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from its parts, without the safety checker dbooth never uses."""
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def assemble_pipeline(base: StableDiffusionPipeline, *, unet=None, text_encoder=None) -> StableDiffusionPipeline:
    """A new pipeline sharing ``base``'s parts, with the given UNet / text encoder swapped in."""
    pipe = compose_pipeline(
        vae=base.vae,
        text_encoder=text_encoder if text_encoder is not None else base.text_encoder,
        tokenizer=base.tokenizer,
        unet=unet if unet is not None else base.unet,
        scheduler=base.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
