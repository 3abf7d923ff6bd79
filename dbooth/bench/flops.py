"""What one training step costs on paper: FLOPs and the memory that does not depend on activations.

Both are computed from the base model's configs on the ``meta`` device, so they cost no memory and
no compute and work for SD 1.5 or SDXL on any machine. FLOPs are counted by torch's FlopCounterMode
(matmuls, convolutions, attention); achieved TFLOP/s = FLOPs per step x steps/s.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Dense (no sparsity) peak TFLOP/s from the vendors' datasheets: (16-bit tensor cores, TF32, plain FP32).
# Matched by substring of torch.cuda.get_device_name(), most specific first.
PEAK_TFLOPS: list[tuple[str, tuple[float, float | None, float]]] = [
    ("H200", (989.4, 494.7, 66.9)),
    ("H100 PCIe", (756.0, 378.0, 51.2)),
    ("H100", (989.4, 494.7, 66.9)),  # SXM
    ("A100", (312.0, 156.0, 19.5)),
    ("L40S", (362.1, 183.0, 91.6)),
    ("L4", (121.0, 60.0, 30.3)),
    ("A10G", (70.0, 35.0, 31.2)),
    ("A10", (125.0, 62.5, 31.2)),
    ("RTX 4090", (165.2, 82.6, 82.6)),
    ("RTX 3090", (71.0, 35.6, 35.6)),
    ("V100", (125.0, None, 15.7)),
    ("T4", (65.0, None, 8.1)),
]


def peak_tflops(device_name: str, mixed_precision: str, allow_tf32: bool) -> float | None:
    """The device's peak for the arithmetic a run uses; None for unknown devices (and CPUs)."""
    for key, (half, tf32, fp32) in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            if mixed_precision in ("fp16", "bf16"):
                return half
            return tf32 if allow_tf32 and tf32 is not None else fp32
    return None


def _read_config(base: Path, part: str) -> dict:
    return json.loads((base / part / "config.json").read_text())


def _meta_models(base_model: str):
    """Denoiser (UNet, or SD 3.5's / FLUX's transformer), VAE and text encoders (by pipeline attribute name) of a
    local base model, built from its configs on the meta device."""
    import diffusers
    import transformers

    from dbooth.families.source import resolve_model

    base = Path(resolve_model(base_model).location)
    index = json.loads((base / "model_index.json").read_text())
    denoiser = "transformer" if (index.get("transformer") or [None])[0] is not None else "unet"
    names = [n for n in sorted(index) if n.startswith("text_encoder") and (index[n] or [None])[0] is not None]
    with torch.device("meta"):
        model = getattr(diffusers, index[denoiser][1]).from_config(_read_config(base, denoiser))
        vae = getattr(diffusers, index["vae"][1]).from_config(_read_config(base, "vae"))  # FLUX.2's has its own class
        encoders = {}
        for name in names:  # CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel
            cls = getattr(transformers, index[name][1])
            encoders[name] = cls(cls.config_class(**_read_config(base, name)))
    return model, vae, encoders


def _added_conditioning(unet, n: int) -> dict:
    """SDXL's ``added_cond_kwargs``: the pooled text embedding and 6 size/crop ids per image; {} elsewhere."""
    if unet.config.addition_embed_type != "text_time":
        return {}
    ids = 6  # original height, width, crop top, left, target height, width
    pooled = unet.config.projection_class_embeddings_input_dim - ids * unet.config.addition_time_embed_dim
    return {"added_cond_kwargs": {"text_embeds": torch.empty(n, pooled, device="meta"),
                                  "time_ids": torch.empty(n, ids, device="meta")}}


def _count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(base_model: str, train: dict, prior: bool) -> dict[str, int]:
    """FLOPs of one optimizer step of a local base model; see ``count_step_flops``."""
    return count_step_flops(*_meta_models(base_model), train, prior)


