"""Read and rewrite diffusers-format LoRA files: per-module (down, up) pairs plus the LoraConfig that scales them.

The file written by ``save_lora_weights`` may or may not carry diffusers' ``lora_adapter_metadata``
(rank, alpha, patterns). Without it, diffusers would assume alpha == rank, which is wrong for a run trained
with another alpha, so the caller passes the run's alpha as ``default_alpha``.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig
from peft.utils.other import get_pattern_key
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dbooth.util.errors import DboothError
from dbooth.export.dtypes import cast_floats
from dbooth.util.fsutil import atomic_path

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")  # transformer: SD 3.5, FLUX; text_encoder_2: SDXL, SD 3.5
METADATA_KEY = "lora_adapter_metadata"  # where diffusers keeps the LoraConfig in a file's __metadata__

# Key endings of LoRA weights in the layouts diffusers writes (old attn-proc, text-encoder, and peft spellings).
_ENDINGS = {
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    # DoRA's magnitude per output channel (the text encoders' carry ".weight", see Family.save_lora)
    ".lora_magnitude_vector": "magnitude",
    ".lora_magnitude_vector.weight": "magnitude",
}


@dataclass
class LoraComponent:
    """One model's LoRA: ``modules`` maps a module path (e.g. ``down_blocks.0...attn1.to_q``) to (down, up)."""

    name: str
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]
    config: dict = field(default_factory=dict)  # LoraConfig keyword arguments
    magnitudes: dict[str, torch.Tensor] = field(default_factory=dict)  # DoRA: module path -> magnitude vector

    @property
    def is_dora(self) -> bool:
        return bool(self.magnitudes)

    def rank(self, module: str) -> int:
        return self.modules[module][0].shape[0]

    def scale(self, module: str) -> float:
        """The factor peft multiplies ``up @ down`` by for this module (alpha / r, or alpha / sqrt(r))."""
        alpha_pattern = self.config.get("alpha_pattern") or {}
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module), self.config["lora_alpha"])
        r = self.rank(module)
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    def peft_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for module, (down, up) in self.modules.items():
            out[f"{module}.lora_A.weight"] = down
            out[f"{module}.lora_B.weight"] = up
        suffix = ".weight" if self.name.startswith("text_encoder") else ""
        for module, magnitude in self.magnitudes.items():
            out[f"{module}.lora_magnitude_vector{suffix}"] = magnitude
        return out

    def with_scale_in_weights(self) -> "LoraComponent":
        """The same deltas with each module's scale multiplied into its up matrix and alpha = rank: a reader that
        ignores the stored alpha (ComfyUI reads no adapter metadata) then applies what diffusers applies."""
        modules = {m: (down, up * self.scale(m)) for m, (down, up) in self.modules.items()}
        ranks = {m: down.shape[0] for m, (down, _) in modules.items()}
        config = {**self.config, "lora_alpha": self.config["r"], "use_rslora": False,
                  "alpha_pattern": {m: r for m, r in ranks.items() if r != self.config["r"]}}
        return LoraComponent(self.name, modules, config, dict(self.magnitudes))


@dataclass
class LoraFile:
    path: Path
    components: dict[str, LoraComponent]
    file_metadata: dict[str, str]

    @property
    def is_dora(self) -> bool:
        return any(c.is_dora for c in self.components.values())

    def adapter_metadata(self) -> dict:
        """The flat ``{"unet.r": ..., "text_encoder.lora_alpha": ...}`` dict diffusers stores and reads back."""
        return {f"{c.name}.{k}": v for c in self.components.values() for k, v in c.config.items()}


