"""What every model family provides, and the behaviour SD 1.x, SD 2.x and SDXL share.

The training loop, prior, sample, merge-lora and export ask a ``Family`` for these things and never
test which family it is (OneTrainer's split: the generic trainer names no model).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

    from dbooth.families.source import ModelSource


def device_of(module) -> "torch.device":
    """Where a module's weights are; also for one wrapped for data parallelism, which has no ``.device``."""
    return next(module.parameters()).device


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for a batch of captions."""

    embeds: "torch.Tensor"  # [N, tokens, dim]: the UNet's encoder_hidden_states
    pooled: "torch.Tensor | None" = None  # [N, dim]: SDXL's pooled text embedding, None elsewhere
    mask: "torch.Tensor | None" = None  # [N, tokens]: which tokens are the caption's (Z-Image trims the rest)

    def select(self, index) -> "Conditioning":
        return Conditioning(self.embeds[index], None if self.pooled is None else self.pooled[index],
                            None if self.mask is None else self.mask[index])

    def to(self, device=None, dtype=None) -> "Conditioning":
        pooled = None if self.pooled is None else self.pooled.to(device, dtype)
        return Conditioning(self.embeds.to(device, dtype), pooled,
                            None if self.mask is None else self.mask.to(device))  # a mask keeps its dtype


@dataclass(frozen=True)
class Family:
    """One model family. Instances are constants (``SD1``, ``SD2``, ``SDXL``); subclasses add behaviour."""

    name: str  # "sd1", "sd2", "sdxl": recorded in run.json and export metadata
    title: str  # for people: "Stable Diffusion 2.x"
    pipeline_class_name: str  # the diffusers pipeline that loads, samples and saves this family
    default_resolution: int  # the training/sampling size when the model's configs do not say
    single_file_layout: str  # key layout of original-format checkpoints (export/single_file.py)
    kohya_base_version: str  # kohya's ss_base_model_version
    config_repo: str  # the reference model whose configs diffusers reads for single-file checkpoints
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    kohya_prefixes: dict = field(default_factory=lambda: {"unet": "lora_unet_", "text_encoder": "lora_te_"})
    kohya_unet_names: str = "diffusers"  # "original": kohya names UNet modules by the ldm/sgm block numbering
    stage: str = "base"  # the paper's stage: "base" text-to-image (a) or "upscaler" super-resolution (b)
    denoiser_name: str = "unet"  # the pipeline attribute of the model that denoises ("transformer" for SD 3.5, FLUX)
    objective: str = "ddpm"  # "ddpm" (noise/velocity prediction) or "flow" (flow matching); see training/objectives
    flow_preconditioning: bool = False  # SD 3.5 offers train.flow.precondition_outputs
    default_timestep_sampling: str = "uniform"  # train.flow.timestep_sampling "auto" for a flow-matching family
    lora_presets: dict = field(default_factory=lambda: {"attention": ("to_q", "to_k", "to_v", "to_out.0")})

    # -- pipelines -----------------------------------------------------------------------------
    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def pipeline_extras(self) -> dict:
        """Constructor arguments beyond the model parts (SD: no safety checker)."""
        return {}

    def load(self, source: "ModelSource", *, dtype: "torch.dtype", local_files_only: bool = True,
             allow_pickle: bool = False):
        """The pipeline for ``source`` (a folder, builtin, hub id or single file) in ``dtype`` (or a dict of
        dtypes by part with a ``"default"``, as diffusers takes it).

        Without ``allow_pickle`` a folder's parts are read from safetensors only, never from ``.bin`` pickles.
        """
        cls = self.pipeline_class()
        if source.kind == "single_file":
            parts = dtype if isinstance(dtype, dict) else {}
            pipe = cls.from_single_file(source.location, **self.pipeline_extras(),
                                        **dtype_kwarg(parts.get("default", dtype)))
            for name, part_dtype in parts.items():  # a single file takes one dtype: the others after
                if name != "default" and getattr(pipe, name, None) is not None:
                    getattr(pipe, name).to(dtype=part_dtype)
            return pipe
        extra = {**self.pipeline_extras(), **dtype_kwarg(dtype)}
        if not allow_pickle:
            extra["use_safetensors"] = True
        return cls.from_pretrained(source.location, local_files_only=local_files_only, **extra)

    def compose(self, parts: dict):
        """A pipeline from its parts (``pipe.components``-style dict)."""
        cls = self.pipeline_class()
        accepted = set(inspect.signature(cls.__init__).parameters)
        kwargs = {k: v for k, v in parts.items() if k in accepted}
        kwargs.update({k: v for k, v in self.pipeline_extras().items() if k in accepted})
        pipe = cls(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def assemble(self, base, **replacements):
        """A new pipeline sharing ``base``'s parts, with some (``unet=...``, ``text_encoder_2=...``) swapped."""
        return self.compose({**base.components, **{k: v for k, v in replacements.items() if v is not None}})

    def with_denoiser(self, base, denoiser, **encoders):
        """``assemble`` with the denoiser (UNet or transformer) and any text encoders swapped."""
        return self.assemble(base, **{self.denoiser_name: denoiser}, **encoders)

    def denoiser(self, pipe):
        """The model that denoises: the UNet, or the transformer of SD 3.5 and FLUX."""
        return getattr(pipe, self.denoiser_name)

    # -- training ------------------------------------------------------------------------------
    def training_scheduler(self, pipe):
        """The noise schedule used for training, from the base model's scheduler config."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(pipe.scheduler.config)

    def training_objective(self, scheduler, settings):
        """The objective a training step optimises (``dbooth.training.objectives``) for ``settings`` (train)."""
        from dbooth.training.objectives import Diffusion, FlowMatching

        if self.objective == "flow":
            return FlowMatching(scheduler, settings, default_sampling=self.default_timestep_sampling)
        return Diffusion(scheduler, settings)

    def latent_normalizer(self, vae):
        """How a VAE latent becomes what the denoiser trains on, as a function of a [B, C, h, w] batch; None for
        the VAE config's ``(z - shift_factor) * scaling_factor`` (FLUX.2 normalises per channel instead)."""
        return None

    def lora_targets(self, names) -> list[str]:
        """``train.lora.target_modules`` with preset names (``attention``, and a family's wider sets) expanded."""
        out: list[str] = []
        for name in names:
            out += self.lora_presets.get(name, (name,))
        return list(dict.fromkeys(out))

    def predict(self, denoiser, noisy, timesteps, cond: Conditioning, batch, condition):
        """The denoiser's prediction for a training batch, shaped like ``noisy`` (the latents); ``condition`` is
        the run's ``run_condition``."""
        sample, extra = self.unet_inputs(noisy, cond, batch, condition)
        return denoiser(sample, timesteps, cond.embeds, return_dict=False, **extra)[0]

    # -- text conditioning ---------------------------------------------------------------------
    def text_encoders(self, pipe) -> dict:
        return {name: getattr(pipe, name) for name in self.text_encoder_names}

    def tokenizers(self, pipe) -> list:
        return [getattr(pipe, name) for name in self.tokenizer_names]

    def tokenize(self, tokenizers: Sequence, prompts: list[str], *,
                 max_sequence_length: int | None = None) -> list["torch.Tensor"]:
        """Token ids per text encoder, padded to each tokenizer's length as the pipelines do
        (``max_sequence_length``: T5's length, for the families that have one)."""
        return [
            tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                return_tensors="pt").input_ids
            for tok in tokenizers
        ]

    def encode(self, encoders: Sequence, ids: Sequence["torch.Tensor"]) -> Conditioning:
        """The conditioning the family's own pipeline builds for these token ids (no guidance)."""
        raise NotImplementedError

    def unet_kwargs(self, cond: Conditioning, geometry: "torch.Tensor") -> dict:
        """Keyword arguments for ``unet(noisy, t, ...)`` beyond the hidden states.

        ``geometry`` is [N, 6] per image: original height, width, crop top, left, target height, width.
        """
        return {}

    def unet_inputs(self, noisy: "torch.Tensor", cond: Conditioning, batch, low_res) -> tuple["torch.Tensor", dict]:
        """The UNet's sample and keyword arguments (beyond the hidden states) for a training batch
        (``dbooth.training.step.Batch``); ``low_res`` is the run's ``low_res_condition`` (None here)."""
        return noisy, self.unet_kwargs(cond, batch.geometry)

    def call_kwargs(self, settings) -> dict:
        """What every pipeline call of a run's model adds (``settings``: train), so samples see captions as
        training did: the T5 length of the flow-matching families."""
        return {}

    def sampling_defaults(self, denoiser_config: dict) -> dict:
        """Manifest values for sampling that suit this family better than the manifest's (SD-tuned) defaults."""
        return {}

    def run_condition(self, pipe, manifest):
        """What the family's ``predict`` needs from the run besides a batch (the upscaler's low-resolution
        input, FLUX's training guidance); None when nothing."""
        return self.low_res_condition(pipe, manifest)

    def trained_text_encoders(self, pipe) -> dict:
        """The text encoders ``train_text_encoder`` trains: all of them here; SD 3.5 and FLUX leave T5 frozen."""
        return self.text_encoders(pipe)

    # -- image conditioning (the upscaler, stage b) --------------------------------------------
    def low_res_condition(self, pipe, manifest):
        """What an image-conditioned family adds to each batch (settings from ``manifest.upscaler``);
        None for text-to-image families."""
        return None

    def run_record(self, manifest) -> dict:
        """What run.json records about the family's stage."""
        return {"stage": self.stage}

    # -- outputs -------------------------------------------------------------------------------
    def save_lora(self, path: Path, denoiser, text_encoders: dict) -> None:
        """``pytorch_lora_weights.safetensors`` in diffusers' format (what ``load_lora_weights`` reads)."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        def layers(model, *, text_encoder: bool = False) -> dict:
            state = get_peft_model_state_dict(model)
            if self.denoiser_name == "unet" or text_encoder:
                # transformers keep peft's lora_A/lora_B names, as diffusers' SD 3 / FLUX scripts save them: diffusers
                # 0.42 reads their old "lora.down" spelling wrongly for attn.to_q/k/v/out (those adapters are dropped)
                state = convert_state_dict_to_diffusers(state)
            if text_encoder:
                # diffusers 0.42 loads a text encoder's DoRA magnitudes only as "...lora_magnitude_vector.weight"
                # (without the suffix they are dropped with a warning); the UNet's load either way
                state = {k + ".weight" if k.endswith(".lora_magnitude_vector") else k: v for k, v in state.items()}
            return {k: v.detach().float().contiguous() for k, v in state.items()}

        name = self.denoiser_name
        kwargs = {f"{name}_lora_layers": layers(denoiser),
                  f"{name}_lora_adapter_metadata": denoiser.peft_config["default"].to_dict()}
        for name, encoder in text_encoders.items():
            kwargs[f"{name}_lora_layers"] = layers(encoder, text_encoder=True)
            kwargs[f"{name}_lora_adapter_metadata"] = encoder.peft_config["default"].to_dict()
        self.pipeline_class().save_lora_weights(save_directory=str(path), safe_serialization=True, **kwargs)


def dtype_kwarg(dtype: "torch.dtype") -> dict:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (and warns on the old name); use whichever it knows."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}
