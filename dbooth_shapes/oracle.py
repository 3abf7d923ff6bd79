"""An exact judge for images of the rendered world: which shape, context and subject they show.

The world's ground truth is known for every render, so a small CNN trained on fresh
renders (with blur, noise, colour shifts and down/up-sampling that mimic what a VAE and a
few diffusion steps do to an image) gives DreamBooth's metrics without human raters:
subject fidelity, prompt fidelity, PRES (prior preservation: how often "a photo of a star"
turns into the subject) and DIV (sample diversity).

    python -m dbooth_shapes.oracle --train            # writes dbooth_shapes/oracle.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.world import COLOURS, CONTEXTS, IMAGE_SIZE, PATTERNS, SHAPES, Scene, random_scene, render_batch

ORACLE_PATH = Path(__file__).resolve().parent / "oracle.safetensors"
SUBJECT_LABELS = ("none",) + tuple(sorted(EXAMPLES))
COLOUR_LABELS = tuple(COLOURS)
IGNORE = -100

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


# ----------------------------------------------------------------------------- training data


def labelled_scene(rng: np.random.Generator) -> Scene:
    """A world scene (60%), an example subject (25%) or a patterned look-alike that is not one (15%)."""
    r = rng.random()
    if r < 0.6:
        return random_scene(rng)
    if r < 0.85:
        return EXAMPLES[str(rng.choice(sorted(EXAMPLES)))].scene(rng)
    base = random_scene(rng)
    return Scene(**{**base.__dict__, "pattern": str(rng.choice(PATTERNS[1:])),
                    "colour2": str(rng.choice(COLOUR_LABELS))})


def subject_of(scene: Scene) -> str:
    for name, s in EXAMPLES.items():
        if (scene.shape, scene.pattern, scene.colour, scene.colour2) == (s.class_noun, s.pattern, s.colour, s.colour2):
            return name
    return "none"


def labels_of(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    return {
        "shape": torch.tensor([SHAPES.index(s.shape) for s in scenes]),
        "colour": torch.tensor([COLOUR_LABELS.index(s.colour) if s.pattern == "solid" else IGNORE for s in scenes]),
        "context": torch.tensor([CONTEXTS.index(s.context) for s in scenes]),
        "subject": torch.tensor([SUBJECT_LABELS.index(subject_of(s)) for s in scenes]),
    }


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)


def augment(x: torch.Tensor, gen: torch.Generator, groups: int = 4) -> torch.Tensor:
    """Make clean renders look generated: VAE-like softness, blur, colour drift and noise.

    Resampling and blur are shared within each of ``groups`` slices of the batch (cheap);
    colour drift and noise are per image.
    """
    out = []
    for img in x.chunk(groups):
        u = torch.rand(4, generator=gen).tolist()
        if u[0] < 0.5:
            f = 2 if u[1] < 0.6 else 4
            small = F.interpolate(img, scale_factor=1 / f, mode="bilinear", antialias=True)
            img = F.interpolate(small, size=img.shape[-2:], mode="bilinear")
        if u[2] < 0.5:
            img = _gaussian_blur(img, 0.3 + 0.9 * u[3])
        out.append(img)
    x = torch.cat(out)
    n = len(x)
    gain = 1 + 0.1 * (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1)
    offset = 0.04 * (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1)
    sigma = 0.06 * torch.rand(n, 1, 1, 1, generator=gen)
    x = x * gain + offset + sigma * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def train_oracle(out: Path = ORACLE_PATH, steps: int = 2500, pool_size: int = 24_000, seed: int = 0,
                 batch_size: int = 64, log=lambda m: print(m, flush=True)) -> Path:
    """Train on a pool of renders from ``seed`` (fresh seeds are used for validation)."""
    start = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    scenes = [labelled_scene(rng) for _ in range(pool_size)]
    pool = torch.from_numpy(render_batch(scenes)).permute(0, 3, 1, 2).contiguous()
    labels = labels_of(scenes)
    log(f"rendered {pool_size} scenes in {time.time() - start:.0f}s")
    net = OracleNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    for step in range(1, steps + 1):
        idx = torch.randint(0, pool_size, (batch_size,), generator=gen)
        x = augment(pool[idx].float() / 255, gen)
        logits = net(x)
        loss = sum(F.cross_entropy(logits[k], labels[k][idx], ignore_index=IGNORE) for k in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(f"oracle step {step}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f}s)")
    meta = {"width": "32", "steps": str(steps), "pool_size": str(pool_size), "seed": str(seed),
            "subjects": json.dumps(SUBJECT_LABELS)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(out)
    log(f"oracle written to {out} in {time.time() - start:.0f}s")
    return out


# ----------------------------------------------------------------------------- the judge


class Oracle:
    """Loaded oracle; every metric takes PIL images (any size, resized to 64x64)."""

    def __init__(self, net: OracleNet):
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path = ORACLE_PATH) -> "Oracle":
        from dbooth.util.errors import DboothError

        path = Path(path)
        if not path.is_file():
            raise DboothError(f"oracle weights missing at {path}; run python -m dbooth_shapes.oracle --train")
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


@torch.no_grad()
def validate(oracle: Oracle, count: int = 600, seed: int = 12345) -> dict[str, float]:
    """Accuracy on fresh renders from a seed the training pool never used."""
    rng = np.random.default_rng(seed)
    scenes = [labelled_scene(rng) for _ in range(count)]
    images = list(render_batch(scenes))
    preds = oracle.predict(images)
    solid = [i for i, s in enumerate(scenes) if s.pattern == "solid"]
    return {
        "shape": float(np.mean([p["shape"] == s.shape for p, s in zip(preds, scenes)])),
        "context": float(np.mean([p["context"] == s.context for p, s in zip(preds, scenes)])),
        "subject": float(np.mean([p["subject"] == subject_of(s) for p, s in zip(preds, scenes)])),
        "colour": float(np.mean([preds[i]["colour"] == scenes[i].colour for i in solid])),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train or validate the builtin world's oracle.")
    p.add_argument("--train", action="store_true")
    p.add_argument("--out", type=Path, default=ORACLE_PATH)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--pool-size", type=int, default=24_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads; 1 is faster on a busy machine")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.train:
        train_oracle(a.out, steps=a.steps, pool_size=a.pool_size, seed=a.seed)
    print(json.dumps(validate(Oracle.load(a.out))))


if __name__ == "__main__":
    main()
