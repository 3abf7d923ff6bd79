"""Text encoders in the original checkpoints' layouts: OpenAI CLIP under its Hugging Face names, OpenCLIP under its own.

SD 1.x (``cond_stage_model.transformer.``) and SDXL's first encoder (``conditioner.embedders.0.transformer.``)
keep the Hugging Face ``CLIPTextModel`` names with the ``text_model.`` prefix. SD 2.x
(``cond_stage_model.model.``) and SDXL's second encoder (``conditioner.embedders.1.model.``) are stored as
OpenCLIP modules: fused q/k/v ``in_proj`` weights, ``resblocks``, ``ln_final``, and a ``text_projection``
that is the transpose of the Hugging Face linear weight (OpenCLIP multiplies ``x @ text_projection``).
"""

from __future__ import annotations

import torch

from dbooth.util.errors import DboothError

_BLOCK = {  # per-layer Hugging Face name -> OpenCLIP name (q/k/v are fused separately)
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}


def hf_clip_state_dict(text_encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's weights under ``text_model.*`` (transformers>=5 dropped that wrapper from CLIPTextModel)."""
    out = {}
    for key, tensor in text_encoder.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if not key.startswith(("text_model.", "text_projection.")):
            key = f"text_model.{key}"
        out[key] = tensor
    return out


def clip_to_openclip(text_encoder: torch.nn.Module, *, penultimate: bool = False) -> dict[str, torch.Tensor]:
    """``text_encoder`` in OpenCLIP names (without the checkpoint prefix).

    ``penultimate``: the Hugging Face model holds the layers *before* OpenCLIP's last one (SD 2.x's encoder
    has 23 of ViT-H's 24, since SD 2.x conditions on the penultimate layer). The original checkpoints hold
    all 24 and a text projection, and loaders expect them, so the missing block is written as an exact
    identity (zero output projections, so a client that reads the last layer gets the penultimate's
    features) and the projection as the identity. diffusers drops both when it reads the file back.
    """
    hf = hf_clip_state_dict(text_encoder)
    out = {new: hf.pop(old) for old, new in _TOP.items()}
    if "text_projection.weight" in hf:
        out["text_projection"] = hf.pop("text_projection.weight").T.contiguous()
    n = text_encoder.config.num_hidden_layers
    for i in range(n):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            qkv = [hf.pop(f"{src}self_attn.{p}_proj.{part}") for p in "qkv"]
            out[f"{dst}attn.in_proj_{part}"] = torch.cat(qkv)
            for old, new in _BLOCK.items():
                out[f"{dst}{new}.{part}"] = hf.pop(f"{src}{old}.{part}")
    if hf:
        raise DboothError(f"text encoder weights with no OpenCLIP name: {', '.join(sorted(hf)[:3])}")
    if penultimate:
        out |= _identity_block(out, last=n - 1, new=n)
        out.setdefault("text_projection", torch.eye(text_encoder.config.hidden_size))
    return out


def _identity_block(state: dict[str, torch.Tensor], *, last: int, new: int) -> dict[str, torch.Tensor]:
    """A residual block that returns its input: every weight zero (layer-norm scales one)."""
    src, dst = f"transformer.resblocks.{last}.", f"transformer.resblocks.{new}."
    out = {}
    for key, tensor in state.items():
        if key.startswith(src):
            name = key[len(src) :]
            fill = torch.ones_like if name in ("ln_1.weight", "ln_2.weight") else torch.zeros_like
            out[dst + name] = fill(tensor)
    return out
