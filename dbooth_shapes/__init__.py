"""Built-in models and their world: a tiny pretrained text-to-image model that needs no download.

``builtin:shapes`` is pretrained on a procedurally rendered world (``world``) and
``builtin:shapes-x4`` (a ``StableDiffusionUpscalePipeline``) takes its 64 px images to 256 px; example
DreamBooth subjects live in ``subjects`` and an exact judge of generated images in ``oracle``.
"""

from __future__ import annotations

from pathlib import Path

from dbooth.util.errors import DboothError

_HERE = Path(__file__).resolve().parent
# builtin:shapes-x4 is its StableDiffusionUpscalePipeline (stage b), taking the model's images to 4x the side
BUILTIN_MODELS: dict[str, Path] = {"builtin:shapes": _HERE / "shapes", "builtin:shapes-x4": _HERE / "shapes-x4"}
# The script that trains each one, named when its folder is missing.
_PRETRAIN_SCRIPT = {"builtin:shapes": "tools.shapes.pretrain", "builtin:shapes-x4": "tools.shapes.pretrain_upscaler"}


def builtin_model_path(name: str) -> Path:
    """The folder of a built-in model, e.g. ``builtin_model_path("builtin:shapes")``."""
    key = name if name.startswith("builtin:") else f"builtin:{name}"
    if key not in BUILTIN_MODELS:
        raise DboothError(f"unknown built-in model {name!r}; available: {', '.join(BUILTIN_MODELS)}")
    path = BUILTIN_MODELS[key]
    if not (path / "model_index.json").is_file():
        raise DboothError(f"built-in model {key} is missing at {path}; run python -m {_PRETRAIN_SCRIPT[key]} --out {path}")
    return path


__all__ = ["BUILTIN_MODELS", "builtin_model_path"]
