"""What a training step asks the denoiser to predict: the family's objective.

``Diffusion`` is the DDPM objective of the UNet families (SD 1.x, 2.x, XL, the x4 upscaler): noise the
latents at an integer timestep, predict the noise or the velocity, Min-SNR weighting, offset noise and
input perturbation. ``FlowMatching`` is the rectified-flow objective of SD 3.5 and FLUX.1: mix
``x_t = (1 - s) x0 + s e`` at a drawn sigma ``s``, predict the velocity ``e - x0`` (or, SD 3's
preconditioned form, ``x0``), with the timestep sampling schemes, shift and loss weightings of the SD 3
paper (Esser et al. 2024) as diffusers' training scripts implement them.

Both draw their random numbers from torch's global generator in a fixed order (noise, then timesteps,
then anything else), so a resumed run draws exactly what an uninterrupted one did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dbooth.training.losses import diffusion_target, min_snr_weights, snr
from dbooth.training.noise import perturbed, sample_timesteps, timestep_bounds, training_noise
from dbooth.util.errors import DboothError


@dataclass
class Draw:
    """The random part of one step, for a whole (global) batch; ``select`` keeps some rows."""

    noise: torch.Tensor  # [B, C, h, w], the target's noise
    mixed: torch.Tensor  # the noise actually mixed in (input perturbation adds to it)
    timesteps: torch.Tensor  # [B], what the denoiser is told (integer DDPM steps; sigma x 1000 for flows)
    sigmas: torch.Tensor | None = None  # [B], flow matching's noise level in [0, 1]

    def select(self, index: torch.Tensor) -> Draw:
        return Draw(self.noise[index], self.mixed[index], self.timesteps[index],
                    None if self.sigmas is None else self.sigmas[index])


class Diffusion:
    """DDPM: ``scheduler.add_noise`` at integer timesteps; epsilon or v-prediction targets."""

    name = "ddpm"

    def __init__(self, scheduler, settings):
        self.scheduler, self.settings = scheduler, settings
        self.kind = scheduler.config.prediction_type
        self.bounds = timestep_bounds(scheduler.config.num_train_timesteps, settings.min_timestep, settings.max_timestep)

    def draw(self, latents: torch.Tensor) -> Draw:
        noise = training_noise(latents, self.settings.noise_offset)
        timesteps = sample_timesteps(latents.shape[0], *self.bounds, latents.device)
        return Draw(noise, perturbed(noise, self.settings.input_perturbation), timesteps)

    def noisy(self, latents: torch.Tensor, draw: Draw) -> torch.Tensor:
        return self.scheduler.add_noise(latents, draw.mixed, draw.timesteps)

    def output(self, pred: torch.Tensor, noisy: torch.Tensor, draw: Draw) -> torch.Tensor:
        return pred

    def target(self, latents: torch.Tensor, draw: Draw) -> torch.Tensor:
        return diffusion_target(self.kind, draw.noise, latents, self.scheduler, draw.timesteps)

    def weights(self, draw: Draw) -> torch.Tensor | None:
        if self.settings.snr_gamma is None:
            return None
        return min_snr_weights(snr(self.scheduler.alphas_cumprod, draw.timesteps), self.settings.snr_gamma, self.kind)


class FlowMatching:
    """Rectified flow: ``x_t = (1 - s) x0 + s e``, target ``e - x0`` (or ``x0`` preconditioned)."""

    name = "flow"

    def __init__(self, scheduler, settings, *, default_sampling: str = "uniform"):
        flow = settings.flow
        self.settings, self.flow = settings, flow
        self.sampling = default_sampling if flow.timestep_sampling == "auto" else flow.timestep_sampling
        self.steps = int(scheduler.config.num_train_timesteps)
        # the scheduler's own training sigmas (SD 3.5's config applies a fixed shift of 3; FLUX's shifts at
        # sampling time by resolution, so its training sigmas are unshifted), high noise first
        self.table = scheduler.sigmas[: self.steps].float()
        self.config = scheduler.config

    def draw(self, latents: torch.Tensor) -> Draw:
        from diffusers.training_utils import compute_density_for_timestep_sampling

        n = latents.shape[0]
        noise = training_noise(latents, 0.0)
        u = compute_density_for_timestep_sampling(self.sampling, n, logit_mean=self.flow.logit_mean,
                                                  logit_std=self.flow.logit_std, mode_scale=self.flow.mode_scale,
                                                  device="cpu")
        # u in [0, 1) indexes the schedule (high noise first) exactly as diffusers' SD 3 / FLUX scripts do
        indices = (u * self.steps).long().clamp(0, self.steps - 1)
        sigmas = self.table[indices]
        shift = flow_shift(self.flow, self.config, image_tokens(latents))
        if shift is not None:
            sigmas = shifted(sigmas, shift)
        sigmas = sigmas.to(latents.device)
        return Draw(noise, noise, sigmas * self.steps, sigmas)

    def noisy(self, latents: torch.Tensor, draw: Draw) -> torch.Tensor:
        s = _per_row(draw.sigmas, latents)
        return (1.0 - s) * latents + s * draw.mixed

    def output(self, pred: torch.Tensor, noisy: torch.Tensor, draw: Draw) -> torch.Tensor:
        """SD 3's preconditioning turns the velocity prediction into a prediction of the clean latents."""
        if not self.flow.precondition_outputs:
            return pred
        return pred * -_per_row(draw.sigmas, pred) + noisy

    def target(self, latents: torch.Tensor, draw: Draw) -> torch.Tensor:
        return latents if self.flow.precondition_outputs else draw.noise - latents

    def weights(self, draw: Draw) -> torch.Tensor | None:
        if self.flow.weighting == "none":
            return None
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        return compute_loss_weighting_for_sd3(self.flow.weighting, draw.sigmas.float())


