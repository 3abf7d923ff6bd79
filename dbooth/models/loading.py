"""Resolve a base-model spec and load it with diffusers' own loaders.

A spec is a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``), a local diffusers
folder, a single ``.safetensors``/``.ckpt`` checkpoint, or ``builtin:NAME``. All of them end
up as a ``StableDiffusionPipeline``; nothing downstream knows which kind it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from dbooth.errors import DboothError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # builtin | folder | single_file | hub
    location: str
    spec: str


def resolve_model(spec: str) -> ModelSource:
    spec = spec.strip()
    if not spec:
        raise DboothError("base model: empty; set base_model in dbooth.yaml or pass --base")
    if spec.startswith("builtin:"):
        from dbooth.builtin import builtin_model_path

        return ModelSource("builtin", str(builtin_model_path(spec.split(":", 1)[1])), spec)
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise DboothError(
                f"base model {spec}: folder has no model_index.json; "
                "pass a diffusers pipeline folder, a .safetensors checkpoint, or a hub id"
            )
        return ModelSource("folder", str(path), spec)
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise DboothError(f"base model {spec}: file does not exist; check the path")
        return ModelSource("single_file", str(path), spec)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DboothError(f"base model {spec}: no such folder or file; check the path")
    return ModelSource("hub", spec, spec)


def load_pipeline(spec: str, *, dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """Load a base model as a StableDiffusionPipeline (no safety checker)."""
    source = resolve_model(spec)
    extra = dict(safety_checker=None, requires_safety_checker=False, torch_dtype=dtype)
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
