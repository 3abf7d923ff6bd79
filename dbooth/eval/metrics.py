"""DreamBench's metrics (Ruiz et al. 2023, section 4.1) as pure functions on embeddings.

Every function takes embeddings (one row per image or prompt) that an encoder has already
computed, so the maths is testable on known tensors without any model:

- DINO: mean cosine similarity of ViT-S/16 CLS embeddings of generated images to the subject photos
  (subject fidelity; higher is better).
- CLIP-I: the same with CLIP image embeddings.
- CLIP-T: mean cosine of each generated image's CLIP image embedding with its prompt's CLIP text
  embedding (prompt fidelity; higher is better).
- PRES: DINO of plain class-prompt samples ("a photo of a dog") to the subject photos: how far the
  class drifted toward the subject (lower is better).
- DIV: mean pairwise distance between samples of one prompt, averaged over prompts (higher is more
  diverse). The paper uses LPIPS; ``pairwise_mean`` takes any distance.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``: shape (len(a), len(b))."""
    return _unit(a) @ _unit(b).T


def mean_cosine(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine over all (generated, reference) pairs: DINO, CLIP-I and PRES are this on their embeddings."""
    if not len(generated) or not len(reference):
        return float("nan")
    return float(cosine_matrix(generated, reference).mean())


def dino_score(generated: torch.Tensor, subject: torch.Tensor) -> float:
    """DINO: generated images' ViT CLS embeddings against the subject photos'."""
    return mean_cosine(generated, subject)


def clip_i_score(generated: torch.Tensor, subject: torch.Tensor) -> float:
    """CLIP-I: generated images' CLIP image embeddings against the subject photos'."""
    return mean_cosine(generated, subject)


def clip_t_score(images: torch.Tensor, texts: torch.Tensor) -> float:
    """CLIP-T: row ``i`` of ``images`` against row ``i`` of ``texts`` (its prompt), averaged."""
    if len(images) != len(texts):
        raise ValueError(f"CLIP-T pairs each image with its prompt: {len(images)} images, {len(texts)} prompts")
    if not len(images):
        return float("nan")
    return float((_unit(images) * _unit(texts)).sum(-1).mean())


def pres_score(class_samples: torch.Tensor, subject: torch.Tensor) -> float:
    """PRES: DINO embeddings of plain class-prompt samples against the subject photos (lower is better)."""
    return mean_cosine(class_samples, subject)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cosine, pair by pair (row ``i`` of ``a`` with row ``i`` of ``b``)."""
    return 1 - (_unit(a) * _unit(b)).sum(-1)


Distance = Callable[[Sequence, Sequence], torch.Tensor]


def pairwise_mean(items: Sequence, distance: Distance) -> float:
    """Mean of ``distance`` over every unordered pair of ``items``; nan with fewer than two."""
    pairs = list(itertools.combinations(range(len(items)), 2))
    if not pairs:
        return float("nan")
    a = [items[i] for i, _ in pairs]
    b = [items[j] for _, j in pairs]
    if isinstance(items, torch.Tensor):
        a, b = torch.stack(a), torch.stack(b)
    return float(distance(a, b).float().mean())


def div_score(samples_by_prompt: dict[str, Sequence], distance: Distance) -> float:
    """DIV: the mean pairwise distance among one prompt's samples, averaged over prompts."""
    scores = [pairwise_mean(items, distance) for items in samples_by_prompt.values() if len(items) > 1]
    return float(sum(scores) / len(scores)) if scores else float("nan")
