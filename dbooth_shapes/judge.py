"""The oracle as dbooth's judges see it: scores samples for ``eval``/``train.stop_when`` and names what a
sample shows for the identifier checks. One class for both, registered with the core by ``plugin``."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

ORACLE_CONFIDENT = 0.9  # of six shapes; a guess would give each about 0.17


class OracleJudge:
    """The built-in world's exact judge (``dbooth_shapes.oracle``).

    Prompt fidelity is the share of samples showing the scene their prompt names; prompts naming none of
    the world's scenes do not count towards it (null when none names one).
    """

    keys = ("subject_fidelity", "prompt_fidelity", "pres")
    # Prompt fidelity is a share of a few samples (one miss in 12 is 0.08), not a cosine: CLIP-T's 0.02
    # would refuse every checkpoint with a single miss. 0.25 is the margin BENCHMARKS' picking table used.
    default_prompt_margin = 0.25
    name = "oracle"

    def __init__(self, oracle, subject: str | None = None):
        self.oracle, self.subject = oracle, subject

    @classmethod
    def load(cls) -> "OracleJudge":
        from dbooth_shapes.oracle import Oracle

        return cls(Oracle.load())

    @classmethod
    def for_photos(cls, photos: list) -> "OracleJudge | None":
        """The subject is what the oracle sees in most of the photos; None when it sees none of the examples."""
        oracle = cls.load().oracle
        subject, _ = Counter(p["subject"] for p in oracle.predict(photos)).most_common(1)[0]
        return None if subject == "none" else cls(oracle, subject)

    def score(self, images: dict[str, list], class_images: list) -> dict[str, float]:
        from dbooth.eval.judges import rounded

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

    def labels(self, images: Sequence) -> list[str | None]:
        """The shape each sample shows, or None where the oracle is unsure."""
        return [p["shape"] if p["shape_prob"] >= ORACLE_CONFIDENT else None for p in self.oracle.predict(images)]


def scene_of(prompt: str) -> str | None:
    """The built-in world's scene a prompt names ("... in the jungle" -> "in the jungle"), or None."""
    from dbooth_shapes.world import CONTEXTS

    found = [c for c in CONTEXTS if c in prompt]
    return max(found, key=len) if found else None
