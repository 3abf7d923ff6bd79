"""Model families (SD 1.x, SD 2.x, SDXL, the SD x4 upscaler, SD 3.5, FLUX.1, FLUX.2 [klein], Z-Image): everything
that differs between them lives in one module each.

``detect_family(source)`` reads the model itself (``model_index.json`` and the text encoder's config
for folders and hub ids, key names for single files); ``family_of(pipe)`` answers for a loaded pipeline.
Nobody configures the family by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from dbooth.util.errors import DboothError
from dbooth.families.base import Conditioning, Family
from dbooth.families.sd import SD1, SD2
from dbooth.families.sdxl import SDXL
from dbooth.families.sd3 import SD3
from dbooth.families.flux import FLUX
from dbooth.families.flux2 import FLUX2_KLEIN
from dbooth.families.zimage import ZIMAGE
from dbooth.families.upscaler import SD_X4_UPSCALER
from dbooth.families.source import hub_unreachable

FAMILIES: dict[str, Family] = {f.name: f for f in (SD1, SD2, SDXL, SD_X4_UPSCALER, SD3, FLUX, FLUX2_KLEIN, ZIMAGE)}
LM_FAMILIES = (FLUX2_KLEIN, ZIMAGE)  # told apart from SD 3.5 / FLUX.1 by pipeline or transformer class, not parts


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise DboothError(f"unknown model family {name!r}; dbooth knows {', '.join(FAMILIES)}") from None


def family_from_configs(model_index: dict, text_encoder_config: dict | None) -> Family:
    """The family a diffusers pipeline belongs to, from its model_index.json and text encoder config."""
    cls = model_index.get("_class_name", "")
    if cls == SDXL.pipeline_class_name:
        return SDXL
    if cls == SD1.pipeline_class_name:
        return _sd_family(text_encoder_config or {})
    if cls == SD_X4_UPSCALER.pipeline_class_name:
        return SD_X4_UPSCALER
    for family in (SD3, FLUX, *LM_FAMILIES):
        if cls == family.pipeline_class_name:
            return family
    raise DboothError(
        f"model is a {cls or 'pipeline of unknown class'}; dbooth trains text-to-image StableDiffusionPipeline "
        "(SD 1.x, 2.x), StableDiffusionXLPipeline, StableDiffusion3Pipeline (SD 3.5), FluxPipeline (FLUX.1), "
        "Flux2KleinPipeline (FLUX.2 [klein]) and ZImagePipeline (Z-Image) models, and StableDiffusionUpscalePipeline "
        "upscalers (not refiners, img2img or other pipelines)"
    )


def family_from_keys(keys) -> Family:
    """The family of an original-layout single-file checkpoint, from its tensor names."""
    from dbooth.families.layouts import detect_single_file_layout

    layout = detect_single_file_layout(keys)
    return next(f for f in FAMILIES.values() if f.single_file_layout and f.single_file_layout == layout)


def detect_family(source) -> Family:
    """The family of a resolved model source (see dbooth.families.source)."""
    if source.kind == "single_file":
        return family_from_keys(_checkpoint_keys(Path(source.location)))
    if source.kind == "hub":
        index = _hub_json(source.location, "model_index.json")
        te = _hub_json(source.location, "text_encoder/config.json", required=False)
        return family_from_configs(index, te)
    folder = Path(source.location)
    te_path = folder / "text_encoder" / "config.json"
    return family_from_configs(_read_json(folder / "model_index.json"), _read_json(te_path) if te_path.is_file() else None)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DboothError(f"{path}: cannot be read as JSON ({exc}); the model folder is damaged") from None


def native_resolution(source) -> int | None:
    """The size a model was trained at: UNet sample size x VAE scale from its configs (a local folder, the
    built-in model, or a hub id already in the Hugging Face cache), else its family's default for single
    files; None for a hub model that is not cached (nothing is downloaded for this)."""
    if source.kind == "single_file":
        return detect_family(source).default_resolution
    denoiser = _config(source, "unet/config.json") or _config(source, "transformer/config.json")
    vae = _config(source, "vae/config.json")
    if denoiser is None or vae is None:
        return None
    if "sample_size" not in denoiser:  # FLUX's transformer takes any size: the size its VAE was made for
        return int(vae.get("sample_size") or detect_family(source).default_resolution)
    return resolution_from_configs(denoiser, vae)


def manifest_defaults(source) -> dict:
    """Manifest values that suit the base model, read from its configs (a local folder, the built-in model or
    a hub id already cached; nothing is downloaded): its training resolution and, for the flow-matching
    families, the sampling steps and guidance of its model card. Empty when the configs cannot be read."""
    out = {}
    resolution = native_resolution(source)
    if resolution is not None:
        out["train.resolution"] = resolution
    try:
        family = detect_family(source) if source.kind != "hub" or _config(source, "model_index.json") else None
    except DboothError:
        family = None
    if family is not None:
        out.update(family.sampling_defaults(_sampling_configs(source, family)))
    return out


def _sampling_configs(source, family) -> dict:
    """The denoiser's config, with the pipeline's (``_model_index``: klein's ``is_distilled``) and the scheduler's
    (``_scheduler``: Z-Image's shift tells Turbo from base) beside it; empty for a single file."""
    if source.kind == "single_file":
        return {}
    config = _config(source, f"{family.denoiser_name}/config.json") or {}
    return {**config, "_model_index": _config(source, "model_index.json") or {},
            "_scheduler": _config(source, "scheduler/scheduler_config.json") or {}}


def resolution_from_configs(unet_config, vae_config) -> int:
    """Image side = the UNet's latent sample size x the VAE's downscaling (2 per block after the first)."""
    return int(unet_config["sample_size"]) * 2 ** (len(vae_config["block_out_channels"]) - 1)


def _config(source, name: str) -> dict | None:
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(source.location, name)
        path = Path(path) if isinstance(path, str) else None
    else:
        path = Path(source.location) / name
    try:
        return json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None


def family_of(pipe) -> Family:
    """The family of a loaded pipeline (or any object with its parts), read from the parts themselves."""
    classes = {type(pipe).__name__, type(getattr(pipe, "transformer", None)).__name__}
    for family in LM_FAMILIES:
        if classes & {family.pipeline_class_name, family.transformer_class_name}:
            return family
    if getattr(pipe, "transformer", None) is not None:
        return SD3 if getattr(pipe, "text_encoder_3", None) is not None else FLUX
    if getattr(pipe, "text_encoder_2", None) is not None:
        return SDXL
    if getattr(pipe, "low_res_scheduler", None) is not None:
        return SD_X4_UPSCALER
    return _sd_family(dict(pipe.text_encoder.config.to_dict()))


def _sd_family(text_encoder_config: dict) -> Family:
    # SD 2.x's OpenCLIP ViT-H uses plain gelu and is 1024 wide; SD 1.x's CLIP ViT-L uses quick_gelu, 768 wide
    te = text_encoder_config
    return SD2 if te.get("hidden_act") == "gelu" or te.get("hidden_size") == 1024 else SD1


def _checkpoint_keys(path: Path) -> list[str]:
    """Tensor names of a single-file checkpoint; a pickle is read with torch's weights-only loader, never run."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        import torch

        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not tensors")
        return list(state.get("state_dict", state))
    except Exception as exc:  # safetensors, torch and pickle each raise their own kind for a damaged file
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise DboothError(f"base model {path}: cannot be read as a checkpoint ({reason}); the file is damaged, "
                          "incomplete or not a model; download it again or set base_model in dbooth.yaml to another model") from None


def _hub_json(repo_id: str, filename: str, *, required: bool = True) -> dict | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from dbooth.util.hub import hub_reachable

    for local_only in (True, False):
        if not local_only and not hub_reachable():  # huggingface_hub would retry for over a minute
            break
        try:
            return json.loads(Path(hf_hub_download(repo_id, filename, local_files_only=local_only)).read_text())
        except EntryNotFoundError:
            if not required:
                return None
            break
        except Exception:  # not cached, offline, or no such repo: try the hub, then give up
            continue
    if not required:
        return None
    raise hub_unreachable(repo_id)


__all__ = ["FAMILIES", "Conditioning", "Family", "SD1", "SD2", "SDXL", "SD_X4_UPSCALER", "SD3", "FLUX", "FLUX2_KLEIN", "ZIMAGE", "detect_family", "family_of", "get_family"]
