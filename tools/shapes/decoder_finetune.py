"""Sharpen a built-in model's VAE decoder after (or while) its UNet trains.

With the encoder frozen, latents stay exactly what the UNet was trained on, so the decoder
can keep learning independently; on a busy 2-core machine the VAE phase of pretraining is
short and this recovers detail (edges, subject patterns) without retraining anything else.

    python -m tools.shapes.decoder_finetune --model dbooth_shapes/shapes --minutes 30 [--vae-out DIR]
    python -m tools.shapes.decoder_finetune --model dbooth_shapes/shapes --install DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from tools.shapes.pretrain import to_tensor, vae_scene
from tools.shapes.run_clock import log
from tools.shapes.steps import Steps
from dbooth_shapes.world import render_batch
from dbooth.util.fsutil import atomic_path, atomic_write_text


def finetune_decoder(model: Path, minutes: float, vae_out: Path | None = None, seed: int = 0,
                     batch_size: int = 8, lr: float = 5e-4, threads: int = 2) -> Path:
    """Train ``post_quant_conv`` and the decoder on fresh renders; write the VAE to ``vae_out``
    (default: the model's own ``vae`` folder, replaced atomically)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.time()
    vae = AutoencoderKL.from_pretrained(model / "vae")
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    steps = Steps(torch.optim.AdamW(params, lr=lr, weight_decay=0.0), smoothing=0.05)
    rng = np.random.default_rng(seed + 10)
    while time.time() - start < minutes * 60:
        x = to_tensor(render_batch([vae_scene(rng) for _ in range(batch_size)]))
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        rec = vae.decode(z).sample
        steps.take(F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x))
        if steps.due(20):
            log(f"decoder step {steps.count} loss {steps.smoothed:.4f}", start)
    target = vae_out or model / "vae"
    with atomic_path(target) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
    note = (f"\n- VAE decoder then fine-tuned for {steps.count} steps at batch {batch_size} ({minutes:g} min, "
            f"lr {lr:g}, encoder frozen so latents are unchanged): `python -m tools.shapes.decoder_finetune "
            f"--model {model} --minutes {minutes:g}`\n")
    if vae_out is None:
        _add_to_card(model, note)
    else:
        atomic_write_text(_note_path(target), note)
    print(f"decoder fine-tuned for {steps.count} steps; VAE written to {target}", flush=True)
    return target


def _note_path(vae_dir: Path) -> Path:
    return vae_dir.with_name(vae_dir.name + ".note.md")


def _add_to_card(model: Path, note: str) -> None:
    card = model / "README.md"
    if card.is_file():
        atomic_write_text(card, card.read_text() + note)


def install_vae(model: Path, vae_dir: Path) -> None:
    """Put a separately fine-tuned VAE (``--vae-out``) into a model folder, with its card note.
    Safe only when both share the encoder, i.e. the VAE was fine-tuned from this model's."""
    import shutil

    with atomic_path(model / "vae") as tmp:
        shutil.copytree(vae_dir, tmp)
    note = _note_path(vae_dir)
    _add_to_card(model, note.read_text() if note.is_file() else f"\n- VAE decoder fine-tuned separately ({vae_dir})\n")
    print(f"installed {vae_dir} into {model / 'vae'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fine-tune a built-in model's VAE decoder.")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--vae-out", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--install", type=Path, default=None, help="only copy this fine-tuned VAE folder into --model")
    a = p.parse_args(argv)
    if a.install:
        install_vae(a.model, a.install)
    else:
        finetune_decoder(a.model, a.minutes, a.vae_out, a.seed, threads=a.threads)


if __name__ == "__main__":
    main()
