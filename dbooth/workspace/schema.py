"""The manifest's schema: every key of ``dbooth.yaml``, its type, default and rule, in dataclasses.

``dbooth.workspace.config`` reads and writes the YAML and checks it against these classes; the comment after
each field is its one-line documentation (the template in ``templates/dbooth.yaml`` says the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from dbooth.util.errors import closest_key

MANIFEST_NAME = "dbooth.yaml"
CURRENT_VERSION = 1

# Upgrades a raw manifest dict from version N to N+1; applied in order before validation.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

METHODS = ("full", "lora")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "prodigy")
CROPS = ("center", "random")
LORA_INITS = ("gaussian", "kaiming")
CAPTION_SOURCES = ("prompt", "files")
ATTENTIONS = ("sdpa", "eager")
SAMPLERS = ("dpm++", "ddim", "euler", "euler_a", "pndm", "ddpm")
EVAL_PROMPTS = ("dreambench", "validation")
STOP_JUDGES = ("auto", "encoders", "oracle")
FLOW_SAMPLINGS = ("auto", "uniform", "logit_normal", "mode")
FLOW_WEIGHTINGS = ("none", "sigma_sqrt", "cosmap")

# Full fine-tuning moves every weight, so it needs a far smaller step than a low-rank adapter.
DEFAULT_LEARNING_RATES = {"full": 5e-6, "lora": 1e-4}
# Prodigy estimates the step size itself; its learning rate is a multiplier on that estimate.
PRODIGY_LEARNING_RATE = 1.0


# --- schema rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """Constraints on one field beyond its type, kept in the field's metadata."""

    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    multiple_of: int | None = None
    nonempty: bool = False
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None when fine


