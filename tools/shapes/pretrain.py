"""Pretrain the built-in ``builtin:shapes`` model from scratch on the rendered world.

    python -m tools.shapes.pretrain --out dbooth_shapes/shapes --minutes 60 --seed 0

Three phases, each on a wall-clock budget so the run fits the time it is given:
the VAE (short), encoding a fixed rendered data set to latents once (the UNet then trains
many epochs without touching the VAE), and the UNet with the text encoder trained from
scratch (epsilon prediction, min-SNR weighting, 10% empty captions for classifier-free
guidance, EMA weights). Snapshots are written atomically, so ``--out`` always holds a
loadable model.
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

from dbooth.training.losses import min_snr_weights, snr
from dbooth_shapes import architecture as C
from dbooth_shapes.world import COLOURS, PATTERNS, Scene, caption, pretraining_caption, random_scene, render_batch
from tools.shapes.run_clock import RunClock
from tools.shapes.run_clock import log as _log
from tools.shapes.steps import EMA, Steps
from dbooth_shapes.examples import lookalike_scene
from dbooth.util.fsutil import atomic_path, atomic_write_text


@dataclass
class PretrainConfig:
    out: Path
    minutes: float = 60.0
    seed: int = 0
    vae_fraction: float = 0.2  # of the budget; the VAE only needs to reconstruct flat shapes and textures
    dataset_size: int = 20_000  # several epochs in an hour; re-noised every time, so repeats are cheap
    batch_size: int = 32
    lr: float = 4e-4
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    snapshot_minutes: float = 10.0
    threads: int = 2
    steps: int | None = None  # fixed UNet step count instead of the time budget (reproducible)
    init_from: Path | None = None  # continue a saved model: its VAE is kept, UNet + text encoder train on
    vae_only: bool = False  # train only the VAE (on from init_from's, if given) for the whole budget
    vae_batch_size: int = 16
    vae_lr: float = 1e-3
    new_unet: bool = False  # with init_from: keep its VAE, tokenizer and text encoder, start a new UNet
    device: str | None = None  # None: the GPU when there is one (bf16 autocast there), else the CPU
    render_workers: int = 1  # processes rendering the data set (the GPU trains faster than one core renders)
    warmup: int | None = None  # lr warm-up steps; None: 200 from scratch or for a new UNet, 20 when continuing
    bare_fraction: float = 0.0  # of the non-empty captions: the bare class caption "a photo of a star" instead
    patterned_fraction: float = 0.0  # of the data set: patterned look-alikes (never an example subject's look)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC to float NCHW in -1..1, the VAE's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def vae_scene(rng: np.random.Generator) -> Scene:
    """World scenes plus random patterns: the VAE is a generic image codec, not text-conditioned,
    and must be able to reconstruct the patterned subjects DreamBooth will later teach."""
    scene = random_scene(rng)
    if rng.random() < 0.3:
        scene = Scene(**{**scene.__dict__, "pattern": str(rng.choice(PATTERNS[1:])),
                         "colour2": str(rng.choice(list(COLOURS)))})
    return scene


def image_gradient_l1(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical pixel differences: penalises blurred edges and
    patterns, which plain MSE/L1 on pixels tolerates."""
    def grads(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]

    (rx, ry), (xx, xy) = grads(rec), grads(x)
    return F.l1_loss(rx, xx) + F.l1_loss(ry, xy)


def train_vae(cfg: PretrainConfig, seconds: float, start: float, vae=None):
    """Train a VAE (from scratch, or on from ``vae``) on rendered scenes for ``seconds``."""
    vae = (vae or C.build_vae()).train().requires_grad_(True)
    rng = np.random.default_rng(cfg.seed + 1)
    steps = Steps(torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0), smoothing=0.05)
    pool = to_tensor(render_batch([vae_scene(rng) for _ in range(4000)]))
    t0 = time.time()
    while time.time() - t0 < seconds:
        x = pool[torch.randint(0, len(pool), (cfg.vae_batch_size,))]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 0.5 * image_gradient_l1(rec, x) + 1e-4 * kl
        steps.take(loss)
        if steps.due(20):
            _log(f"vae step {steps.count} loss {steps.smoothed:.4f} kl {kl.item():.4f}", start)
        if steps.due(200):  # refresh a quarter of the pool so the VAE sees more than 4000 images
            idx = torch.randperm(len(pool))[:1000]
            pool[idx] = to_tensor(render_batch([vae_scene(rng) for _ in range(1000)]))
    vae.eval().requires_grad_(False)
    _log(f"vae done: {steps.count} steps", start)
    return vae, steps.count


