"""Sampling a base model or a trained run: PNGs with their recipe in the metadata, plus a grid."""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from dbooth.util.errors import DboothError
from dbooth.util.fsutil import atomic_write_bytes
from dbooth.families.loading import inference_device, load_pipeline
from dbooth.util.pngmeta import write_png
from dbooth.util.reporting import Reporter
from dbooth.generate.schedulers import set_scheduler
from dbooth.workspace.folder import Run


@dataclass
class SampleResult:
    paths: list[Path]
    grid: Path | None
    folder: Path


def make_grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def load_for_sampling(base_model: str, run: Run | None, *, dtype=torch.float32, allow_pickle: bool = False):
    """Base model alone, a full run's pipeline, or base model + a LoRA run's adapter."""
    if run is None:
        return load_pipeline(base_model, dtype=dtype, allow_pickle=allow_pickle)
    info = run.info()
    if info.get("method") == "lora":
        pipe = load_pipeline(info.get("base_model", base_model), dtype=dtype, allow_pickle=allow_pickle)
        if not run.lora_file.is_file():
            raise DboothError(f"run {run.id}: {run.lora_file} is missing; the run is incomplete or damaged")
        pipe.load_lora_weights(str(run.final_dir), weight_name=run.lora_file.name)
        return pipe
    return load_pipeline(str(run.final_dir), dtype=dtype)


def generate(
    pipe,
    prompt: str,
    *,
    out_dir: Path,
    num_images: int,
    seed: int,
    steps: int,
    guidance_scale: float,
    scheduler: str,
    negative_prompt: str = "",
    height: int,
    width: int,
    model_label: str,
    batch_size: int = 4,
    reporter: Reporter | None = None,
    extra: dict | None = None,
) -> SampleResult:
    """Image ``k`` uses seed ``seed + k``, so any single image can be reproduced alone; ``extra``: further
    pipeline arguments (the family's ``call_kwargs``)."""
    reporter = reporter or Reporter()
    set_scheduler(pipe, scheduler)
    pipe.to(inference_device())
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, images = [], []
    reporter.start("sampling", total=num_images)
    for start in range(0, num_images, batch_size):
        seeds = [seed + k for k in range(start, min(num_images, start + batch_size))]
        batch = pipe(
            [prompt] * len(seeds),
            negative_prompt=[negative_prompt] * len(seeds) if negative_prompt else None,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            **(extra or {}),
        ).images
        for s, image in zip(seeds, batch):
            record = {
                "prompt": prompt,
                "negative_prompt": negative_prompt,
                "seed": s,
                "steps": steps,
                "guidance_scale": guidance_scale,
                "scheduler": scheduler,
                "model": model_label,
            }
            paths.append(write_png(out_dir / f"{len(paths):03d}-seed{s}.png", image, record))
            images.append(image)
        reporter.advance(len(paths))
    reporter.stop()
    return SampleResult(paths=paths, grid=_write_grid(images, out_dir), folder=out_dir)


def upscale(
    pipe,
    sources: list[Path],
    prompt: str,
    *,
    out_dir: Path,
    seeds: list[int],
    noise_level: int,
    steps: int,
    guidance_scale: float,
    scheduler: str,
    negative_prompt: str = "",
    model_label: str,
    upscaler_label: str,
    batch_size: int = 4,
    reporter: Reporter | None = None,
) -> SampleResult:
    """Stage (b): enlarge the stage-(a) images ``sources`` with the upscaler ``pipe`` (a
    StableDiffusionUpscalePipeline), same prompt, image ``k`` with seed ``seeds[k]``, into ``out_dir``."""
    reporter = reporter or Reporter()
    set_scheduler(pipe, scheduler)
    pipe.to(inference_device())
    paths, images = [], []
    reporter.start("upscaling", total=len(sources))
    for start in range(0, len(sources), batch_size):
        chunk = list(range(start, min(len(sources), start + batch_size)))
        inputs = [Image.open(sources[k]).convert("RGB") for k in chunk]
        batch = pipe(
            [prompt] * len(chunk),
            image=inputs,
            noise_level=noise_level,
            negative_prompt=[negative_prompt] * len(chunk) if negative_prompt else None,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=[torch.Generator("cpu").manual_seed(seeds[k]) for k in chunk],
        ).images
        for k, image in zip(chunk, batch):
            record = {
                "prompt": prompt,
                "negative_prompt": negative_prompt,
                "seed": seeds[k],
                "steps": steps,
                "guidance_scale": guidance_scale,
                "scheduler": scheduler,
                "model": model_label,
                "upscaler": upscaler_label,
                "noise_level": noise_level,
                "source": sources[k].relative_to(out_dir).as_posix() if sources[k].is_relative_to(out_dir) else str(sources[k]),
            }
            paths.append(write_png(out_dir / f"{k:03d}-seed{seeds[k]}.png", image, record))
            images.append(image)
        reporter.advance(len(paths))
    reporter.stop()
    return SampleResult(paths=paths, grid=_write_grid(images, out_dir), folder=out_dir)


def _write_grid(images: list[Image.Image], out_dir: Path) -> Path | None:
    if len(images) < 2:
        return None
    buf = io.BytesIO()
    make_grid(images).save(buf, format="PNG")
    atomic_write_bytes(out_dir / "grid.png", buf.getvalue())
    return out_dir / "grid.png"


def sample_folder(samples_dir: Path, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = samples_dir / label / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = samples_dir / label / f"{stamp}-{n}"
    return folder