def _field(default: Any, **rule: Any) -> Any:
    meta = {"rule": _Rule(**rule)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PROMPT_NAMES = ("identifier", "class")


def _prompt_problem(text: str, *, identifier: bool | None) -> str | None:
    """Check a prompt template; ``identifier`` True = required, False = forbidden, None = optional."""
    names = _PLACEHOLDER.findall(text)
    for name in names:
        if name not in _PROMPT_NAMES:
            hint = closest_key(name, _PROMPT_NAMES)
            suggestion = f"did you mean {{{hint}}}?" if hint else "use {identifier} or {class}"
            return f"unknown placeholder {{{name}}}; {suggestion}"
    if identifier and "identifier" not in names:
        return "must contain {identifier}, the token that names your subject"
    if identifier is False and "identifier" in names:
        return "must not contain {identifier}: class images show any {class}, not your subject"
    return None


def _instance_prompt(text: str) -> str | None:
    return _prompt_problem(text, identifier=True)


def _class_prompt(text: str) -> str | None:
    return _prompt_problem(text, identifier=False)


def _any_prompt(text: str) -> str | None:
    return _prompt_problem(text, identifier=None)


_IDENTIFIER = re.compile(r"[^\W_][\w-]*")


def _identifier(text: str) -> str | None:
    """One word of letters, digits, '_' or '-': it is matched inside captions and must survive tokenizers
    and prompt syntax (A1111 reads (), [], <>, : and , as weighting)."""
    if not _IDENTIFIER.fullmatch(text):
        bad = sorted({c for c in text if not (c.isalnum() or c in "_-")})
        shown = " ".join("space" if c.isspace() else repr(c) for c in bad) or "a leading '_' or '-'"
        return f"must be one word of letters and digits (e.g. sks, ohwx); it contains {shown}"
    return None


# --- schema ---------------------------------------------------------------------------------------


@dataclass
class PriorConfig:
    """Prior preservation: generated class images keep the model's idea of the class intact."""

    enabled: bool = _field(True)  # off = train on instance images only
    num_class_images: int = _field(200, ge=1)  # class images to generate once and reuse
    loss_weight: float = _field(1.0, ge=0)  # weight of the class-image loss
    steps: int = _field(25, ge=1)  # sampling steps per generated class image
    guidance_scale: float = _field(7.5, ge=0)  # CFG scale for class images
    batch_size: int = _field(4, ge=1)  # class images generated per batch
    seed: int = _field(0)  # makes the class-image set reproducible


@dataclass
class LoraConfig:
    """Shape of the low-rank adapters; used only when ``train.method`` is ``lora``."""

    rank: int = _field(8, ge=1)  # adapter rank (capacity)
    alpha: float = _field(8.0, gt=0)  # update scale is alpha / rank
    dropout: float = _field(0.0, ge=0, lt=1)  # dropout on adapter inputs
    use_dora: bool = _field(False)  # DoRA: a learned magnitude per output channel besides the low-rank direction
    use_rslora: bool = _field(False)  # rank-stabilised scale alpha / sqrt(rank) instead of alpha / rank
    init: str = _field("gaussian", choices=LORA_INITS)  # how the A matrices start (B starts at zero)
    text_encoder_rank: int | None = _field(None, ge=1)  # None = rank
    text_encoder_alpha: float | None = _field(None, gt=0)  # None = alpha
    target_modules: list[str] = _field(["attention"], nonempty=True)  # denoiser layers; presets: attention, wide
    text_encoder_target_modules: list[str] = _field(
        ["q_proj", "k_proj", "v_proj", "out_proj"], nonempty=True
    )  # text encoder layers, when it is trained


@dataclass
class EmaConfig:
    """An exponential moving average of the trained weights, kept beside them."""

    enabled: bool = _field(False)  # off: DreamBooth runs are short and the anchors default it off
    decay: float = _field(0.995, gt=0, lt=1)  # the most weight the old average keeps per update
    every: int = _field(1, ge=1)  # steps between updates
    on_cpu: bool = _field(False)  # keep the average in CPU memory
    use_for_output: bool = _field(True)  # final weights and validation samples use the average


@dataclass
class StopWhenConfig:
    """Early stopping: each checkpoint is scored as it is saved, and training stops once subject fidelity
    has peaked (the rule of ``dbooth eval --checkpoints``, on a small budget)."""

    enabled: bool = _field(False)  # off: train for max_steps; on needs checkpoint_every
    patience: int = _field(3, ge=1)  # stop after this many scored checkpoints without a better pick (BENCHMARKS.md)
    judge: str = _field("auto", choices=STOP_JUDGES)  # auto: the oracle on builtin: models, else DINO/CLIP (eval.dino, eval.clip)
    prompts: str = _field("validation", choices=EVAL_PROMPTS)  # train.validation_prompts, or DreamBench's
    num_prompts: int | None = _field(None, ge=1)  # the first N prompts only; None = all
    images_per_prompt: int = _field(2, ge=1)  # samples per prompt and checkpoint
    class_images: int = _field(4, ge=1)  # class-prompt samples per checkpoint, for PRES (prior on)
    seed: int = _field(1000)  # other seeds than eval.seed, so `dbooth eval` reports on samples the pick never saw
    prompt_fidelity_margin: float | None = _field(None, ge=0)  # None: 0.25 with the oracle, else eval.prompt_fidelity_margin


@dataclass
class FlowConfig:
    """Flow-matching families (SD 3.5, FLUX.1): how the noise level is drawn, shifted and weighted. The
    noise-prediction families (SD 1.x, 2.x, XL) refuse these; they use snr_gamma, noise_offset and friends."""

    timestep_sampling: str = _field("auto", choices=FLOW_SAMPLINGS)  # auto: the family's reference (SD 3.5 logit_normal, FLUX uniform)
    logit_mean: float = _field(0.0)  # logit_normal: mean of the normal before the sigmoid
    logit_std: float = _field(1.0, gt=0)  # logit_normal: its standard deviation
    mode_scale: float = _field(1.29)  # mode: how strongly the middle noise levels are favoured
    shift: float | None = _field(None, gt=0)  # extra time shift of the training sigmas; None = the scheduler's own
    resolution_shift: bool = _field(False)  # FLUX's shift by image size (exp(mu)), instead of a fixed one
    weighting: str = _field("none", choices=FLOW_WEIGHTINGS)  # loss weight per noise level (SD 3 paper)
    precondition_outputs: bool = _field(False)  # SD 3.5 only: predict the clean latents instead of the velocity
    guidance: float | None = _field(None, ge=0)  # guidance-distilled bases (FLUX.1 dev): the value trained at; None = 3.5 as diffusers
    max_sequence_length: int | None = _field(None, ge=1, lt=513)  # text tokens per caption (T5 or the LM); None = the family's


@dataclass
class TrainConfig:
    """How the fine-tune runs."""

    method: str = _field("full", choices=METHODS)  # full weights or LoRA adapters
    lora: LoraConfig = field(default_factory=LoraConfig)  # adapter shape for method=lora
    train_text_encoder: bool = _field(False)  # also tune the text encoder
    learning_rate: float | None = _field(None, gt=0)  # None = per-method default
    text_encoder_learning_rate: float | None = _field(None, gt=0)  # None = same as the UNet's
    lr_scheduler: str = _field("constant", choices=LR_SCHEDULERS)  # learning-rate schedule
    lr_warmup_steps: int = _field(0, ge=0)  # steps of linear warmup
    max_steps: int = _field(800, ge=1)  # optimizer steps in total
    batch_size: int = _field(1, ge=1)  # instance images per step (class images add the same)
    gradient_accumulation_steps: int = _field(1, ge=1)  # micro-batches per optimizer step
    mixed_precision: str = _field("no", choices=MIXED_PRECISIONS)  # autocast precision
    gradient_checkpointing: bool = _field(False)  # trade compute for memory
    optimizer: str = _field("adamw", choices=OPTIMIZERS)  # adamw8bit needs bitsandbytes, prodigy prodigyopt
    fused_backward: bool = _field(False)  # AdamW per parameter inside backward: no gradient buffer, per-parameter clip
    adam_weight_decay: float = _field(1e-2, ge=0)  # AdamW decoupled weight decay
    max_grad_norm: float = _field(1.0, gt=0)  # gradient clipping norm
    ema: EmaConfig = field(default_factory=EmaConfig)  # moving average of the trained weights
    snr_gamma: float | None = _field(None, gt=0)  # Min-SNR loss weighting; None = off, 5 is the usual value
    noise_offset: float = _field(0.0, ge=0)  # offset noise strength; 0 = off
    min_timestep: int = _field(0, ge=0)  # lowest noise timestep trained on
    max_timestep: int | None = _field(None, ge=1)  # one past the highest; None = the schedule's length
    input_perturbation: float = _field(0.0, ge=0)  # input perturbation strength; 0 = off
    seed: int = _field(42)  # seeds noise, timesteps and crops
    resolution: int = _field(512, ge=8, multiple_of=8)  # training image side in pixels
    crop: str = _field("center", choices=CROPS)  # how images are cropped to square (or to their bucket)
    buckets: bool = _field(False)  # aspect-ratio buckets: photos keep their shape at about resolution² pixels
    random_flip: bool = _field(False)  # horizontal flip augmentation
    masked_loss: bool = _field(True)  # photos with a NAME.mask.png learn only their white area
    cache_latents: bool = _field(True)  # encode images with the VAE once
    cache_text_embeddings: bool = _field(True)  # encode prompts once while the text encoder is frozen
    attention: str = _field("sdpa", choices=ATTENTIONS)  # sdpa = torch's fused attention kernels
    channels_last: bool = _field(False)  # NHWC memory layout for the UNet's convolutions
    allow_tf32: bool = _field(True)  # TF32 matmuls on Ampere+ GPUs
    compile: bool = _field(False)  # torch.compile the UNet (slow first steps)
    checkpoint_every: int = _field(200, ge=0)  # steps between checkpoints; 0 = never
    keep_checkpoints: int = _field(2, ge=1)  # older checkpoints are deleted
    validation_prompts: list[str] = _field(
        ["a {identifier} {class} on the beach"], check=_any_prompt
    )  # prompts sampled during training
    validation_every: int = _field(200, ge=0)  # steps between validation samples; 0 = never
    validation_images: int = _field(2, ge=1)  # images per validation prompt
    tensorboard: bool = _field(True)  # loss, learning rate and validation images in RUN/tensorboard/
    stop_when: StopWhenConfig = field(default_factory=StopWhenConfig)  # score checkpoints, stop at the peak
    flow: FlowConfig = field(default_factory=FlowConfig)  # flow-matching families only (SD 3.5, FLUX.1)

    def resolved_learning_rate(self) -> float:
        """The UNet learning rate, with null replaced by the method's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        if self.optimizer == "prodigy":
            return PRODIGY_LEARNING_RATE
        return DEFAULT_LEARNING_RATES[self.method]

    def resolved_text_encoder_learning_rate(self) -> float:
        """The text encoder learning rate; null means the same as the UNet's."""
        if self.text_encoder_learning_rate is not None:
            return self.text_encoder_learning_rate
        return self.resolved_learning_rate()


@dataclass
class SampleConfig:
    """Defaults for ``dbooth sample``."""

    scheduler: str = _field("dpm++", choices=SAMPLERS)  # sampling scheduler
    steps: int = _field(25, ge=1)  # denoising steps
    guidance_scale: float = _field(7.5, ge=0)  # classifier-free guidance scale
    negative_prompt: str = _field("")  # what to steer away from
    seed: int = _field(0)  # first image's seed; later images count up
    num_images: int = _field(4, ge=1)  # images per prompt


@dataclass
class EvalConfig:
    """``dbooth eval``: DreamBench's metrics and the rule that picks the best checkpoint."""

    dino: str = _field("facebook/dino-vits16", nonempty=True)  # DINO ViT: hub id or local folder
    clip: str = _field("openai/clip-vit-base-patch32", nonempty=True)  # CLIP: hub id or local folder
    prompts: str = _field("dreambench", choices=EVAL_PROMPTS)  # DreamBench's 25 prompts or train.validation_prompts
    num_prompts: int | None = _field(None, ge=1)  # the first N prompts only; None = all
    images_per_prompt: int = _field(4, ge=1)  # samples per prompt (seeds seed, seed+1, ...)
    class_images: int = _field(8, ge=1)  # class-prompt samples for PRES
    seed: int = _field(0)  # first sample's seed; the base model and every checkpoint get the same seeds
    prompt_fidelity_margin: float = _field(0.02, ge=0)  # best checkpoint: CLIP-T >= base CLIP-T - margin
    pres_margin: float = _field(0.1, ge=0)  # best checkpoint, prior on: PRES <= base PRES + margin


@dataclass
class UpscalerConfig:
    """Stage (b), ``dbooth train --upscaler``: the super-resolution model fine-tuned on low/high-resolution
    pairs of the subject photos (and class images). Other settings (batch size, LoRA shape, precision,
    optimizer, crop) come from ``train``."""

    base: str = _field("stabilityai/stable-diffusion-x4-upscaler", nonempty=True)  # StableDiffusionUpscalePipeline
    method: str = _field("full", choices=METHODS)  # full weights or LoRA adapters
    max_steps: int = _field(400, ge=1)  # optimizer steps in total
    learning_rate: float | None = _field(None, gt=0)  # None = per-method default, as in train
    noise_level: int = _field(10, ge=0)  # augmentation timestep of the low-res input, in training and sampling
    prior: bool = _field(True)  # also train on class-image pairs (prior preservation)
    resolution: int | None = _field(None, ge=8, multiple_of=8)  # high-res side; None = the upscaler's own
    checkpoint_every: int = _field(200, ge=0)  # steps between checkpoints; 0 = never
    validation_every: int = _field(200, ge=0)  # steps between validation upscales; 0 = never


@dataclass(kw_only=True)
class SubjectConfig:
    """A further subject trained into the same model: photos in ``instance/NAME/``, class images in
    ``class/CLASS/`` (the top-level subject's ``class/`` when it shares that subject's class)."""

    name: str = field(metadata={"rule": _Rule(nonempty=True, check=_identifier)})  # folder under instance/
    identifier: str = field(metadata={"rule": _Rule(nonempty=True, check=_identifier)})  # its own rare token
    class_noun: str = field(metadata={"rule": _Rule(nonempty=True)})  # what it is
    instance_prompt: str | None = _field(None, check=_instance_prompt)  # None = the top-level instance_prompt
    class_prompt: str | None = _field(None, check=_class_prompt)  # None = the top-level class_prompt


@dataclass(kw_only=True)
class Manifest:
    """Everything a workspace's runs need; ``dbooth.yaml`` on disk."""

    version: int = _field(1, ge=1)  # manifest format version
    base_model: str = _field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", nonempty=True
    )  # hub id, diffusers folder, .safetensors file or builtin:NAME
    allow_pickle: bool = _field(False)  # load a pickle-based (.ckpt/.bin/.pt) base model: it can run code
    identifier: str = _field("sks", nonempty=True, check=_identifier)  # rare token that names the subject
    class_noun: str = field(metadata={"rule": _Rule(nonempty=True)})  # what the subject is: dog, person
    instance_prompt: str = _field("a photo of {identifier} {class}", check=_instance_prompt)  # caption
    instance_captions: str = _field("prompt", choices=CAPTION_SOURCES)  # prompt: one for all; files: NAME.txt each
    class_prompt: str = _field("a photo of {class}", check=_class_prompt)  # prompt for class images
    subjects: list[SubjectConfig] = _field([])  # further subjects in the same model; [] = only the one above
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    upscaler: UpscalerConfig = field(default_factory=UpscalerConfig)