def render_chunks(scenes: list[Scene], chunk: int, workers: int):
    """Rendered uint8 batches of ``chunk`` scenes, in order; ``workers`` processes render ahead.
    Rendering is deterministic per scene, so the data set does not depend on the worker count."""
    parts = [scenes[i : i + chunk] for i in range(0, len(scenes), chunk)]
    if workers <= 1:
        yield from map(render_batch, parts)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may already hold a CUDA context and torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(render_batch, parts)


@torch.no_grad()
def encode_dataset(vae, cfg: PretrainConfig, start: float, device: torch.device = torch.device("cpu")):
    """Render the UNet's data set once and keep each image's latent mean and std (on ``device``)."""
    scenes = dataset_scenes(cfg)
    means, stds = [], []
    for i, images in enumerate(render_chunks(scenes, 256, cfg.render_workers)):
        post = vae.encode(to_tensor(images).to(device)).latent_dist
        means.append(post.mean.float())
        stds.append(post.std.float())
        if i % 20 == 0:
            _log(f"encoded {min((i + 1) * 256, len(scenes))}/{len(scenes)}", start)
    mean, std = torch.cat(means), torch.cat(stds)
    sample = mean + std * torch.randn_like(std)
    if cfg.init_from is None:  # a continued model keeps the scale its UNet was trained on
        scaling = float(1.0 / sample.std())
        vae.register_to_config(scaling_factor=scaling)
    _log(f"latent std {sample.std():.3f}; scaling_factor {vae.config.scaling_factor:.4f}", start)
    return scenes, mean, std


def dataset_scenes(cfg: PretrainConfig) -> list[Scene]:
    """The UNet's data set: world scenes, with ``patterned_fraction`` of them patterned look-alikes
    drawn from a stream of their own (0 keeps exactly the earlier stages' scenes)."""
    rng = np.random.default_rng(cfg.seed + 2)
    scenes = [random_scene(rng) for _ in range(cfg.dataset_size)]
    if cfg.patterned_fraction:
        prng = np.random.default_rng(cfg.seed + 5)
        chosen = prng.random(len(scenes)) < cfg.patterned_fraction
        scenes = [lookalike_scene(prng) if c else s for s, c in zip(scenes, chosen)]
    return scenes


def training_caption(scene: Scene, rng: np.random.Generator, cfg: PretrainConfig) -> str:
    """Empty (``caption_dropout``), the bare class caption (``bare_fraction`` of the rest), or a
    pretraining caption. A stage weighted toward bare captions trains what DreamBooth's class prompt
    and prior preservation lean on, where the model was weakest."""
    if rng.random() < cfg.caption_dropout:
        return ""
    if cfg.bare_fraction and rng.random() < cfg.bare_fraction:
        return caption(scene, colour=False, context=False)
    if scene.pattern != "solid":  # no words for patterns: "a photo of a star (on the beach)"
        return caption(scene, colour=False, context=bool(rng.random() < 0.75))
    return pretraining_caption(scene, rng)


