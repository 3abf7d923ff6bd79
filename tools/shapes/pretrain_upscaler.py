"""Pretrain the built-in 4x upscaler ``builtin:shapes-x4`` on pairs rendered by the world.

    python -m tools.shapes.pretrain_upscaler --out dbooth_shapes/shapes-x4 --minutes 40 --threads 1

Each pair is one scene rendered at 256 px (the target) and its 64 px version (the condition):
half the time the world's own 64 px render (what ``builtin:shapes`` learned to draw), half the
time the 256 px render downscaled 4x with a box filter (what stage-(b) fine-tuning feeds it).
Scenes are the world's solid-coloured objects only, like ``builtin:shapes``' text-to-image data:
patterned objects, and so the example subjects, never appear, so fine-tuning on a subject has its
pattern's fine detail to teach. The VAE is ``builtin:shapes``' (a generic codec that did see
patterns) with its latent scale folded in for the pipeline's fixed 0.08333; its text encoder is
reused frozen. Only the UNet trains: v-prediction, min-SNR-5 weighting, 10% empty captions, EMA.

The data set is rendered and encoded once; snapshots are written atomically, so ``--out`` always
holds a loadable ``StableDiffusionUpscalePipeline``. ``--init-from`` continues a saved upscaler.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dbooth.training.losses import min_snr_weights, snr
from dbooth_shapes import upscaler_architecture as U
from tools.shapes.pretrain import _earlier_card, save_pipeline, to_tensor
from dbooth_shapes.world import Scene, object_coverage, pretraining_caption, random_scene, render
from tools.shapes.run_clock import RunClock
from tools.shapes.run_clock import log as _log
from tools.shapes.steps import EMA, Steps


@dataclass
class UpscalerPretrainConfig:
    out: Path
    minutes: float = 40.0  # wall-clock budget for the whole run, data set included
    seed: int = 0
    dataset_size: int = 500  # scenes rendered and encoded once (~0.15 s each on one free thread)
    batch_size: int = 8  # full 64x64 latents, so training sees the sizes and attention spans of use
    lr: float = 5e-4
    caption_dropout: float = 0.1  # empty captions, for classifier-free guidance
    ema_decay: float = 0.999
    snapshot_minutes: float = 10.0
    threads: int = 1
    steps: int | None = None  # fixed step count instead of the time budget (reproducible)
    init_from: Path | None = None  # continue a saved upscaler instead of starting a new UNet
    base: str = "builtin:shapes"  # where a new upscaler takes its VAE, text encoder and tokenizer
    warmup: int | None = None  # lr warm-up steps; None: 100 for a new UNet, 10 when continuing
    scale_samples: int = 64  # renders whose latent std sets a new upscaler's VAE scale
    device: str = "cpu"  # "cuda" trains on a GPU (the data set is rendered on the CPU either way)
    object_weight: float = 0.0  # extra loss weight on the object's latent pixels (0: plain mean over the image)


def object_weights(scene: Scene, weight: float) -> np.ndarray:
    """Per-latent-pixel loss weights (LOW_RES x LOW_RES: one per latent pixel of a HIGH_RES image), 1 on the
    background and 1 + ``weight`` on the object, from its coverage at LOW_RES. Background textures are
    most of an image and a generic upscaler may invent them; the object is what stage (b) must keep."""
    coverage, _ = object_coverage(scene, U.LOW_RES)
    return (1.0 + weight * coverage).astype(np.float32)


def weighted_mean(errors: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of ``errors`` [B, C, H, W], weighted by ``weights`` [B, H, W] (normalised per sample)."""
    if weights is None:
        return errors.mean(dim=(1, 2, 3))
    w = weights[:, None]
    return (errors * w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3)) * errors.shape[1])


