"""diffusers UNet and VAE names -> the original (ldm / sgm) names Stable Diffusion checkpoints use.

The renaming is derived from each model's own block structure (how many resnets, attentions and samplers
each block has), so it gives exactly SD 1.x's, SD 2.x's and SDXL's names for those models and sensible
names for any other UNet2DConditionModel configuration. kohya's SDXL LoRA names use the same map.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from dbooth.util.errors import DboothError

# diffusers ResnetBlock2D -> ldm ResBlock
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    # SDXL's size/crop/pooled-text conditioning MLP (addition_embed_type="text_time"), or a class embedding
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
# diffusers VAE attention (linear layers) -> ldm AttnBlock (1x1 convs)
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {"conv_in": "conv_in", "conv_norm_out": "norm_out", "conv_out": "conv_out"}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}


def _resnet(diffusers: str, ldm: str, inner: dict[str, str]) -> dict[str, str]:
    return {f"{diffusers}.{d}": f"{ldm}.{o}" for d, o in inner.items()}


def unet_module_map(unet: UNet2DConditionModel) -> dict[str, str]:
    """diffusers module path -> ldm module path for ``unet``, read off its actual block structure."""
    out = dict(_UNET_TOP)
    i = 1  # input_blocks.0 is conv_in
    for b, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            out |= _resnet(f"down_blocks.{b}.resnets.{j}", f"input_blocks.{i}.0", _UNET_RESNET)
            if attentions is not None:
                out[f"down_blocks.{b}.attentions.{j}"] = f"input_blocks.{i}.1"
            i += 1
        if block.downsamplers is not None:
            out[f"down_blocks.{b}.downsamplers.0.conv"] = f"input_blocks.{i}.0.op"
            i += 1

    mid = unet.mid_block
    if mid is not None:  # resnet, (attention, resnet)*  ->  middle_block.0, .1, .2, ...
        for k in range(len(mid.resnets)):
            out |= _resnet(f"mid_block.resnets.{k}", f"middle_block.{2 * k}", _UNET_RESNET)
        for k in range(len(getattr(mid, "attentions", None) or [])):
            out[f"mid_block.attentions.{k}"] = f"middle_block.{2 * k + 1}"

    i = 0
    for b, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            out |= _resnet(f"up_blocks.{b}.resnets.{j}", f"output_blocks.{i}.0", _UNET_RESNET)
            if attentions is not None:
                out[f"up_blocks.{b}.attentions.{j}"] = f"output_blocks.{i}.1"
            i += 1
        if block.upsamplers is not None:  # rides on the block's last output block, after its attention
            out[f"up_blocks.{b}.upsamplers.0.conv"] = f"output_blocks.{i - 1}.{2 if attentions is not None else 1}.conv"
    return out


def vae_module_map(vae: AutoencoderKL) -> dict[str, str]:
    """diffusers module path -> ldm module path for ``vae``."""
    out = {f"{part}.{d}": f"{part}.{o}" for part in ("encoder", "decoder") for d, o in _VAE_TOP.items()}
    out |= {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for b, block in enumerate(vae.encoder.down_blocks):
        for j in range(len(block.resnets)):
            out |= _resnet(f"encoder.down_blocks.{b}.resnets.{j}", f"encoder.down.{b}.block.{j}", _VAE_RESNET)
        if block.downsamplers is not None:
            out[f"encoder.down_blocks.{b}.downsamplers.0"] = f"encoder.down.{b}.downsample"
    n = len(vae.decoder.up_blocks)  # ldm numbers decoder levels from the lowest resolution up
    for b, block in enumerate(vae.decoder.up_blocks):
        for j in range(len(block.resnets)):
            out |= _resnet(f"decoder.up_blocks.{b}.resnets.{j}", f"decoder.up.{n - 1 - b}.block.{j}", _VAE_RESNET)
        if block.upsamplers is not None:
            out[f"decoder.up_blocks.{b}.upsamplers.0"] = f"decoder.up.{n - 1 - b}.upsample"
    for part in ("encoder", "decoder"):
        mid = getattr(vae, part).mid_block
        for k in range(len(mid.resnets)):
            out |= _resnet(f"{part}.mid_block.resnets.{k}", f"{part}.mid.block_{k + 1}", _VAE_RESNET)
        for k, attn in enumerate(mid.attentions):
            if attn is not None:
                out |= _resnet(f"{part}.mid_block.attentions.{k}", f"{part}.mid.attn_{k + 1}", _VAE_ATTN)
    return out


def ldm_name(path: str, module_map: dict[str, str]) -> str | None:
    """Rename a module path or weight key by its longest mapped module prefix; None when none is mapped."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in module_map:
            return ".".join([module_map[prefix], *parts[n:]])
    return None


def _convert(model: torch.nn.Module, module_map: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    out, unmapped = {}, []
    for key, tensor in model.state_dict().items():
        new = ldm_name(key, module_map)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = tensor
    if unmapped:
        raise DboothError(
            f"single-file export has no original-layout name for {what} weights "
            f"{', '.join(unmapped[:3])}{' ...' if len(unmapped) > 3 else ''}: "
            "this model has parts the original Stable Diffusion layout lacks; export with --format diffusers instead"
        )
    return out


def unet_to_original(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    return _convert(unet, unet_module_map(unet), "UNet")


def vae_to_original(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    out = _convert(vae, vae_module_map(vae), "VAE")
    for key, tensor in out.items():  # ldm's VAE attention uses 1x1 convolutions where diffusers uses linears
        if ".mid.attn_" in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            if tensor.ndim == 2:
                out[key] = tensor[:, :, None, None]
    return out