def save_pipeline(out: Path, pipe, card: str) -> None:
    """Write ``pipe`` and its README to ``out`` atomically, so a snapshot never leaves a half-written model."""
    with atomic_path(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        atomic_write_text(tmp / "README.md", card)


def model_card(cfg: PretrainConfig, stats: dict) -> str:
    flags = f" --init-from {cfg.init_from}" if cfg.init_from else ""
    flags += " --new-unet" if cfg.new_unet else ""
    flags += f" --lr {cfg.lr:g} --batch-size {cfg.batch_size}" + (f" --warmup {cfg.warmup}" if cfg.warmup else "")
    flags += f" --dataset-size {cfg.dataset_size}" + (f" --steps {cfg.steps}" if cfg.steps else "")
    flags += f" --bare-fraction {cfg.bare_fraction:g}" if cfg.bare_fraction else ""
    flags += f" --patterned-fraction {cfg.patterned_fraction:g}" if cfg.patterned_fraction else ""
    what = ("trained a new UNet on its VAE and text encoder" if cfg.new_unet
            else "continued its UNet and text encoder")
    vae_line = (f"kept from {cfg.init_from} (this run {what})" if cfg.init_from
                else f"{stats['vae_steps']} steps at batch {cfg.vae_batch_size}, lr {cfg.vae_lr:g} "
                     f"({stats['vae_seconds']:.0f} s), MSE + 0.5 L1 + 0.5 image-gradient L1 + KL")
    return f"""# builtin:shapes

A tiny Stable-Diffusion-1.x-shaped text-to-image model (64x64 RGB, 16x16x4 latents),
pretrained from scratch by dbooth on its procedurally rendered world
(`dbooth_shapes/world.py`): six solid-coloured shapes (star, circle, square, triangle,
heart, ring) in eight colours on ten DreamBench-style contexts, captioned like
"a photo of a blue star on the beach" plus partial captions ("a photo of a star").
Patterned objects never appear in its text-to-image data, and the identifier tokens
`{" ".join(C.IDENTIFIER_TOKENS)}` never appear in its captions, so DreamBooth has
something new to teach.

Trained with:

    python -m tools.shapes.pretrain --out {cfg.out} --minutes {cfg.minutes:g} --seed {cfg.seed} --threads {cfg.threads}{flags}

- VAE: {vae_line};
  scaling_factor {stats['scaling']:.4f} (1 / std of latents)
- UNet + CLIP text encoder {'from scratch' if not cfg.init_from else 'new UNet, text encoder continued' if cfg.new_unet else 'continued'}: {stats['unet_steps']} steps at batch {cfg.batch_size}
  on {cfg.dataset_size} rendered scenes, epsilon prediction, min-SNR-5 weighting,
  {cfg.caption_dropout:.0%} empty captions, EMA {cfg.ema_decay}; saved weights are the EMA
- total wall time {stats['wall_minutes']:.1f} min on {_where(stats['device'], cfg.threads)}
- scheduler: DPMSolverMultistep with SD's scaled_linear betas 0.00085-0.012, 1000 steps

Evaluate with `tools.shapes.score_model.evaluate_base_model` (uses the oracle in `dbooth_shapes.oracle`).
{_earlier_card(cfg.init_from)}"""


def _where(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (bf16 autocast)"
    return f"{threads} CPU threads"


def _earlier_card(init_from: Path | None) -> str:
    """A continued model keeps the record of how its starting point was trained."""
    if init_from is None or not (Path(init_from) / "README.md").is_file():
        return ""
    body = (Path(init_from) / "README.md").read_text().split("\n", 1)[1].strip()
    return "\n## Starting point (before this run)\n\n" + body.replace("\n## ", "\n### ") + "\n"


@torch.no_grad()
def latent_scaling(vae, seed: int, count: int = 2000) -> float:
    """1 / std of sampled latents of world scenes, so the UNet sees unit-variance latents."""
    rng = np.random.default_rng(seed + 4)
    scenes = [random_scene(rng) for _ in range(count)]
    samples = [vae.encode(to_tensor(render_batch(scenes[i : i + 250]))).latent_dist.sample()
               for i in range(0, count, 250)]
    return float(1.0 / torch.cat(samples).std())


def retrain_vae(cfg: PretrainConfig) -> Path:
    """The VAE stage on its own: train the VAE (on from ``init_from``'s, if given) for the whole
    budget, set its latent scaling, and save a model whose UNet and text encoder are carried over
    unchanged. Continue it with ``--init-from OUT``: the UNet then adapts to the new latents."""
    from diffusers import StableDiffusionPipeline

    start = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.init_from is not None:
        init = StableDiffusionPipeline.from_pretrained(cfg.init_from)
        vae, unet, text_encoder, tokenizer = init.vae, init.unet, init.text_encoder, init.tokenizer
    else:
        tokenizer = C.build_tokenizer()
        vae, unet, text_encoder = C.build_vae(), C.build_unet(), C.build_text_encoder(tokenizer)
    vae, steps = train_vae(cfg, cfg.minutes * 60, start, vae)
    scaling = latent_scaling(vae, cfg.seed)
    vae.register_to_config(scaling_factor=scaling)
    _log(f"scaling_factor {scaling:.4f}", start)
    source = f"on from {cfg.init_from}'s VAE" if cfg.init_from else "from scratch"
    card = (f"# builtin:shapes (VAE stage)\n\nVAE trained {source}: {steps} steps at batch {cfg.vae_batch_size}, "
            f"lr {cfg.vae_lr:g}, MSE + 0.5 L1 + 0.5 image-gradient L1 + KL, {cfg.minutes:g} min on "
            f"{cfg.threads} threads; scaling_factor {scaling:.4f}.\n\n    python -m tools.shapes.pretrain "
            f"--vae-only --out {cfg.out} --minutes {cfg.minutes:g} --threads {cfg.threads} --vae-lr {cfg.vae_lr:g}"
            f"{f' --init-from {cfg.init_from}' if cfg.init_from else ''}\n\nUNet and text encoder: carried over; "
            f"continue them with `--init-from {cfg.out}`.\n{_earlier_card(cfg.init_from)}")
    save_pipeline(cfg.out, C.assemble_pipeline(unet, vae, text_encoder, tokenizer), card)
    _log(f"model with the new VAE written to {cfg.out}", start)
    return cfg.out


def training_device(cfg: PretrainConfig) -> torch.device:
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def pretrain(cfg: PretrainConfig) -> Path:
    if cfg.vae_only:
        return retrain_vae(cfg)
    start = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = training_device(cfg)
    budget = cfg.minutes * 60
    if cfg.init_from is None:
        vae_seconds = budget * cfg.vae_fraction
        vae, vae_steps = train_vae(cfg, vae_seconds, start)
        tokenizer = C.build_tokenizer()
        text_encoder = C.build_text_encoder(tokenizer)
        unet = C.build_unet()
    else:
        from diffusers import StableDiffusionPipeline

        init = StableDiffusionPipeline.from_pretrained(cfg.init_from)
        vae, tokenizer, text_encoder = init.vae.eval().requires_grad_(False), init.tokenizer, init.text_encoder
        unet = C.build_unet() if cfg.new_unet else init.unet
        vae_seconds, vae_steps = 0.0, 0
        _log(f"{'new UNet on' if cfg.new_unet else 'continuing'} {cfg.init_from}", start)
    warmup = cfg.warmup or (20 if cfg.init_from and not cfg.new_unet else 200)
    vae, unet, text_encoder = vae.to(device), unet.to(device).train(), text_encoder.to(device).train()
    _log(f"training on {device}; UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters", start)
    scenes, lat_mean, lat_std = encode_dataset(vae, cfg, start, device)
    vae.to("cpu")
    scaling = vae.config.scaling_factor
    scheduler = C.build_train_scheduler()
    ema_unet, ema_text = EMA(unet, cfg.ema_decay), EMA(text_encoder, cfg.ema_decay)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    steps = Steps(torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2, fused=device.type == "cuda"),
                  clip=(params, 1.0), emas=((ema_unet, unet), (ema_text, text_encoder)))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    rng = np.random.default_rng(cfg.seed + 3)
    token_cache: dict[str, torch.Tensor] = {}

    def tokens(text: str) -> torch.Tensor:
        if text not in token_cache:
            token_cache[text] = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                                          truncation=True, return_tensors="pt").input_ids[0]
        return token_cache[text]

    stats = dict(vae_steps=vae_steps, vae_seconds=vae_seconds, scaling=scaling, unet_steps=0, wall_minutes=0.0,
                 device=str(device))

    def snapshot(final: bool) -> None:
        stats["wall_minutes"] = (time.time() - start) / 60
        unet_cpu, text_cpu = copy.deepcopy(ema_unet.shadow).cpu(), copy.deepcopy(ema_text.shadow).cpu()
        save_pipeline(cfg.out, C.assemble_pipeline(unet_cpu, vae, text_cpu, tokenizer), model_card(cfg, stats))
        _log(f"{'final model' if final else 'snapshot'} written to {cfg.out} (step {stats['unet_steps']})", start)

    clock = RunClock(start, cfg.minutes, cfg.steps, cfg.snapshot_minutes)
    while clock.running(steps.count):
        idx = rng.integers(0, len(scenes), cfg.batch_size)
        gidx = torch.from_numpy(idx).to(device)
        latents = (lat_mean[gidx] + lat_std[gidx] * torch.randn_like(lat_std[gidx])) * scaling
        captions = [training_caption(scenes[i], rng, cfg) for i in idx]
        ids = torch.stack([tokens(c) for c in captions]).to(device)
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,), device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        with autocast:
            pred = unet(noisy, t, text_encoder(ids)[0]).sample
        per_sample = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * min_snr_weights(snr(scheduler.alphas_cumprod, t), 5.0, "epsilon")).mean()
        lr = clock.learning_rate(cfg.lr, steps.count, warmup)
        stats["unet_steps"] = steps.take(loss, lr)
        if steps.due(50):  # reading the loss waits for the GPU, so only now and then
            _log(f"unet step {steps.count} loss {steps.window_mean():.4f} lr {lr:.2e}", start)
        if clock.snapshot_due():
            snapshot(final=False)
    snapshot(final=True)
    return cfg.out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-size", type=int, default=20_000)
    p.add_argument("--snapshot-minutes", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=None, help="fixed UNet steps instead of the time budget")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--init-from", type=Path, default=None,
                   help="continue training a saved model (keeps its VAE) instead of starting from scratch")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads; use 1 on a busy machine, where 2 threads spin-wait (measured 4x slower)")
    p.add_argument("--vae-only", action="store_true",
                   help="train only the VAE (on from --init-from's), keeping its UNet and text encoder")
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--new-unet", action="store_true",
                   help="with --init-from: keep its VAE, tokenizer and text encoder and train a new UNet")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=None, help="lr warm-up steps")
    p.add_argument("--device", default=None,
                   help="cpu or cuda for the UNet stage (default: cuda when available; --vae-only runs on the CPU)")
    p.add_argument("--render-workers", type=int, default=1, help="processes that render the data set")
    p.add_argument("--bare-fraction", type=float, default=0.0,
                   help="share of non-empty captions replaced by the bare class caption ('a photo of a star')")
    p.add_argument("--patterned-fraction", type=float, default=0.0,
                   help="share of the data set that is patterned objects in two colours, never an example "
                        "subject's look, captioned without colour words ('a photo of a star on the beach')")
    a = p.parse_args(argv)
    for name in ("bare_fraction", "patterned_fraction"):
        if not 0.0 <= getattr(a, name) <= 1.0:
            p.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if a.new_unet and a.init_from is None:
        p.error("--new-unet needs --init-from (the model whose VAE and text encoder to keep)")
    pretrain(PretrainConfig(out=a.out, minutes=a.minutes, seed=a.seed, dataset_size=a.dataset_size,
                            snapshot_minutes=a.snapshot_minutes, steps=a.steps, threads=a.threads,
                            init_from=a.init_from, lr=a.lr, vae_only=a.vae_only,
                            vae_lr=a.vae_lr, new_unet=a.new_unet, batch_size=a.batch_size, warmup=a.warmup,
                            device=a.device, render_workers=a.render_workers, bare_fraction=a.bare_fraction,
                            patterned_fraction=a.patterned_fraction))


if __name__ == "__main__":
    main()
