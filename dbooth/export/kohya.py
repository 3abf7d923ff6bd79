"""Rewrite a diffusers-format LoRA in the kohya-ss / AUTOMATIC1111 / ComfyUI key layout.

Each adapted module ``M`` becomes three tensors: ``<name>.lora_down.weight`` (peft's lora_A),
``<name>.lora_up.weight`` (lora_B) and ``<name>.alpha``; those tools apply ``up @ down * alpha / rank``.
``<name>`` is a module path with dots turned into underscores, behind a prefix per model:

- SD 1.x / 2.x: ``lora_unet_`` + diffusers' module path (sd-scripts trains these on a UNet with diffusers'
  block names, e.g. ``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``), ``lora_te_``.
- SDXL: ``lora_unet_`` + the *original* (sgm) module path, because sd-scripts trains SDXL on its own copy of
  Stability's UNet (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``); ``lora_te1_`` and
  ``lora_te2_`` for the two text encoders. diffusers maps those names back with the UNet's config
  (``_maybe_map_sgm_blocks_to_diffusers``); ComfyUI and AUTOMATIC1111 address their sgm UNet by them.

Text-encoder names keep CLIP's ``text_model_`` prefix (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``)
even where transformers>=5 dropped it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from dbooth.util.errors import DboothError
from dbooth.export.dtypes import cast_floats
from dbooth.families.ldm_layout import ldm_name, unet_module_map
from dbooth.export.lora_file import LoraFile
from dbooth.export.modelspec import check_prediction_type, modelspec_metadata
from dbooth.families import FAMILIES as _FAMILIES
from dbooth.util.fsutil import atomic_path

# each family (dbooth.families) says its kohya prefixes and version tag; kept here by name for the writers
FAMILIES = tuple(_FAMILIES)
PREFIXES = {name: dict(f.kohya_prefixes) for name, f in _FAMILIES.items()}
BASE_MODEL_VERSIONS = {name: f.kohya_base_version for name, f in _FAMILIES.items()}


def kohya_name(component: str, module: str, family: str = "sd1", unet_map: dict[str, str] | None = None) -> str:
    """kohya's name for ``module`` of ``component``; SDXL UNet modules need ``unet_map`` (``unet_module_map``)."""
    prefixes = PREFIXES[_check_family(family)]
    if component not in prefixes:
        raise DboothError(f"a {family} LoRA has no {component} (kohya names exist for {', '.join(prefixes)})")
    if component == "unet" and _FAMILIES[family].kohya_unet_names == "original":
        renamed = ldm_name(module, unet_map) if unet_map is not None else None
        if renamed is None:
            raise DboothError(f"no original {family} UNet name for LoRA module {module!r}")
        module = renamed
    if component.startswith("text_encoder") and not module.startswith(("text_model.", "text_projection")):
        module = f"text_model.{module}"
    return prefixes[component] + module.replace(".", "_")


def lora_to_kohya(
    lora: LoraFile, family: str = "sd1", unet: UNet2DConditionModel | Mapping | None = None
) -> dict[str, torch.Tensor]:
    """Kohya-layout tensors; each module's alpha is chosen so alpha / rank equals peft's scaling for it.

    ``unet`` (the base UNet, or just its config) is needed for SDXL, whose kohya names follow the UNet's
    original block numbering.
    """
    if lora.is_dora:
        raise DboothError(
            f"{lora.path}: a DoRA LoRA (train.lora.use_dora) has magnitude vectors the kohya format cannot hold; "
            "export --format lora (diffusers) or a merged format (diffusers, single-file)"
        )
    unet_map = None
    if _FAMILIES[_check_family(family)].kohya_unet_names == "original" and "unet" in lora.components:
        if unet is None:
            raise DboothError(f"kohya names for a {family} UNet LoRA need the base UNet (or its config)")
        unet_map = unet_module_map(_as_unet(unet))
    out: dict[str, torch.Tensor] = {}
    for component in lora.components.values():
        if component.name == "transformer":  # FLUX: BFL's names and fused projections (unet: its config)
            if _FAMILIES[family].kohya_unet_names != "bfl" or unet is None:
                raise DboothError(f"a {family} transformer LoRA has no kohya layout dbooth writes; export --format lora")
            from dbooth.export.flux_kohya import flux_lora_to_bfl

            out.update(flux_lora_to_bfl(component, dict(unet)))
            continue
        for module, (down, up) in component.modules.items():
            name = kohya_name(component.name, module, family, unet_map)
            out[f"{name}.lora_down.weight"] = down
            out[f"{name}.lora_up.weight"] = up
            out[f"{name}.alpha"] = torch.tensor(component.scale(module) * component.rank(module))
    return out


def kohya_metadata(
    lora: LoraFile,
    *,
    base_model: str,
    output_name: str,
    steps: int,
    comment: str,
    family: str = "sd1",
    prediction_type: str = "epsilon",
) -> dict[str, str]:
    """The ``ss_*`` keys kohya tools and AUTOMATIC1111's LoRA browser read (values are strings), plus ModelSpec.

    ``ss_base_model_version`` is what sd-scripts writes: ``sd_v1``/``sd_v2`` (``_v`` appended for
    v-prediction) or ``sdxl_base_v1-0``; AUTOMATIC1111 files a LoRA under SDXL by that key's ``sdxl_``
    prefix and under SD2 by ``ss_v2``.
    """
    any_component = next(iter(lora.components.values()))
    any_module = next(iter(any_component.modules))
    v_pred = check_prediction_type(prediction_type) == "v_prediction"
    version = BASE_MODEL_VERSIONS[_check_family(family)]
    if family != "sdxl" and v_pred:
        version += "_v"
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(any_component.rank(any_module)),
        "ss_network_alpha": f"{any_component.scale(any_module) * any_component.rank(any_module):g}",
        "ss_network_train_unet_only": str(not any(c.startswith("text_encoder") for c in lora.components)),
        "ss_base_model_version": version,
        "ss_v2": str(family == "sd2"),
        "ss_v_parameterization": str(v_pred),
        "ss_sd_model_name": base_model,
        "ss_output_name": output_name,
        "ss_max_train_steps": str(steps),
        "ss_training_comment": comment,
        **modelspec_metadata(family, prediction_type, title=output_name, lora=True),
    }


def save_kohya_lora(
    lora: LoraFile,
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
    family: str = "sd1",
    unet: UNet2DConditionModel | Mapping | None = None,
) -> Path:
    """Write ``lora`` to ``path`` in kohya layout (weights in ``dtype``, alphas kept float32)."""
    path = Path(path)
    tensors = lora_to_kohya(lora, family, unet)
    weights = cast_floats({k: v for k, v in tensors.items() if not k.endswith(".alpha")}, dtype)
    alphas = {k: v.to(torch.float32) for k, v in tensors.items() if k.endswith(".alpha")}
    with atomic_path(path) as tmp:
        save_file(weights | alphas, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return path


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise DboothError(f"unknown model family {family!r}: use one of {', '.join(FAMILIES)}")
    return family


def _as_unet(unet: UNet2DConditionModel | Mapping) -> UNet2DConditionModel:
    """A UNet as given, or one built from its config on the meta device (structure only, no memory)."""
    if isinstance(unet, UNet2DConditionModel):
        return unet
    with init_empty_weights():
        return UNet2DConditionModel.from_config(dict(unet))
