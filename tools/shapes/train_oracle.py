"""Train and validate the built-in world's oracle (``dbooth_shapes.oracle``), which ships as weights.

    python -m tools.shapes.train_oracle --train       # writes dbooth_shapes/oracle.safetensors
    python -m tools.shapes.train_oracle               # validates the shipped weights

The judge runs inside the product; how it was made does not, so this lives with the other scripts that
made the toy world's weights. The pool is rendered from ``--seed``; validation uses a seed it never saw.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.oracle import COLOUR_LABELS, ORACLE_PATH, SUBJECT_LABELS, Oracle, OracleNet
from dbooth_shapes.world import CONTEXTS, PATTERNS, SHAPES, Scene, random_scene, render_batch
from tools.shapes.steps import Steps

IGNORE = -100  # cross_entropy's ignore_index: no colour label for patterned objects


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
    """The example subject ``scene`` shows, or "none": the label the subject head learns."""
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
    updates = Steps(opt, scheduler=sched)
    for _ in range(steps):
        idx = torch.randint(0, pool_size, (batch_size,), generator=gen)
        x = augment(pool[idx].float() / 255, gen)
        logits = net(x)
        loss = sum(F.cross_entropy(logits[k], labels[k][idx], ignore_index=IGNORE) for k in logits)
        step = updates.take(loss)
        if updates.due(100):
            log(f"oracle step {step}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f}s)")
    meta = {"width": "32", "steps": str(steps), "pool_size": str(pool_size), "seed": str(seed),
            "subjects": json.dumps(SUBJECT_LABELS)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(out)
    log(f"oracle written to {out} in {time.time() - start:.0f}s")
    return out


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