def read_lora_file(path: str | Path, *, default_alpha: float | None = None) -> LoraFile:
    path = Path(path)
    if not path.is_file():
        raise DboothError(f"LoRA file not found: {path}")
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        file_metadata = dict(f.metadata() or {})
    stored = json.loads(file_metadata[METADATA_KEY]) if file_metadata.get(METADATA_KEY) else {}

    pairs: dict[str, dict[str, dict[str, torch.Tensor]]] = {c: {} for c in COMPONENTS}
    for key, tensor in tensors.items():
        component, _, rest = key.partition(".")
        ending = next((e for e in _ENDINGS if rest.endswith(e)), None)
        if component not in pairs or ending is None:
            raise DboothError(
                f"{path}: unexpected key {key!r}; expected diffusers LoRA keys like 'unet.<module>.lora.down.weight' "
                "or 'transformer.<module>.lora_A.weight' (LoRA biases and other adapters are not supported)"
            )
        pairs[component].setdefault(rest[: -len(ending)], {})[_ENDINGS[ending]] = tensor

    components = {}
    for name, modules in pairs.items():
        if not modules:
            continue
        for module, pair in modules.items():
            if not {"down", "up"} <= set(pair):
                raise DboothError(f"{path}: {name}.{module} has no matching lora up/down pair")
        magnitudes = {m: p["magnitude"] for m, p in sorted(modules.items()) if "magnitude" in p}
        modules = {m: (p["down"], p["up"]) for m, p in sorted(modules.items())}
        config = _stored_config(stored, name) or _inferred_config(modules, default_alpha, dora=bool(magnitudes))
        components[name] = LoraComponent(name, modules, config, magnitudes)
    if not components:
        raise DboothError(f"{path}: no LoRA weights in the file")
    return LoraFile(path, components, file_metadata)


def _stored_config(stored: dict, component: str) -> dict | None:
    prefix = f"{component}."
    config = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
    if not config:
        return None
    known = set(LoraConfig.__dataclass_fields__)  # drop keys a newer peft may have written
    return {k: v for k, v in config.items() if k in known}


def _inferred_config(modules: dict[str, tuple[torch.Tensor, torch.Tensor]], alpha: float | None,
                     dora: bool = False) -> dict:
    ranks = {m: down.shape[0] for m, (down, _) in modules.items()}
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    rank_pattern = {m: k for m, k in ranks.items() if k != r}
    return {
        "r": r,
        "lora_alpha": float(alpha) if alpha is not None else r,
        "rank_pattern": rank_pattern,
        # no alpha known: diffusers' convention, scale 1.0 (alpha == rank) for every module
        "alpha_pattern": {} if alpha is not None else dict(rank_pattern),
        "target_modules": sorted(modules),
        "init_lora_weights": False,
        "use_dora": dora,
    }


def save_lora_file(
    lora: LoraFile, path: str | Path, *, dtype: torch.dtype = torch.float32, metadata: dict[str, str] | None = None
) -> Path:
    """Rewrite ``lora`` as a diffusers-format file whose metadata always records rank and alpha.

    Keys and layout stay as diffusers wrote them; ``lora_adapter_metadata`` is (re)written so that
    ``load_lora_weights`` applies the run's alpha even where the trainer's file did not record it.
    """
    path = Path(path)
    tensors = cast_floats(load_file(str(lora.path)), dtype)
    header = {"format": "pt", **(metadata or {}), METADATA_KEY: json.dumps(lora.adapter_metadata(), sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def _clip_path(component: str, key: str) -> str:
    """CLIP module paths keep the ``text_model.`` that transformers>=5 dropped from ``CLIPTextModel``: ComfyUI maps
    only ``text_encoder.text_model.encoder.layers...`` (its CLIP-L adapters are otherwise silently skipped), and
    diffusers reads both."""
    if component.startswith("text_encoder") and not key.startswith(("text_model.", "text_projection")):
        return f"text_model.{key}"
    return key


def save_scaled_lora_file(lora: LoraFile, path: str | Path, *, dtype: torch.dtype = torch.float32,
                          metadata: dict[str, str] | None = None) -> Path:
    """``lora`` in diffusers' peft layout (``transformer.<module>.lora_A.weight``) with every scale in the weights
    (``LoraComponent.with_scale_in_weights``) and that alpha = rank in the metadata: diffusers, which reads the
    metadata, and ComfyUI, which ignores it, apply the same delta."""
    components = [c.with_scale_in_weights() for c in lora.components.values()]
    tensors = {f"{c.name}.{_clip_path(c.name, k)}": v for c in components for k, v in c.peft_state_dict().items()}
    stored = {f"{c.name}.{k}": v for c in components for k, v in c.config.items()}
    header = {"format": "pt", **(metadata or {}), METADATA_KEY: json.dumps(stored, sort_keys=True)}
    with atomic_path(Path(path)) as tmp:
        save_file(cast_floats(tensors, dtype), str(tmp), metadata=header)
    return Path(path)
