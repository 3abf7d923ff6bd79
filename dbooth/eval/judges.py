"""The judges that score samples: DINO/CLIP (DreamBench's metrics), and a base model's own exact judge when a
plugin registers one (``dbooth.plugins.judge_for``; the built-in world's oracle).

Each judge scores ``{prompt: [images]}`` plus plain class-prompt samples and names the three figures the
checkpoint rule (``dbooth.eval.pick``) weighs in ``keys``: subject fidelity, prompt fidelity, class drift.
``dbooth eval`` and ``train.stop_when`` (``dbooth.training.early_stop``) use the same judges. Importing
this module loads no model library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EncoderJudge:
    dino: object
    clip: object
    subject_dino: object  # embeddings of the subject photos
    subject_clip: object
    prompt_clip: object  # one row per subject prompt, in order

    keys = ("dino", "clip_t", "pres")
    default_prompt_margin = None  # CLIP-T cosines: eval.prompt_fidelity_margin (0.02) applies

    @classmethod
    def load(cls, eval_cfg, photos: list, prompts: list[str]) -> "EncoderJudge":
        """Loads ``eval.dino`` and ``eval.clip``; a missing one is a one-line error naming the download."""
        from dbooth.eval.encoders import load_clip, load_dino

        dino, clip = load_dino(eval_cfg.dino), load_clip(eval_cfg.clip)
        return cls(dino, clip, dino.embed(photos), clip.embed_images(photos), clip.embed_texts(prompts))

    def score(self, images: dict[str, list], class_images: list) -> dict[str, float]:
        import torch

        from dbooth.eval import metrics

        flat = [im for ims in images.values() for im in ims]
        dino = self.dino.embed(flat)
        clip = self.clip.embed_images(flat)
        counts = [len(ims) for ims in images.values()]
        texts = torch.repeat_interleave(self.prompt_clip, torch.tensor(counts), dim=0)
        per_prompt = dict(zip(images, dino.split(counts)))
        values = {
            "dino": metrics.dino_score(dino, self.subject_dino),
            "clip_i": metrics.clip_i_score(clip, self.subject_clip),
            "clip_t": metrics.clip_t_score(clip, texts),
            "pres": metrics.pres_score(self.dino.embed(class_images), self.subject_dino),
            "div_dino": metrics.div_score(per_prompt, metrics.cosine_distance),
        }
        return rounded(values)


def rounded(values: dict) -> dict:
    """Four decimals; an undefined figure (DIV of one image per prompt) is null, which JSON can hold."""
    return {k: round(float(v), 4) if math.isfinite(v) else None for k, v in values.items()}