def count_step_flops(unet, vae, encoders: dict, train: dict, prior: bool) -> dict[str, int]:
    """FLOPs of one optimizer step of meta-device models with the given ``train`` settings (a dict of
    TrainConfig); ``encoders`` are the text encoders by pipeline attribute name.

    Counted without gradient-checkpointing recomputation (the useful work, as in MFU). LoRA's
    backward is counted as the gradient with respect to activations through the frozen UNet,
    which is what reaching the adapters costs; the adapters' own FLOPs are negligible.
    """
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if _is_transformer(unet):
        from dbooth.bench.flow_memory import count_flow_step_flops

        return count_flow_step_flops(unet, vae, encoders, train, prior, _count)
    unet.set_attn_processor(AttnProcessor2_0() if train["attention"] == "sdpa" else AttnProcessor())
    n = train["batch_size"] * (2 if prior else 1)
    res = train["resolution"]
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    latent = torch.empty(n, unet.config.in_channels, res // down, res // down, device="meta")
    tokens = next(iter(encoders.values())).config.max_position_embeddings
    ids = torch.zeros(n, tokens, dtype=torch.long, device="meta")
    timesteps = torch.zeros(n, dtype=torch.long, device="meta")
    full = train["method"] == "full"
    train_te = train["train_text_encoder"]
    out: dict[str, int] = {}

    if not train["cache_latents"]:
        pixels = torch.empty(n, 3, res, res, device="meta")
        with torch.no_grad():
            out["vae_encode"] = _count(lambda: vae.encode(pixels))
    # the context the UNet attends to: SDXL's is both encoders' hidden states side by side
    embeds = torch.empty(n, tokens, unet.config.cross_attention_dim, device="meta")
    if train_te or not train["cache_text_embeddings"]:
        for te in encoders.values():
            te.requires_grad_(train_te)

        def text():
            for te in encoders.values():
                hidden = te(ids)[0]
                if train_te:
                    hidden.sum().backward()

        out["text_encoder"] = _count(text)

    unet.requires_grad_(full)
    x = latent.clone().requires_grad_(not full)
    added = _added_conditioning(unet, n)

    def step():
        pred = unet(x, timesteps, embeds, return_dict=False, **added)[0]
        pred.float().pow(2).mean().backward()

    out["unet"] = _count(step)
    out["total"] = sum(out.values())
    return out


def _lora_parameters(model: torch.nn.Module, rank: int, targets: list[str]) -> int:
    from dbooth.families import SD1

    targets = SD1.lora_targets(targets)  # the preset "attention" is the same set in every UNet family
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (module.in_features + module.out_features)
    return total


def _is_transformer(denoiser) -> bool:
    return not hasattr(denoiser.config, "cross_attention_dim")  # SD 3.5's and FLUX's; every UNet has one


def static_memory(base_model: str, train: dict, device_type: str, *, prior: bool = False) -> dict[str, float]:
    """Static memory of a local base model's training; see ``static_memory_of``."""
    return static_memory_of(*_meta_models(base_model), train, device_type, prior=prior)


def static_memory_of(unet, vae, encoders: dict, train: dict, device_type: str, *,
                     prior: bool = False) -> dict[str, float]:
    """Bytes (as MB) that sit on the training device whatever the activations: weights, gradients and
    optimizer state, laid out the way dbooth's trainer places them. A floor for peak memory.

    A flow transformer (SD 3.5, FLUX.1) gets ``flow_memory.flow_static_memory``'s figures: these, plus its
    activations (``prior``: class images double the step's batch) and the host memory of setting the run up.
    """
    if _is_transformer(unet):
        from dbooth.bench.flow_memory import flow_static_memory

        return flow_static_memory(unet, vae, encoders, train, device_type, prior=prior)
    n_unet = sum(p.numel() for p in unet.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    n_te = sum(p.numel() for te in encoders.values() for p in te.parameters())
    mp = train["mixed_precision"]
    frozen_bytes = 2 if mp in ("fp16", "bf16") else 4
    lora = train["method"] == "lora"
    train_te = train["train_text_encoder"]
    lcfg = train["lora"]
    if lora:
        trainable = _lora_parameters(unet, lcfg["rank"], lcfg["target_modules"])
        if train_te:
            for te in encoders.values():
                trainable += _lora_parameters(te, lcfg["rank"], lcfg["text_encoder_target_modules"])
        weights = (n_unet + n_te) * frozen_bytes + trainable * 4
    else:
        trainable = n_unet + (n_te if train_te else 0)
        weights = trainable * 4 + (0 if train_te else n_te * frozen_bytes)
    # with cached latents the trainer moves the VAE off an accelerator; on the CPU everything is one memory
    if not train["cache_latents"] or device_type == "cpu":
        weights += n_vae * frozen_bytes
    optimizer_bytes = 2 if train["optimizer"] == "adamw8bit" else 8  # two moments, 8-bit or fp32
    mb = 1 / 2**20
    parts = {
        "weights_mb": weights * mb,
        "gradients_mb": trainable * 4 * mb,
        "optimizer_mb": trainable * optimizer_bytes * mb,
    }
    parts["total_mb"] = sum(parts.values())
    parts["trainable_parameters"] = trainable
    return parts
