"""What the flow-matching transformer families (SD 3.5, FLUX.1) share: a T5 text encoder beside CLIP, a
flow-matching schedule, a transformer as the denoiser, and T5 never trained (as diffusers' scripts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Family


@dataclass(frozen=True)
class FlowFamily(Family):
    denoiser_name: str = "transformer"
    objective: str = "flow"
    t5_name: str = "text_encoder_3"  # the T5 encoder's pipeline attribute
    t5_max_length: int = 256  # T5 tokens per caption when train.flow.max_sequence_length is null

    def tokenize(self, tokenizers: Sequence, prompts: list[str], *,
                 max_sequence_length: int | None = None) -> list:
        """CLIP ids padded to each CLIP tokenizer's length, T5's (the last tokenizer) to ``max_sequence_length``."""
        *clips, t5 = tokenizers
        ids = super().tokenize(clips, prompts)
        length = max_sequence_length or self.t5_max_length
        ids.append(t5(prompts, padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
                      return_tensors="pt").input_ids)
        return ids

    def sequence_length(self, settings) -> int:
        """The T5 length a run trains with, which its samples must use too."""
        return settings.flow.max_sequence_length or self.t5_max_length

    def call_kwargs(self, settings) -> dict:
        length = settings.flow.max_sequence_length
        return {} if length is None else {"max_sequence_length": length}

    def training_scheduler(self, pipe):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    def sampling_defaults(self, denoiser_config: dict) -> dict:
        """The manifest's sampling values (class images, validation, ``dbooth sample``) from the model card."""
        steps, guidance = self.sampling_card(denoiser_config)
        return {"sample.scheduler": "euler", "sample.steps": steps, "sample.guidance_scale": guidance,
                "prior.steps": steps, "prior.guidance_scale": guidance}

    def sampling_card(self, denoiser_config: dict) -> tuple[int, float]:
        raise NotImplementedError

    def trained_text_encoders(self, pipe) -> dict:
        return {k: v for k, v in self.text_encoders(pipe).items() if k != self.t5_name}
