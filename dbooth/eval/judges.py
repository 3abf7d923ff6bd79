"""The judges that score samples: DINO/CLIP (DreamBench's metrics) and, on the built-in model, its oracle.

Each judge scores ``{prompt: [images]}`` plus plain class-prompt samples and names the three figures the
checkpoint rule (``dbooth.eval.pick``) weighs in ``keys``: subject fidelity, prompt fidelity, class drift.
``dbooth eval`` and ``train.stop_when`` (``dbooth.training.early_stop``) use the same judges. Importing
this module loads no model library (the training input checks use ``scene_of``).
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


@dataclass
class OracleJudge:
    """The built-in world's exact judge (see dbooth_shapes.oracle).

    Prompt fidelity is the share of samples showing the scene their prompt names; prompts naming none of
    the world's scenes do not count towards it (null when none names one).
    """

    oracle: object
    subject: str

    keys = ("subject_fidelity", "prompt_fidelity", "pres")
    # Prompt fidelity is a share of a few samples (one miss in 12 is 0.08), not a cosine: CLIP-T's 0.02
    # would refuse every checkpoint with a single miss. 0.25 is the margin BENCHMARKS' picking table used.
    default_prompt_margin = 0.25

    def score(self, images: dict[str, list], class_images: list) -> dict[str, float]:
        flat = [im for ims in images.values() for im in ims]
        scened = [(im, scene) for prompt, ims in images.items() if (scene := scene_of(prompt)) for im in ims]
        values = {
            "subject_fidelity": self.oracle.subject_fidelity(flat, self.subject),
            "prompt_fidelity": (self.oracle.prompt_fidelity([im for im, _ in scened], [s for _, s in scened])
                                if scened else float("nan")),
            "pres": self.oracle.pres(class_images, self.subject),
            "div": self.oracle.div(images),
        }
        return rounded(values)


def scene_of(prompt: str) -> str | None:
    """The built-in world's scene a prompt names ("... in the jungle" -> "in the jungle"), or None."""
    from dbooth_shapes.world import CONTEXTS

    found = [c for c in CONTEXTS if c in prompt]
    return max(found, key=len) if found else None


def builtin_oracle(base_model: str, photos: list) -> OracleJudge | None:
    """On the built-in model, the oracle judges too: the subject is what it sees in most of the photos."""
    if not base_model.startswith("builtin:"):
        return None
    from collections import Counter

    from dbooth_shapes.oracle import Oracle

    oracle = Oracle.load()
    subject, _ = Counter(p["subject"] for p in oracle.predict(photos)).most_common(1)[0]
    return None if subject == "none" else OracleJudge(oracle, subject)


def rounded(values: dict) -> dict:
    """Four decimals; an undefined figure (DIV of one image per prompt) is null, which JSON can hold."""
    return {k: round(float(v), 4) if math.isfinite(v) else None for k, v in values.items()}
