"""Measure the built-in model against its quality bar with the oracle.

    python -m tools.shapes.score_model --samples 100
    python -m tools.shapes.score_model --vae --samples 200

The second form judges the VAE alone: renders are encoded and decoded, and the oracle scores the
round trip. Nothing generated can be judged better than its VAE lets it look, so this is the ceiling
for subject fidelity.

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

from dbooth.families.loading import load_pipeline
from dbooth.generate.sample import make_grid
from dbooth_shapes.oracle import Oracle
from tools.shapes.pretrain import to_tensor
from tools.shapes.train_oracle import subject_of
from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.world import caption, random_scene, render_batch


@torch.no_grad()
def evaluate_base_model(
    num_samples: int = 100,
    model: str | Path = "builtin:shapes",
    steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
    batch_size: int = 25,
    oracle: Oracle | None = None,
    device: str = "cpu",
    bare: bool = False,
) -> dict:
    """Shape, context and colour accuracy of samples for full prompts, as judged by the oracle.
    With ``bare`` the prompts are the bare class prompts ("a photo of a star", what prior
    preservation samples) and only shape accuracy is scored. The noise comes from a CPU
    generator, so a GPU run draws the same starting latents."""
    start = time.time()
    pipe = load_pipeline(str(model)).to(device)
    oracle = oracle or Oracle.load()
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(num_samples)]
    prompts = [caption(s, colour=not bare, context=not bare) for s in scenes]
    gen = torch.Generator().manual_seed(seed)
    images = []
    for i in range(0, num_samples, batch_size):
        out = pipe(prompts[i : i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                   generator=gen, output_type="pil")
        images += out.images
    seconds = time.time() - start
    result = {"num_samples": num_samples, "steps": steps, "guidance_scale": guidance_scale, "bare": bare,
              "shape_accuracy": oracle.shape_accuracy(images, [s.shape for s in scenes])}
    if bare:
        shapes = sorted({s.shape for s in scenes})
        result["shape_accuracy_by_shape"] = {
            name: oracle.shape_accuracy([im for im, s in zip(images, scenes) if s.shape == name],
                                        [name] * sum(s.shape == name for s in scenes)) for name in shapes}
    else:
        result["context_accuracy"] = oracle.prompt_fidelity(images, [s.context for s in scenes])
        result["colour_accuracy"] = oracle.colour_accuracy(images, [s.colour for s in scenes])
    return {**result, "seconds": round(seconds, 1), "images": images, "prompts": prompts}


@torch.no_grad()
def evaluate_vae(num_samples: int = 200, model: str | Path = "builtin:shapes", seed: int = 7,
                 oracle: Oracle | None = None) -> dict:
    """Oracle scores of VAE round trips (encode, take the mean latent, decode): world scenes and
    the example subjects, ``num_samples`` of each."""
    vae = load_pipeline(str(model)).vae.eval()
    oracle = oracle or Oracle.load()
    rng = np.random.default_rng(seed)
    names = sorted(EXAMPLES)
    groups = {"world": [random_scene(rng) for _ in range(num_samples)],
              "subjects": [EXAMPLES[names[i % len(names)]].scene(rng) for i in range(num_samples)]}
    result: dict = {"num_samples": num_samples}
    for label, scenes in groups.items():
        x = to_tensor(render_batch(scenes))
        decoded = torch.cat([vae.decode(vae.encode(c).latent_dist.mean).sample for c in x.split(50)])
        images = decoded.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
        result[label] = {
            "shape_accuracy": oracle.shape_accuracy(images, [s.shape for s in scenes]),
            "context_accuracy": oracle.prompt_fidelity(images, [s.context for s in scenes]),
            "subject_accuracy": oracle.subject_accuracy(images, [subject_of(s) for s in scenes]),
            "mse": float(((decoded.clamp(-1, 1) - x) ** 2).mean()),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score the built-in model with the oracle.")
    p.add_argument("--model", default="builtin:shapes")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=Path, default=None, help="also save the samples as one PNG grid")
    p.add_argument("--vae", action="store_true", help="judge VAE round trips of renders instead of samples")
    p.add_argument("--device", default="cpu", help="where to sample (cpu or cuda)")
    p.add_argument("--bare", action="store_true", help="bare class prompts ('a photo of a star'): shape only")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.vae:
        print(json.dumps(evaluate_vae(a.samples, a.model, a.seed + 7)))
        return
    r = evaluate_base_model(a.samples, a.model, a.steps, a.guidance_scale, a.seed, device=a.device, bare=a.bare)
    if a.grid:
        make_grid(r["images"], cols=10).save(a.grid)
    print(json.dumps({k: v for k, v in r.items() if k not in ("images", "prompts")}))


if __name__ == "__main__":
    main()