def training_views(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(256 px target, the world's own 64 px render, the target box-downscaled to 64 px) as uint8 HWC arrays."""
    high = render(scene, U.HIGH_RES)
    boxed = high.resize((U.LOW_RES, U.LOW_RES), Image.BOX)
    return np.asarray(high), np.asarray(render(scene, U.LOW_RES)), np.asarray(boxed)


def training_pair(scene: Scene, box_downscale: bool) -> tuple[np.ndarray, np.ndarray]:
    """(256 px target, 64 px condition) as uint8 HWC arrays."""
    high, rendered, boxed = training_views(scene)
    return high, boxed if box_downscale else rendered


def noise_levels(rng: np.random.Generator, n: int) -> torch.Tensor:
    """Noise-augmentation levels in 0..MAX_NOISE_LEVEL, drawn densest at the low end (u^2): the
    DreamBooth paper found low augmentation keeps a subject's details, and sampling uses 20."""
    u = rng.random(n)
    return torch.from_numpy(np.minimum((u**2 * (U.MAX_NOISE_LEVEL + 1)).astype(np.int64), U.MAX_NOISE_LEVEL))


@torch.no_grad()
def latent_std(vae, highs: torch.Tensor) -> float:
    """Std of sampled latents (before any scaling factor) of a batch of -1..1 images."""
    return float(torch.cat([vae.encode(x).latent_dist.sample() for x in highs.split(16)]).std())


def load_parts(cfg: UpscalerPretrainConfig, start: float):
    """(unet, vae, text_encoder, tokenizer): continued from ``init_from``, or a new UNet on ``base``'s parts."""
    if cfg.init_from is not None:
        from diffusers import StableDiffusionUpscalePipeline

        init = StableDiffusionUpscalePipeline.from_pretrained(cfg.init_from)
        _log(f"continuing {cfg.init_from}", start)
        return init.unet, init.vae, init.text_encoder, init.tokenizer
    from dbooth.families.loading import load_pipeline

    base = load_pipeline(str(cfg.base))
    rng = np.random.default_rng(cfg.seed + 7)
    sample = to_tensor(np.stack([np.asarray(render(random_scene(rng), U.HIGH_RES)) for _ in range(cfg.scale_samples)]))
    k = 1.0 / (U.UPSCALE_SCALING_FACTOR * latent_std(base.vae, sample))
    U.fold_latent_scale(base.vae, k)
    _log(f"VAE from {cfg.base}: latents scaled by {k:.3f} for scaling_factor {U.UPSCALE_SCALING_FACTOR}", start)
    unet = U.build_unet(base.text_encoder.config.hidden_size)
    return unet, base.vae, base.text_encoder, base.tokenizer


@torch.no_grad()
def encode_dataset(vae, cfg: UpscalerPretrainConfig, start: float):
    """Scenes, each target's latent mean and std, and both 64 px conditions, on ``vae``'s device."""
    rng = np.random.default_rng(cfg.seed + 2)
    scenes = [random_scene(rng) for _ in range(cfg.dataset_size)]
    means, stds, lows_render, lows_box = [], [], [], []
    for i in range(0, len(scenes), 16):
        chunk = scenes[i : i + 16]
        highs, rendered, boxed = (np.stack(v) for v in zip(*(training_views(s) for s in chunk)))
        post = vae.encode(to_tensor(highs).to(vae.device)).latent_dist
        means.append(post.mean)
        stds.append(post.std)
        lows_box.append(boxed)
        lows_render.append(rendered)
        if i % 320 == 0:
            _log(f"encoded {i + len(chunk)}/{len(scenes)}", start)
    lows = torch.stack([to_tensor(np.concatenate(lows_render)), to_tensor(np.concatenate(lows_box))]).to(vae.device)
    weights = (torch.from_numpy(np.stack([object_weights(s, cfg.object_weight) for s in scenes])).to(vae.device)
               if cfg.object_weight else None)
    return scenes, torch.cat(means), torch.cat(stds), lows, weights


def training_card(cfg: UpscalerPretrainConfig, stats: dict) -> str:
    flags = f" --init-from {cfg.init_from}" if cfg.init_from else ""
    flags += f" --lr {cfg.lr:g} --batch-size {cfg.batch_size} --dataset-size {cfg.dataset_size}"
    flags += f" --steps {cfg.steps}" if cfg.steps else ""
    flags += f" --object-weight {cfg.object_weight:g}" if cfg.object_weight else ""
    return f"""# builtin:shapes-x4 (training record)

Trained with:

    python -m tools.shapes.pretrain_upscaler --out {cfg.out} --minutes {cfg.minutes:g} --seed {cfg.seed} --threads {cfg.threads}{flags}

- UNet: {stats['steps']} steps at batch {cfg.batch_size} on {cfg.dataset_size} rendered solid-object scenes
  (256 px targets; 64 px conditions: the world's 64 px render or a 4x box downscale, half each),
  v-prediction, min-SNR-5{f", loss weight 1 + {cfg.object_weight:g} on the object" if cfg.object_weight else ""}, noise_level u^2 * 350, {cfg.caption_dropout:.0%} empty captions, EMA {cfg.ema_decay}
- data set rendered and encoded in {stats['encode_seconds']:.0f} s; total wall time {stats['wall_minutes']:.1f} min
  on {cfg.threads} CPU thread(s); final loss (EMA of the batch loss) {stats['loss']:.4f}
{_earlier_card(cfg.init_from)}"""


def pretrain(cfg: UpscalerPretrainConfig) -> Path:
    start = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    unet, vae, text_encoder, tokenizer = load_parts(cfg, start)
    device = torch.device(cfg.device)
    vae.eval().requires_grad_(False).to(device)
    text_encoder.eval().requires_grad_(False).to(device)
    unet.train().requires_grad_(True).to(device)
    _log(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters", start)
    scenes, lat_mean, lat_std, lows, weights = encode_dataset(vae, cfg, start)
    stats = {"steps": 0, "encode_seconds": time.time() - start, "wall_minutes": 0.0, "loss": float("nan")}
    _log(f"data set ready: {len(scenes)} pairs", start)

    scheduler, low_res_scheduler = U.build_train_scheduler(), U.build_low_res_scheduler()
    scaling = U.UPSCALE_SCALING_FACTOR
    ema = EMA(unet, cfg.ema_decay)
    steps = Steps(torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-2), clip=(unet.parameters(), 1.0),
                  emas=((ema, unet),), smoothing=0.02)
    warmup = cfg.warmup or (10 if cfg.init_from else 100)
    rng = np.random.default_rng(cfg.seed + 3)
    embed_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(text: str) -> torch.Tensor:
        if text not in embed_cache:
            ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            embed_cache[text] = text_encoder(ids.to(device))[0][0]
        return embed_cache[text]

    def snapshot(final: bool) -> None:
        stats["wall_minutes"] = (time.time() - start) / 60
        parts = [copy.deepcopy(m).cpu() for m in (ema.shadow, vae, text_encoder)]
        save_pipeline(cfg.out, U.assemble_pipeline(*parts, tokenizer), training_card(cfg, stats))
        _log(f"{'final model' if final else 'snapshot'} written to {cfg.out} (step {stats['steps']})", start)

    clock = RunClock(start, cfg.minutes, cfg.steps, cfg.snapshot_minutes)
    while clock.running(steps.count):
        idx = torch.from_numpy(rng.integers(0, len(scenes), cfg.batch_size)).to(device)
        latents = (lat_mean[idx] + lat_std[idx] * torch.randn_like(lat_std[idx])) * scaling
        low = lows[torch.from_numpy(rng.integers(0, 2, cfg.batch_size)).to(device), idx]
        level = noise_levels(rng, cfg.batch_size).to(device)
        low = low_res_scheduler.add_noise(low, torch.randn_like(low), level)
        captions = ["" if rng.random() < cfg.caption_dropout else pretraining_caption(scenes[i], rng)
                    for i in idx.tolist()]
        text = torch.stack([embed(c) for c in captions])
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,)).to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = unet(torch.cat([noisy, low], dim=1), t, text, class_labels=level).sample
        errors = F.mse_loss(pred, scheduler.get_velocity(latents, noise, t), reduction="none")
        per_sample = weighted_mean(errors, None if weights is None else weights[idx])
        loss = (per_sample * min_snr_weights(snr(scheduler.alphas_cumprod, t), 5.0, "v_prediction")).mean()
        lr = clock.learning_rate(cfg.lr, steps.count, warmup)
        stats["steps"] = steps.take(loss, lr)
        stats["loss"] = steps.smoothed
        if steps.due(50):
            _log(f"step {steps.count} loss {steps.smoothed:.4f} lr {lr:.2e}", start)
        if clock.snapshot_due():
            snapshot(final=False)
    snapshot(final=True)
    return cfg.out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget, data set included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-size", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--steps", type=int, default=None, help="fixed step count instead of the time budget")
    p.add_argument("--snapshot-minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 on a busy machine, where 2 threads spin-wait")
    p.add_argument("--init-from", type=Path, default=None, help="continue a saved upscaler folder")
    p.add_argument("--base", default="builtin:shapes",
                   help="text-to-image model whose VAE, text encoder and tokenizer a new upscaler takes")
    p.add_argument("--warmup", type=int, default=None, help="lr warm-up steps")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="extra loss weight on the object's pixels (e.g. 4: the object counts 5x the background)")
    a = p.parse_args(argv)
    pretrain(UpscalerPretrainConfig(out=a.out, minutes=a.minutes, seed=a.seed, dataset_size=a.dataset_size,
                                    batch_size=a.batch_size, lr=a.lr, steps=a.steps,
                                    snapshot_minutes=a.snapshot_minutes, threads=a.threads,
                                    init_from=a.init_from, base=a.base, warmup=a.warmup,
                                    device=a.device, object_weight=a.object_weight))


if __name__ == "__main__":
    main()
