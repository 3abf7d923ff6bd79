"""Resolve a base-model spec and load it with diffusers' own loaders.

A spec is a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``), a local diffusers
folder, a single ``.safetensors``/``.ckpt`` checkpoint, or ``builtin:NAME``. The model family
(SD 1.x, 2.x, SDXL) is detected from the model itself and picks the pipeline class; nothing
downstream knows which kind of source it was.
"""

from __future__ import annotations

import os

import torch

from dbooth.util.errors import DboothError
from dbooth.families.source import hub_unreachable, resolve_model


def _honour_progress_env() -> None:
    """diffusers' "Loading pipeline components" bar ignores the hub's own switch; make it listen."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in ("1", "true", "yes", "on"):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()


_honour_progress_env()


def load_pipeline(spec: str, *, dtype: torch.dtype = torch.float32, allow_pickle: bool = False):
    """Load a base model (any family: see dbooth.families) with its family's diffusers pipeline class.

    Pickle-based files (``.ckpt``, ``.bin``) are refused unless ``allow_pickle`` (see dbooth.families.source).
    """
    from dbooth.families import detect_family

    source = resolve_model(spec, allow_pickle=allow_pickle)
    family = detect_family(source)
    try:
        if source.kind == "hub":
            pipe = _load_from_hub(family, source, dtype, allow_pickle)
        else:
            pipe = family.load(source, dtype=dtype, allow_pickle=allow_pickle)
    except DboothError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if source.kind == "single_file":
            # diffusers builds a single file's pipeline from the family's reference configs on the hub
            hint = (f"a {family.title} single file needs that family's configs once: run online once, or "
                    f"`huggingface-cli download {family.config_repo} --include '*.json' '*.txt'`, "
                    "or set base_model in dbooth.yaml to a diffusers folder")
        elif source.kind == "hub":
            hint = (f"download it once while online (huggingface-cli download {spec}) "
                    "or set base_model in dbooth.yaml to a local folder or .safetensors file")
        else:
            hint = "check that the folder is a complete diffusers pipeline"
        raise DboothError(f"base model {spec} cannot be loaded: {reason[:160]}; {hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_from_hub(family, source, dtype, allow_pickle):
    try:
        return family.load(source, dtype=dtype, allow_pickle=allow_pickle)
    except OSError:
        pass
    from dbooth.util.hub import hub_reachable

    if not hub_reachable():  # huggingface_hub would retry for over a minute before failing
        raise hub_unreachable(source.location)
    try:
        return family.load(source, dtype=dtype, local_files_only=False, allow_pickle=allow_pickle)
    except OSError as exc:
        raise hub_unreachable(source.location) from exc


def inference_device() -> torch.device:
    """Where class images and samples are generated: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype() -> torch.dtype:
    """Half precision on a GPU (as SD is usually sampled); float32 on the CPU."""
    return torch.float16 if torch.cuda.is_available() else torch.float32


def compose_pipeline(*, vae, text_encoder, tokenizer, unet, scheduler):
    """An SD 1.x/2.x-shaped StableDiffusionPipeline from its parts, without the safety checker."""
    from dbooth.families import SD1

    return SD1.compose(dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler))
