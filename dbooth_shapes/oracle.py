"""An exact judge for images of the rendered world: which shape, context and subject they show.

The world's ground truth is known for every render, so a small CNN trained on fresh
renders (with blur, noise, colour shifts and down/up-sampling that mimic what a VAE and a
few diffusion steps do to an image) gives DreamBooth's metrics without human raters:
subject fidelity, prompt fidelity, PRES (prior preservation: how often "a photo of a star"
turns into the subject) and DIV (sample diversity).

Only the judge is here; ``tools/shapes/train_oracle.py`` trains and validates ``oracle.safetensors``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file

from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.world import COLOURS, CONTEXTS, IMAGE_SIZE, SHAPES

ORACLE_PATH = Path(__file__).resolve().parent / "oracle.safetensors"
SUBJECT_LABELS = ("none",) + tuple(sorted(EXAMPLES))
COLOUR_LABELS = tuple(COLOURS)

ImageLike = Image.Image | np.ndarray


class OracleNet(nn.Module):
    """Six 3x3 conv layers to 4x4, global pooling, one linear head per question."""

    def __init__(self, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        w = width
        self.stage1 = nn.Sequential(block(3, w, 2), block(w, w))  # 32x32
        self.stage2 = nn.Sequential(nn.MaxPool2d(2), block(w, 2 * w), block(2 * w, 2 * w))  # 16x16
        self.stage3 = nn.Sequential(nn.MaxPool2d(2), block(2 * w, 4 * w), block(4 * w, 4 * w))  # 8x8
        dim = 8 * w  # mean- and max-pooled
        self.heads = nn.ModuleDict({
            "shape": nn.Linear(dim, len(SHAPES)),
            "colour": nn.Linear(dim, len(COLOUR_LABELS)),
            "context": nn.Linear(dim, len(CONTEXTS)),
            "subject": nn.Linear(dim, len(SUBJECT_LABELS)),
        })

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        return [f1, f2, f3]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)[-1]
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return {k: head(pooled) for k, head in self.heads.items()}


def images_to_tensor(images: Sequence[ImageLike] | np.ndarray) -> torch.Tensor:
    """PIL images or uint8 HWC arrays of any size to a float NCHW batch in 0..1 at 64x64."""
    arrays = []
    for im in images:
        if isinstance(im, np.ndarray) and im.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
            arrays.append(im)
            continue
        im = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
        if im.size != (IMAGE_SIZE, IMAGE_SIZE):
            im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        arrays.append(np.asarray(im.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


class Oracle:
    """Loaded oracle; every metric takes PIL images (any size, resized to 64x64)."""

    def __init__(self, net: OracleNet):
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path = ORACLE_PATH) -> "Oracle":
        from dbooth.util.errors import DboothError

        path = Path(path)
        if not path.is_file():
            raise DboothError(f"oracle weights missing at {path}; run python -m tools.shapes.train_oracle --train")
        net = OracleNet()
        net.load_state_dict(load_file(str(path)))
        return cls(net)

    @torch.no_grad()
    def probabilities(self, images: Sequence[ImageLike]) -> dict[str, torch.Tensor]:
        x = images_to_tensor(images)
        out: dict[str, list[torch.Tensor]] = {}
        for chunk in x.split(256):
            for k, v in self.net(chunk).items():
                out.setdefault(k, []).append(v.softmax(-1))
        return {k: torch.cat(v) for k, v in out.items()}

    def predict(self, images: Sequence[ImageLike]) -> list[dict]:
        """Per image: the most likely shape, colour, context and subject, each with its probability."""
        probs = self.probabilities(images)
        names = {"shape": SHAPES, "colour": COLOUR_LABELS, "context": CONTEXTS, "subject": SUBJECT_LABELS}
        results = []
        for i in range(len(images)):
            row = {}
            for k, labels in names.items():
                p, j = probs[k][i].max(-1)
                row[k] = labels[int(j)]
                row[f"{k}_prob"] = float(p)
            results.append(row)
        return results

    def _fraction(self, images: Sequence[ImageLike], key: str, wanted: Sequence[str]) -> float:
        if not len(images):
            return float("nan")
        preds = self.predict(images)
        return float(np.mean([p[key] == w for p, w in zip(preds, wanted, strict=True)]))

    def shape_accuracy(self, images: Sequence[ImageLike], shapes: str | Sequence[str]) -> float:
        """Fraction showing the requested shape (one per image, or one for all)."""
        return self._fraction(images, "shape", _per_image(shapes, len(images)))

    def colour_accuracy(self, images: Sequence[ImageLike], colours: str | Sequence[str]) -> float:
        return self._fraction(images, "colour", _per_image(colours, len(images)))

    def prompt_fidelity(self, images: Sequence[ImageLike], contexts: str | Sequence[str]) -> float:
        """Fraction showing the requested context (one per image, or one for all)."""
        return self._fraction(images, "context", _per_image(contexts, len(images)))

    def subject_accuracy(self, images: Sequence[ImageLike], subjects: str | Sequence[str]) -> float:
        """Fraction recognised as the given subject name ("none" for no example subject)."""
        return self._fraction(images, "subject", _per_image(subjects, len(images)))

    def subject_fidelity(self, images: Sequence[ImageLike], subject_name: str) -> float:
        """Fraction recognised as the subject: how well DreamBooth kept its identity."""
        return self.subject_accuracy(images, subject_name)

    def pres(self, images: Sequence[ImageLike], subject_name: str) -> float:
        """Prior preservation: fraction of plain "a photo of a CLASS" samples that show the subject.
        Lower is better; a high value means the class collapsed onto the subject."""
        return self.subject_fidelity(images, subject_name)

    @torch.no_grad()
    def embed(self, images: Sequence[ImageLike]) -> list[torch.Tensor]:
        """Channel-normalised feature maps of the oracle's three stages (LPIPS-style)."""
        feats = self.net.features(images_to_tensor(images))
        return [f / (f.norm(dim=1, keepdim=True) + 1e-8) for f in feats]

    def distance(self, a: Sequence[ImageLike], b: Sequence[ImageLike]) -> torch.Tensor:
        """Perceptual distance per pair, in 0..1: like LPIPS, but on the oracle's own features
        (unit-normalised per location, squared difference / 4, averaged over locations and stages)."""
        fa, fb = self.embed(a), self.embed(b)
        return torch.stack([((x - y) ** 2).sum(1).mean(dim=(1, 2)) / 4 for x, y in zip(fa, fb)]).mean(0)

    def div(self, images_by_prompt: dict[str, Sequence[ImageLike]]) -> float:
        """DIV: mean pairwise perceptual distance between samples of the same prompt, averaged
        over prompts. Uses the oracle CNN's normalised features as the perceptual embedding
        (see ``distance``); 0 means identical samples, higher is more diverse."""
        scores = []
        for images in images_by_prompt.values():
            pairs = list(itertools.combinations(range(len(images)), 2))
            if not pairs:
                continue
            a = [images[i] for i, _ in pairs]
            b = [images[j] for _, j in pairs]
            scores.append(float(self.distance(a, b).mean()))
        return float(np.mean(scores)) if scores else float("nan")


def _per_image(value: str | Sequence[str], n: int) -> list[str]:
    return [value] * n if isinstance(value, str) else list(value)
