"""Measure 4x upscalers on the built-in world: bicubic against one or more upscaler folders.

    python -m dbooth_shapes.upscaler_eval                               # bicubic vs builtin:shapes-x4
    python -m dbooth_shapes.upscaler_eval --upscaler builtin:shapes-x4 --upscaler WS/runs/RUN/upscaler \\
        --subject checkered_star --identifier sks

Inputs are the world's own 64 px renders of scenes no training set holds (the stand-in for a
perfect stage-(a) output, whose scene is known), so each 256 px result is compared with the
scene's true 256 px render: PSNR over the image for solid-object world scenes, and for each
example subject ``detail_recovery`` (``dbooth_shapes.detail``: 1 = all of the pattern's fine
detail, 0 = none, as bicubic) and PSNR. With ``--identifier`` the subject prompts name it
("a photo of a sks star on the beach"), as a fine-tuned upscaler was trained. Language drift is
measured on solid objects of each subject's class under the class prompt ("a photo of a star on
the beach"): ``class_detail_error`` is detail invented on them (0 = none; a subject's pattern painted
on scores 0.03-0.09) and ``class_psnr`` their PSNR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dbooth_shapes import upscaler_architecture as U
from dbooth_shapes.detail import detail_error, detail_recovery, psnr
from dbooth_shapes.examples import EXAMPLES, get_example
from dbooth_shapes.world import Scene, caption, random_scene, render, replace

BICUBIC = "bicubic"


def load_upscaler(spec: str | Path):
    """A ``StableDiffusionUpscalePipeline`` from ``builtin:NAME`` or a folder."""
    from diffusers import StableDiffusionUpscalePipeline

    from dbooth_shapes import builtin_model_path

    path = builtin_model_path(str(spec)) if str(spec).startswith("builtin:") else Path(spec)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def upscale(upscaler, images: list[Image.Image], prompts: list[str], *, steps: int = 20, noise_level: int = 20,
            guidance_scale: float = 1.0, seed: int = 0, batch_size: int = 8) -> list[Image.Image]:
    """4x upscales of ``images``: ``upscaler`` is a loaded pipeline, or ``"bicubic"``."""
    if isinstance(upscaler, str):
        if upscaler != BICUBIC:
            raise ValueError(f"unknown upscaler {upscaler!r}; pass a loaded pipeline or {BICUBIC!r}")
        return [im.resize((im.width * U.FACTOR, im.height * U.FACTOR), Image.BICUBIC) for im in images]
    gen = torch.Generator().manual_seed(seed)
    out: list[Image.Image] = []
    for i in range(0, len(images), batch_size):
        out += upscaler(prompts[i : i + batch_size], image=images[i : i + batch_size], num_inference_steps=steps,
                        noise_level=noise_level, guidance_scale=guidance_scale, generator=gen).images
    return out


def subject_scenes(name: str, count: int, seed: int) -> list[Scene]:
    """Scenes of an example subject at placements and in contexts of their own (not its photos')."""
    rng = np.random.default_rng(seed + 5000 + sorted(EXAMPLES).index(name))
    return [get_example(name).scene(rng) for _ in range(count)]


def class_scenes(name: str, count: int, seed: int) -> list[Scene]:
    """Solid objects of the subject's class, in random colours, placements and contexts."""
    rng = np.random.default_rng(seed + 6000 + sorted(EXAMPLES).index(name))
    return [replace(random_scene(rng, shapes=(get_example(name).class_noun,)), pattern="solid", colour2=None)
            for _ in range(count)]


def subject_prompt(scene: Scene, identifier: str | None) -> str:
    noun = f"{identifier} {scene.shape}" if identifier else scene.shape
    return f"a photo of a {noun} {scene.context}"


def evaluate_upscaler(upscaler, *, num_world: int = 16, per_subject: int = 6, subjects: list[str] | None = None,
                      identifier: str | None = None, seed: int = 0, **sampling) -> dict:
    """PSNR on world scenes (``num_world`` of them; 0 skips it) and detail recovery + PSNR per example subject,
    means over the scenes."""
    start = time.time()
    rng = np.random.default_rng(seed + 4000)
    world = [random_scene(rng) for _ in range(num_world)]
    highs = upscale(upscaler, [render(s, U.LOW_RES) for s in world], [caption(s) for s in world],
                    seed=seed, **sampling)
    world_psnr = [psnr(h, render(s, U.HIGH_RES)) for h, s in zip(highs, world)]
    result: dict = {"world_psnr": float(np.mean(world_psnr)) if world else None}  # None: num_world=0
    per: dict[str, dict] = {}
    for name in subjects or sorted(EXAMPLES):
        scenes = subject_scenes(name, per_subject, seed)
        highs = upscale(upscaler, [render(s, U.LOW_RES) for s in scenes],
                        [subject_prompt(s, identifier) for s in scenes], seed=seed, **sampling)
        plain = class_scenes(name, per_subject, seed)
        plain_highs = upscale(upscaler, [render(s, U.LOW_RES) for s in plain],
                              [subject_prompt(s, None) for s in plain], seed=seed, **sampling)
        per[name] = {
            "detail": float(np.mean([detail_recovery(h, s) for h, s in zip(highs, scenes)])),
            "psnr": float(np.mean([psnr(h, render(s, U.HIGH_RES)) for h, s in zip(highs, scenes)])),
            "class_detail_error": float(np.mean([detail_error(h, s) for h, s in zip(plain_highs, plain)])),
            "class_psnr": float(np.mean([psnr(h, render(s, U.HIGH_RES)) for h, s in zip(plain_highs, plain)])),
        }
    result["subjects"] = per
    result["subject_detail"] = float(np.mean([v["detail"] for v in per.values()]))
    result["seconds"] = round(time.time() - start, 1)
    return result


def compare_upscalers(specs: list[str], **kwargs) -> dict[str, dict]:
    """``evaluate_upscaler`` for bicubic and each upscaler folder, same scenes, prompts and seeds."""
    results = {BICUBIC: evaluate_upscaler(BICUBIC, **kwargs)}
    for spec in specs:
        results[spec] = evaluate_upscaler(load_upscaler(spec), **kwargs)
    return results


def format_table(results: dict[str, dict]) -> str:
    """One row per upscaler and subject: detail and PSNR on the subject, drift on its class."""
    lines = ["| upscaler | subject | detail recovery | PSNR | class detail error | class PSNR |", "|---|---|---|---|---|---|"]
    for label, r in results.items():
        for name, v in r["subjects"].items():
            lines.append(f"| {label} | {name} | {v['detail']:.2f} | {v['psnr']:.1f} | {v['class_detail_error']:.4f} | "
                         f"{v['class_psnr']:.1f} |")
        world = "" if r["world_psnr"] is None else f" (world PSNR {r['world_psnr']:.1f})"
        lines.append(f"| {label} | mean{world} | {r['subject_detail']:.2f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upscaler", action="append", default=None,
                   help="builtin:NAME or an upscaler folder (repeat to compare); default builtin:shapes-x4")
    p.add_argument("--subject", action="append", default=None, help="example subject(s); default all four")
    p.add_argument("--identifier", default=None, help="name the subject in its prompts, e.g. sks")
    p.add_argument("--world", type=int, default=16, help="world scenes")
    p.add_argument("--per-subject", type=int, default=6, help="scenes per subject")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--noise-level", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = compare_upscalers(a.upscaler or ["builtin:shapes-x4"], num_world=a.world, per_subject=a.per_subject,
                                subjects=a.subject, identifier=a.identifier, seed=a.seed, steps=a.steps,
                                noise_level=a.noise_level, guidance_scale=a.guidance_scale)
    print(format_table(results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
