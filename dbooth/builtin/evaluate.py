"""Measure the built-in model against its quality bar with the oracle.

    python -m dbooth.builtin.evaluate --samples 100

For prompts "a photo of a COLOUR SHAPE CONTEXT" drawn at random from the world, the bar
is >= 80% of samples showing the right shape and >= 80% the right context. Too slow for
the unit tests (a minute or more on 2 cores), so it is a function and a command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dbooth.builtin import builtin_model_path
from dbooth.builtin.oracle import Oracle
from dbooth.builtin.world import caption, random_scene


def load_pipeline(model: str | Path = "builtin:shapes"):
    from diffusers import StableDiffusionPipeline

    path = builtin_model_path(str(model)) if str(model).startswith("builtin:") else Path(model)
    pipe = StableDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def evaluate_base_model(
    num_samples: int = 100,
    model: str | Path = "builtin:shapes",
    steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
    batch_size: int = 25,
    oracle: Oracle | None = None,
) -> dict:
    """Shape, context and colour accuracy of samples for full prompts, as judged by the oracle."""
    start = time.time()
    pipe = load_pipeline(model)
    oracle = oracle or Oracle.load()
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(num_samples)]
    prompts = [caption(s) for s in scenes]
    gen = torch.Generator().manual_seed(seed)
    images = []
    for i in range(0, num_samples, batch_size):
        out = pipe(prompts[i : i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                   generator=gen, output_type="pil")
        images += out.images
    seconds = time.time() - start
    return {
        "num_samples": num_samples,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "shape_accuracy": oracle.shape_accuracy(images, [s.shape for s in scenes]),
        "context_accuracy": oracle.prompt_fidelity(images, [s.context for s in scenes]),
        "colour_accuracy": oracle.colour_accuracy(images, [s.colour for s in scenes]),
        "seconds": round(seconds, 1),
        "images": images,
        "prompts": prompts,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score the built-in model with the oracle.")
    p.add_argument("--model", default="builtin:shapes")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=Path, default=None, help="also save the samples as one PNG grid")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    r = evaluate_base_model(a.samples, a.model, a.steps, a.guidance_scale, a.seed)
    if a.grid:
        save_grid(r["images"], a.grid)
    print(json.dumps({k: v for k, v in r.items() if k not in ("images", "prompts")}))


def save_grid(images, path: Path, columns: int = 10) -> None:
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    grid.save(path)


if __name__ == "__main__":
    main()
