"""Named benchmark configurations and the ablation that switches each speed setting.

A configuration is a model (``sd15``, ``sdxl``, ``sd35m``, ``sd35l``, ``flux``, ``shapes``, ``tiny`` or any
base-model spec) plus manifest overrides. ``sd15-*`` and ``sdxl-*`` settings are the recommended ones; ``*-10gb``,
``*-6gb``, ``*-24gb`` and ``*-12gb`` are the memory tiers (GPU figures are estimates until measured on a GPU,
see BENCHMARKS.md). ``sd35m-*``, ``sd35l-*`` and ``flux-*`` are SD 3.5 Medium-, Large- and FLUX.1-dev-shaped
LoRA runs (``dbooth bench --static`` prints their memory estimate without building anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbooth.util.errors import DboothError

# Settings every bench run shares: nothing but training steps is timed.
BENCH_FIXED = {
    "train.checkpoint_every": 0,
    "train.validation_every": 0,
    "train.lr_warmup_steps": 0,
    "train.lr_scheduler": "constant",
}


@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: str  # sd15 | sdxl | sd35m | sd35l | flux | shapes | tiny | a base-model spec (folder, hub id, builtin:NAME)
    description: str
    overrides: dict = field(default_factory=dict)  # manifest overrides, dotted keys
    num_instance: int = 4  # subject images drawn for the throwaway workspace
    num_class: int = 8  # class images drawn (not generated) for prior preservation

    @property
    def resolution(self) -> int | None:
        return self.overrides.get("train.resolution")


# Speed settings shared by the recommended SD 1.5 configurations; bf16 autocast on CUDA
# (the trainer maps it to the CPU's bf16 autocast elsewhere).
_SD15_FAST = {
    "train.resolution": 512,
    "train.batch_size": 1,
    "prior.enabled": True,
    "train.mixed_precision": "bf16",
    "train.attention": "sdpa",
    "train.cache_latents": True,
    "train.cache_text_embeddings": True,
    "train.channels_last": False,
    "train.allow_tf32": True,
}

# SDXL trains at its native 1024 px with the same speed settings.
_SDXL_FAST = {**_SD15_FAST, "train.resolution": 1024}

# SD 3.5 and FLUX.1: LoRA on the family's attention preset over the frozen bf16 transformer, at their native
# 1024 px and at 512; cached text embeddings let the text encoders (T5-XXL: 9.5 GB) leave the GPU.
_FLOW_LORA = {**_SDXL_FAST, "train.method": "lora"}
_FLOW_MODELS = {"sd35m": "SD 3.5 Medium", "sd35l": "SD 3.5 Large", "flux": "FLUX.1-dev"}


def _flow_configs() -> list[BenchConfig]:
    out = []
    for model, title in _FLOW_MODELS.items():
        for res, suffix in ((1024, ""), (512, "-512")):
            out.append(BenchConfig(f"{model}-lora{suffix}", model,
                                   f"{title} shapes, {res} px, LoRA rank 8 (attention), bf16, cached latents and text",
                                   {**_FLOW_LORA, "train.resolution": res}))
    return out


CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in [
        BenchConfig("tiny", "tiny", "tiny random SD-shaped model, 32 px, full fine-tune with prior preservation",
                    {"train.resolution": 32, "train.method": "full", "prior.enabled": True}),
        BenchConfig("shapes-full", "shapes", "builtin:shapes (64 px), full UNet fine-tune with prior preservation",
                    {"train.resolution": 64, "train.method": "full", "prior.enabled": True}),
        BenchConfig("shapes-lora", "shapes", "builtin:shapes (64 px), LoRA rank 8 with prior preservation",
                    {"train.resolution": 64, "train.method": "lora", "prior.enabled": True}),
        BenchConfig("sd15-full", "sd15", "SD 1.5 shapes, 512 px, full UNet fine-tune, bf16 autocast, SDPA, cached latents",
                    {**_SD15_FAST, "train.method": "full"}),
        BenchConfig("sd15-lora", "sd15", "SD 1.5 shapes, 512 px, LoRA rank 8, bf16 autocast, SDPA, cached latents",
                    {**_SD15_FAST, "train.method": "lora"}),
        BenchConfig("sd15-full-10gb", "sd15",
                    "memory tier: full UNet in ~10 GB: + gradient checkpointing + 8-bit AdamW (CUDA only)",
                    {**_SD15_FAST, "train.method": "full", "train.gradient_checkpointing": True,
                     "train.optimizer": "adamw8bit"}),
        BenchConfig("sd15-lora-6gb", "sd15", "memory tier: LoRA in ~6 GB: + gradient checkpointing",
                    {**_SD15_FAST, "train.method": "lora", "train.gradient_checkpointing": True}),
        BenchConfig("sd15-full-256", "sd15", "SD 1.5 shapes at 256 px, full + gradient checkpointing, fp32 (CPU-sized)",
                    {"train.resolution": 256, "train.method": "full", "train.gradient_checkpointing": True,
                     "train.mixed_precision": "no", "prior.enabled": True}, num_instance=2, num_class=2),
        BenchConfig("sd15-lora-256", "sd15", "SD 1.5 shapes at 256 px, LoRA rank 8, fp32 (CPU-sized)",
                    {"train.resolution": 256, "train.method": "lora", "train.mixed_precision": "no",
                     "prior.enabled": True}, num_instance=2, num_class=2),
        BenchConfig("sdxl-full", "sdxl", "SDXL shapes, 1024 px, full UNet fine-tune, bf16 autocast, SDPA, cached latents",
                    {**_SDXL_FAST, "train.method": "full"}),
        BenchConfig("sdxl-lora", "sdxl", "SDXL shapes, 1024 px, LoRA rank 8, bf16 autocast, SDPA, cached latents",
                    {**_SDXL_FAST, "train.method": "lora"}),
        BenchConfig("sdxl-full-24gb", "sdxl",
                    "memory tier: full UNet in ~24 GB: + gradient checkpointing + 8-bit AdamW (CUDA only)",
                    {**_SDXL_FAST, "train.method": "full", "train.gradient_checkpointing": True,
                     "train.optimizer": "adamw8bit"}),
        BenchConfig("sdxl-lora-12gb", "sdxl", "memory tier: LoRA at 1024 px in ~12 GB: + gradient checkpointing",
                    {**_SDXL_FAST, "train.method": "lora", "train.gradient_checkpointing": True}),
        # bf16 even on the CPU: fp32 weights alone would be 14 GB
        BenchConfig("sdxl-lora-256", "sdxl", "SDXL shapes at 256 px, LoRA rank 8, bf16 autocast (CPU-sized)",
                    {"train.resolution": 256, "train.method": "lora", "train.mixed_precision": "bf16",
                     "prior.enabled": True}, num_instance=2, num_class=2),
        *_flow_configs(),
    ]
}


def get_config(name: str) -> BenchConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        from dbooth.workspace.config import closest_key

        hint = closest_key(name, list(CONFIGS))
        raise DboothError(
            f"bench: no configuration {name!r}" + (f"; did you mean {hint}?" if hint else "")
            + f"; available: {', '.join(CONFIGS)}"
        ) from None


@dataclass(frozen=True)
class Variant:
    """One ablation row: manifest overrides and bench-only patches on top of the base settings."""

    label: str
    overrides: dict = field(default_factory=dict)
    patches: dict = field(default_factory=dict)  # e.g. {"adamw": "foreach"}: forces torch's AdamW implementation
    cuda_only: bool = False


def ablation(settings: dict, *, cuda: bool) -> list[Variant]:
    """The base settings, then one row per speed setting flipped from its value in ``settings``.

    ``settings`` is the resolved ``train`` section (a dict); each row changes exactly one thing, so its
    steps/s and memory against the first row is what that setting is worth here.
    """

    def flip(key: str, on, off, label: str, **kw) -> Variant:
        now = settings[key]
        new = off if now == on else on
        return Variant(f"{label} {'off' if new == off else 'on'}", {f"train.{key}": new}, **kw)

    rows = [Variant("base")]
    rows.append(flip("cache_latents", True, False, "cache latents"))
    if not settings["train_text_encoder"]:
        rows.append(flip("cache_text_embeddings", True, False, "cache text embeddings"))
    rows.append(Variant("attention eager" if settings["attention"] == "sdpa" else "attention sdpa",
                        {"train.attention": "eager" if settings["attention"] == "sdpa" else "sdpa"}))
    # torch's three AdamW implementations; the trainer picks fused on CUDA and foreach elsewhere
    for impl in ("fused", "foreach", "for-loop"):
        rows.append(Variant(f"adamw {impl}", patches={"adamw": impl}))
    if settings["optimizer"] == "adamw":
        rows.append(Variant("adamw 8-bit", {"train.optimizer": "adamw8bit"}, cuda_only=True))
    else:
        rows.append(Variant("adamw 32-bit", {"train.optimizer": "adamw"}))
    if settings["optimizer"] != "adafactor":
        rows.append(Variant("adafactor", {"train.optimizer": "adafactor"}))
    if settings["optimizer"] != "prodigy":
        rows.append(Variant("prodigy", {"train.optimizer": "prodigy"}))
    # the training options that cost time or memory (issue 15): an EMA copy, DoRA's extra norm per layer
    ema = not settings["ema"]["enabled"]
    rows.append(Variant(f"EMA {'on' if ema else 'off'}", {"train.ema.enabled": ema}))
    if settings["method"] == "lora":
        dora = not settings["lora"]["use_dora"]
        rows.append(Variant(f"DoRA {'on' if dora else 'off'}", {"train.lora.use_dora": dora}))
    # a drawn workspace has a mask per photo and half its photos wide, so these two have work to do
    rows.append(flip("masked_loss", True, False, "masked loss"))
    rows.append(flip("buckets", True, False, "aspect buckets"))
    rows.append(flip("gradient_checkpointing", True, False, "gradient checkpointing"))
    precisions = ("no", "bf16", "fp16") if cuda else ("no", "bf16")
    for p in precisions:
        if p != settings["mixed_precision"]:
            rows.append(Variant(f"mixed precision {p}", {"train.mixed_precision": p}))
    rows.append(flip("channels_last", True, False, "channels-last"))
    rows.append(flip("allow_tf32", True, False, "TF32", cuda_only=True))
    rows.append(flip("compile", True, False, "torch.compile"))
    return rows


# Class-image generation: dbooth's way (DPM++ at the manifest's steps, batched) against
# one image at a time and against the reference script's way (the model's own scheduler, 50 steps).
GENERATION_VARIANTS = [
    {"label": "dpm++ batched", "scheduler": "dpm++", "batched": True},
    {"label": "dpm++ one at a time", "scheduler": "dpm++", "batched": False},
    {"label": "model scheduler, 50 steps, batched", "scheduler": None, "steps": 50, "batched": True},
]
