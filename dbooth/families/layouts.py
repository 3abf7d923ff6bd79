"""The original (LDM/sgm) single-file key layouts: their prefixes, and which family a checkpoint is from.

Reading (``detect_family`` on a ``.safetensors`` file) and writing (``dbooth.export.single_file``) share this
knowledge, so it lives with the families, as diffusers keeps its equivalent in its loaders layer.
Model-free: it reads key names only.
"""

from __future__ import annotations

from typing import Iterable

from dbooth.util.errors import DboothError

LAYOUTS = ("sd1", "sd2", "sdxl")
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."  # sd1
OPENCLIP_PREFIX = "cond_stage_model.model."  # sd2
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT_2_PREFIX = "conditioner.embedders.1.model."


def detect_single_file_layout(keys: Iterable[str]) -> str:
    """The family of a checkpoint in the original layout, from its key names alone."""
    keys = set(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("conditioner.embedders.1."):
        return "sdxl"
    if has(SDXL_TEXT_PREFIX):
        return "sdxl"  # a first SDXL encoder without the second is still the SDXL layout
    if has("conditioner.embedders.0.model.") or has(OPENCLIP_PREFIX):
        if has(UNET_PREFIX + "label_emb."):  # the SDXL refiner: OpenCLIP only, plus size conditioning
            raise DboothError("this checkpoint looks like the SDXL refiner, which dbooth does not train")
        return "sd2"  # conditioner.embedders.0.model: SD 2.x saved by Stability's sgm code
    if has(TEXT_PREFIX):
        return "sd1"
    if has(UNET_PREFIX + "label_emb."):
        return "sdxl"
    if has(UNET_PREFIX + "joint_blocks.") or has("joint_blocks."):
        return "sd3"
    if has(UNET_PREFIX + "double_blocks.") or has("double_blocks."):
        return "flux"
    raise DboothError(
        "cannot tell this checkpoint's model family: it has no text encoder weights "
        "(cond_stage_model.* or conditioner.embedders.*), no SDXL size conditioning and no SD 3 or FLUX blocks"
    )
