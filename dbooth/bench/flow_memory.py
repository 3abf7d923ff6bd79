"""What a flow-matching transformer's training step holds in memory (SD 3.5, FLUX.1), computed on the meta device.

Weights, adapters and optimizer state are counted from the models as dbooth's trainer lays them out: the frozen
transformer in the run's weight dtype, LoRA adapters (the family's ``lora_targets``) in float32 with float32
gradients and AdamW moments; with cached text embeddings the text encoders (T5-XXL among them) and with cached
latents the VAE leave the accelerator. ``host_setup_mb`` is what setting the run up holds in host memory before
anything moves: every part in the weight dtype plus the adapters (``load_pipeline(dtype=...)`` then
``prepare_models``).

Activations are counted, not modelled (``flow_activations``): one forward of the real diffusers transformer on the
meta device with the run's token counts, every tensor autograd saves recorded by size, attention as a fused SDPA
kernel keeps it; with and without gradient checkpointing.

Not counted (measure on a GPU): CUDA autocast's float32 copies (it runs norms in float32, the CPU's does not),
transient buffers (the backward's gradients in flight, one block's temporaries such as the 4x-wide MLP hidden),
the allocator's fragmentation and the CUDA context.

Quantised bases are a later step: ``bytes_per_weight`` is the one place that says what a frozen weight costs.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from dbooth.bench.flow_activations import (
    grad_flags_kept,
    image_tokens,
    saved_activations,
    targeted_linears,
    transformer_inputs,
    weight_dtype,
)
from dbooth.util.errors import DboothError

MB = 1 / 2**20
# The families whose transformer inputs ``flow_activations.transformer_inputs`` builds: activations and FLOPs are
# counted for these; FLUX.2 [klein] and Z-Image get weights, adapters and host memory only.
COUNTED = ("sd3", "flux")
COUNTED_TITLES = ("SD 3.5", "FLUX.1")


def flow_family(denoiser, encoders: dict):
    """SD3 or FLUX, read from the parts (as ``family_of`` reads a pipeline)."""
    from dbooth.families import family_of

    return family_of(SimpleNamespace(transformer=denoiser, **encoders))


def bytes_per_weight(train: dict) -> int:
    """What one frozen weight costs: the weight dtype of ``train.mixed_precision`` (a quantised base goes here)."""
    return 2 if train["mixed_precision"] in ("fp16", "bf16") else 4


def tensor_count(model: torch.nn.Module) -> int:
    """Parameters plus floating-point buffers (SD 3.5's position table): what the weight dtype applies to."""
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for b in model.buffers() if b.is_floating_point()))


def text_tokens(family, train: dict, encoders: dict) -> int:
    """The context's length: T5's (train.flow.max_sequence_length or the family's), after SD 3.5's CLIP tokens (77)."""
    t5 = train["flow"]["max_sequence_length"] or family.t5_max_length
    return t5 + (_clip_tokens(encoders, family) if family.name == "sd3" else 0)


def _clip_tokens(encoders: dict, family) -> int:
    clip = next(te for name, te in encoders.items() if name != family.t5_name)
    return clip.config.max_position_embeddings


