"""The judges: a DINO ViT and a CLIP model, loaded with transformers from a folder or the Hugging Face cache.

The cache is tried first (``local_files_only``) so an evaluation never waits on the network for models
it already has; a missing model is downloaded only when the hub is reachable, and otherwise the error
names the command that fetches it. Images are resized (shorter side) and centre-cropped to the model's
input size and normalised with the statistics each model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from dbooth.util.errors import DboothError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # DINO
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
BATCH = 32


def to_pixels(images: Sequence[Image.Image], size: int, mean, std) -> torch.Tensor:
    """PIL images to a normalised NCHW batch: shorter side to ``size``, centre crop, (x - mean) / std."""
    out = []
    for im in images:
        im = im.convert("RGB")
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        out.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
    x = torch.stack(out).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _pooled(out) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 returns an output whose pooler_output holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@dataclass
class Dino:
    """Self-supervised ViT (the paper's ViT-S/16): the CLS token's embedding tells instances apart."""

    model: torch.nn.Module
    name: str

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        size = self.model.config.image_size
        rows = [self.model(pixel_values=to_pixels(images[i:i + BATCH], size, IMAGENET_MEAN, IMAGENET_STD))
                .last_hidden_state[:, 0] for i in range(0, len(images), BATCH)]
        return torch.cat(rows).float() if rows else torch.zeros(0, self.model.config.hidden_size)


@dataclass
class Clip:
    """CLIP's image and text towers, projected into their shared space."""

    model: torch.nn.Module
    tokenizer: object
    name: str

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        size = self.model.config.vision_config.image_size
        rows = [_pooled(self.model.get_image_features(pixel_values=to_pixels(images[i:i + BATCH], size, CLIP_MEAN,
                                                                                  CLIP_STD)))
                for i in range(0, len(images), BATCH)]
        return torch.cat(rows).float() if rows else torch.zeros(0, self.model.config.projection_dim)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        return _pooled(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                    attention_mask=tokens.get("attention_mask"))).float()


def _load(loader, name: str, what: str, setting: str):
    """``loader.from_pretrained``: a local folder as is; a hub id from the cache, then the hub if reachable."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        try:
            return loader.from_pretrained(str(folder))
        except Exception as exc:  # transformers raises OSError, ValueError or KeyError for a wrong folder
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise DboothError(f"{what} {folder}: cannot be loaded ({reason}); point {setting} at a "
                              "transformers model folder (config.json and weights)") from None
    if at_hand(name):  # asked of the cache alone: transformers looks for extra files online even when told not to
        try:
            return loader.from_pretrained(name, local_files_only=True)
        except Exception:  # not completely cached: try the hub unless it cannot be reached
            pass
    from dbooth.util.hub import hub_reachable

    if hub_reachable():  # else huggingface_hub would retry for over a minute before failing
        try:
            return loader.from_pretrained(name)
        except Exception:
            pass
    raise DboothError(f"{what} {name} is not in the local Hugging Face cache and the hub cannot be reached; "
                      f"download it once while online (huggingface-cli download {name}) or set {setting} "
                      "to a local folder")


def at_hand(name: str) -> bool:
    """Whether a judge loads without a download: a model folder, or its config in the Hugging Face cache."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def load_dino(name: str) -> Dino:
    from transformers import AutoModel

    return Dino(_load(AutoModel, name, "DINO model", "eval.dino").eval(), name)


def load_clip(name: str) -> Clip:
    from transformers import AutoTokenizer, CLIPModel

    model = _load(CLIPModel, name, "CLIP model", "eval.clip").eval()
    return Clip(model, _load(AutoTokenizer, name, "CLIP tokenizer", "eval.clip"), name)
