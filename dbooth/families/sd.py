"""Stable Diffusion 1.x and 2.x: one CLIP text encoder, its last hidden state as the UNet's context.

The two differ where the trainer does not look: SD 2.x's OpenCLIP encoder (stored in another layout in
single-file checkpoints), its v-prediction target on 768 px models (read from the scheduler config,
not from here) and kohya's version tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Conditioning, Family, device_of


@dataclass(frozen=True)
class StableDiffusion(Family):
    def pipeline_extras(self) -> dict:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        # StableDiffusionPipeline.encode_prompt without clip_skip: the final (layer-normed) hidden state
        (encoder,), (token_ids,) = encoders, ids
        return Conditioning(encoder(token_ids.to(device_of(encoder)))[0])


SD1 = StableDiffusion(
    name="sd1",
    title="Stable Diffusion 1.x",
    pipeline_class_name="StableDiffusionPipeline",
    default_resolution=512,
    single_file_layout="sd1",
    kohya_base_version="sd_v1",
    config_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
)

SD2 = StableDiffusion(
    name="sd2",
    title="Stable Diffusion 2.x",
    pipeline_class_name="StableDiffusionPipeline",
    default_resolution=768,
    single_file_layout="sd2",
    kohya_base_version="sd_v2",
    config_repo="stabilityai/stable-diffusion-2-1",
)