def vae_downsampling(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def lora_parameters(model: torch.nn.Module, rank: int, targets: list[str], dora: bool = False) -> int:
    """Adapter parameters PEFT adds for ``targets`` (DoRA: a magnitude per output too)."""
    return sum(rank * (m.in_features + m.out_features) + (m.out_features if dora else 0)
               for m in targeted_linears(model, targets))


def flow_static_memory(denoiser, vae, encoders: dict, train: dict, device_type: str, *, prior: bool = False) -> dict:
    """MB on the training device (``weights_mb``, ``gradients_mb``, ``optimizer_mb``; ``total_mb`` their sum as for
    the UNet families), the activation estimate of a step (``activations_mb`` as the run is set, and both
    ``activations_plain_mb`` and ``activations_checkpointed_mb``), ``peak_estimate_mb`` (total + activations),
    ``text_encoders_mb`` and ``host_setup_mb``. The activation figures only for the ``COUNTED`` families."""
    family = flow_family(denoiser, encoders)
    frozen = bytes_per_weight(train)
    trainable = _trainable(denoiser, encoders, family, train)
    n_denoiser, n_vae = tensor_count(denoiser), tensor_count(vae)
    n_text = {name: tensor_count(te) for name, te in encoders.items()}
    weights = _device_weights(n_denoiser, n_vae, n_text, family, train, device_type) + trainable * 4 * (
        train["method"] == "lora")
    optimizer_bytes = 2 if train["optimizer"] == "adamw8bit" else 8
    parts = {"weights_mb": weights * MB, "gradients_mb": trainable * 4 * MB,
             "optimizer_mb": trainable * optimizer_bytes * MB}
    parts["total_mb"] = sum(parts.values())
    down, tokens = vae_downsampling(vae), text_tokens(family, train, encoders)
    if family.name in COUNTED:
        act = saved_activations(denoiser, family, train, train["batch_size"] * (2 if prior else 1), tokens, down)
        parts.update(activations_plain_mb=act["plain"] * MB, activations_checkpointed_mb=act["checkpointed"] * MB)
        parts["activations_mb"] = parts["activations_checkpointed_mb" if train["gradient_checkpointing"]
                                        else "activations_plain_mb"]
        parts["peak_estimate_mb"] = parts["total_mb"] + parts["activations_mb"]
    parts["text_encoders_mb"] = sum(n_text.values()) * frozen * MB
    parts["host_setup_mb"] = ((n_denoiser + n_vae + sum(n_text.values())) * frozen + trainable * 4) * MB
    parts.update(trainable_parameters=trainable, image_tokens=image_tokens(train["resolution"], down),
                 text_tokens=tokens, family=family.name)
    return parts


def _device_weights(n_denoiser: int, n_vae: int, n_text: dict, family, train: dict, device_type: str) -> int:
    """Bytes of the models' own weights on the training device (adapters apart)."""
    frozen = bytes_per_weight(train)
    full = train["method"] == "full"
    trained = {k for k in n_text if k != family.t5_name} if train["train_text_encoder"] else set()
    one_memory = device_type == "cpu"  # on the CPU nothing leaves
    cached_text = train["cache_text_embeddings"] and not trained  # encoded once, then the encoders leave
    total = n_denoiser * (4 if full else frozen)
    for name, count in n_text.items():
        if name in trained:
            total += count * (4 if full else frozen)
        elif one_memory or not cached_text:
            total += count * frozen
    if one_memory or not train["cache_latents"]:
        total += n_vae * frozen
    return total


def _trainable(denoiser, encoders: dict, family, train: dict) -> int:
    """Parameters the optimizer updates: LoRA adapters (T5 never gets any), or the whole transformer."""
    lcfg = train["lora"]
    trained = {k: v for k, v in encoders.items() if k != family.t5_name} if train["train_text_encoder"] else {}
    if train["method"] == "full":
        return sum(p.numel() for m in [denoiser, *trained.values()] for p in m.parameters())
    dora = lcfg["use_dora"]
    total = lora_parameters(denoiser, lcfg["rank"], family.lora_targets(lcfg["target_modules"]), dora)
    for te in trained.values():
        total += lora_parameters(te, lcfg["text_encoder_rank"] or lcfg["rank"], lcfg["text_encoder_target_modules"],
                                 dora)
    return total


def count_flow_step_flops(denoiser, vae, encoders: dict, train: dict, prior: bool, count) -> dict[str, int]:
    """FLOPs of one step of a flow transformer on the meta device (``count``: flops.py's counter), counted as the
    UNet families' are: LoRA's backward as the gradient with respect to the activations."""
    family = flow_family(denoiser, encoders)
    if family.name not in COUNTED:
        raise DboothError(f"bench: FLOPs are counted for {' and '.join(COUNTED_TITLES)} transformers, not yet "
                          f"{family.title}'s")
    n = train["batch_size"] * (2 if prior else 1)
    dtype = weight_dtype(train)
    denoiser.to(dtype)
    tokens = text_tokens(family, train, encoders)
    out: dict[str, int] = {}
    if not train["cache_latents"]:
        pixels = torch.empty(n, 3, train["resolution"], train["resolution"], device="meta")
        with torch.no_grad():
            out["vae_encode"] = count(lambda: vae.encode(pixels))
    if train["train_text_encoder"] or not train["cache_text_embeddings"]:
        out["text_encoder"] = _text_flops(encoders, family, n, tokens, count)
    full = train["method"] == "full"
    inputs = transformer_inputs(denoiser, family, n, train["resolution"], tokens, dtype, down=vae_downsampling(vae))
    inputs["hidden_states"].requires_grad_(not full)

    def step():
        denoiser(**inputs)[0].float().pow(2).mean().backward()

    with grad_flags_kept(denoiser):
        denoiser.requires_grad_(full)
        out["transformer"] = count(step)
    out["total"] = sum(out.values())
    return out


def _text_flops(encoders: dict, family, n: int, tokens: int, count) -> int:
    """The text encoders' forwards (T5 at its length, each CLIP at its own); a trained CLIP's backward is left out."""
    clip = _clip_tokens(encoders, family)
    t5 = tokens - (clip if family.name == "sd3" else 0)

    def encode():
        with torch.no_grad():
            for name, te in encoders.items():
                length = t5 if name == family.t5_name else te.config.max_position_embeddings
                te(torch.zeros(n, length, dtype=torch.long, device="meta"))

    return count(encode)