def shifted(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The time shift of SD 3 (and FLUX's resolution-dependent one): more steps at high noise for shift > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_shift(flow, scheduler_config, tokens: int) -> float | None:
    """The shift applied on top of the scheduler's training sigmas: ``train.flow.shift``, or FLUX's
    resolution-dependent one (``exp(mu)``, mu linear in the image's token count between the scheduler's
    base and max shift) with ``train.flow.resolution_shift``; None for none."""
    if flow.resolution_shift:
        c = scheduler_config
        base_len, max_len = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
        base_shift, max_shift = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
        slope = (max_shift - base_shift) / (max_len - base_len)
        return math.exp(tokens * slope + base_shift - slope * base_len)
    return flow.shift


def image_tokens(latents: torch.Tensor) -> int:
    """How many tokens the transformer sees for these latents: one per 2x2 latent patch (SD 3.5 and FLUX)."""
    return (latents.shape[-2] // 2) * (latents.shape[-1] // 2)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


# options that only one kind of objective reads: set for the other, they are an error, not silently ignored
_DDPM_ONLY = {"snr_gamma": None, "noise_offset": 0.0, "input_perturbation": 0.0, "min_timestep": 0,
              "max_timestep": None}


def check_settings(settings, family) -> None:
    """One line naming the family when ``settings`` (train) set an option its objective does not read."""
    from dbooth.workspace.schema import FlowConfig

    if family.objective == "flow":
        for key, off in _DDPM_ONLY.items():
            if getattr(settings, key) != off:
                raise DboothError(f"train.{key}: {family.title} trains by flow matching, which has no such option; "
                                  f"remove it from dbooth.yaml (train.flow holds the flow-matching settings)")
        if settings.flow.precondition_outputs and not family.flow_preconditioning:
            raise DboothError(f"train.flow.precondition_outputs: {family.title} has no preconditioned form "
                              "(SD 3.5 has); set it to false in dbooth.yaml")
        return
    changed = [k for k, v in vars(settings.flow).items() if v != getattr(FlowConfig(), k)]
    if changed:
        raise DboothError(f"train.flow.{changed[0]}: {family.title} is a noise-prediction model, not a flow-matching "
                          "one; remove train.flow from dbooth.yaml")


def flow_record(settings, family, pipe) -> dict:
    """What run.json records of a flow-matching run's objective (``{"flow": ...}``); nothing for DDPM families."""
    if family.objective != "flow":
        return {}
    flow = settings.flow
    condition = family.run_condition(pipe, _Manifest(settings))
    return {"flow": {
        "timestep_sampling": family.default_timestep_sampling if flow.timestep_sampling == "auto" else flow.timestep_sampling,
        "weighting": flow.weighting,
        "shift": "resolution" if flow.resolution_shift else flow.shift,
        "precondition_outputs": flow.precondition_outputs,
        "guidance": getattr(condition, "value", None),
        "max_sequence_length": family.sequence_length(settings),
    }}


class _Manifest:
    """The one thing ``run_condition`` reads of a manifest: its train settings."""

    def __init__(self, train):
        self.train = train
