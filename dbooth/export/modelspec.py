"""How a file says which model family and prediction type it is for: Stability's ModelSpec metadata
(``modelspec.*``, read by kohya's tools, SwarmUI and others) and the marker keys ComfyUI reads.
"""

from __future__ import annotations

import torch

from dbooth.util.errors import DboothError

PREDICTION_TYPES = ("epsilon", "v_prediction", "flow")  # flow: the flow-matching families (SD 3.5, FLUX.1)
_IMPL_STABILITY = "https://github.com/Stability-AI/generative-models"
_IMPL_DIFFUSERS = "diffusers"


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise DboothError(
            f"prediction type {prediction_type!r} has no single-file marker: use one of {', '.join(PREDICTION_TYPES)}"
        )
    return prediction_type


def architecture(layout: str, prediction_type: str) -> str:
    """The ModelSpec architecture id, as sd-scripts writes it (SD 2.x is named by its two releases)."""
    if layout in _FLOW_ARCHITECTURES:
        return _FLOW_ARCHITECTURES[layout]
    if layout == "sdxl":
        return "stable-diffusion-xl-v1-base"
    if layout == "sd2":
        return "stable-diffusion-v2-768-v" if prediction_type == "v_prediction" else "stable-diffusion-v2-512"
    return "stable-diffusion-v1"


# the ids sd-scripts writes for these families (its FLUX.1 and SD 3.x trainers)
_FLOW_ARCHITECTURES = {"flux": "flux-1-dev", "sd3": "stable-diffusion-v3.5"}


def default_resolution(layout: str, prediction_type: str) -> int:
    return {"sdxl": 1024, "flux": 1024, "sd3": 1024, "sd2": 768 if prediction_type == "v_prediction" else 512}.get(layout, 512)


def modelspec_metadata(
    layout: str, prediction_type: str, *, title: str, resolution: int | None = None, lora: bool = False
) -> dict[str, str]:
    """The required ModelSpec 1.0 fields plus ``modelspec.prediction_type`` (``epsilon`` or ``v``).

    A LoRA's architecture carries a ``/lora`` suffix; sd-scripts marks SD 1.x/2.x LoRAs (which use diffusers'
    module names) as a diffusers implementation and checkpoints and SDXL LoRAs (original names) as Stability's.
    """
    check_prediction_type(prediction_type)
    size = resolution or default_resolution(layout, prediction_type)
    diffusers_names = lora and layout != "sdxl"
    return {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture(layout, prediction_type) + ("/lora" if lora else ""),
        "modelspec.implementation": _IMPL_DIFFUSERS if diffusers_names else _IMPL_STABILITY,
        "modelspec.title": title,
        "modelspec.resolution": f"{size}x{size}",
        **({} if prediction_type == "flow" else {"modelspec.prediction_type": "v" if prediction_type == "v_prediction"
                                                 else "epsilon"}),
    }


def prediction_markers(prediction_type: str, *, zero_terminal_snr: bool = False) -> dict[str, torch.Tensor]:
    """Empty tensors whose presence selects v-prediction (``v_pred``) and zero terminal SNR (``ztsnr``) in ComfyUI.

    ComfyUI reads them for SDXL-family checkpoints (for SD 2.x it guesses the prediction type from the
    weights, so there they only inform other readers); diffusers' ``from_single_file`` ignores them.
    """
    if check_prediction_type(prediction_type) != "v_prediction":
        return {}
    out = {"v_pred": torch.tensor([])}
    if zero_terminal_snr:
        out["ztsnr"] = torch.tensor([])
    return out
