"""One DreamBooth step's maths: draw a batch, noise it, predict, and score against the family's target."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dbooth.training.losses import LossParts, dreambooth_loss, loss_from_rows, row_errors
from dbooth.workspace.schema import TrainConfig
from dbooth.training.conditioning import PromptBank
from dbooth.training.data import LatentBank
from dbooth.training.setup import Models


@dataclass
class Batch:
    latents: torch.Tensor  # [B, C, h, w], instance rows first, then class rows
    geometry: torch.Tensor  # [B, 6], see LatentBank.sample
    captions: list[int]  # PromptBank index per row
    num_instance: int
    mask: torch.Tensor | None = None  # [B, 1, h, w] loss mask (class rows all ones); None = no masks
    apart: list[Batch] = field(default_factory=list)  # class rows of other shapes than the photos', one batch each
    low_res: torch.Tensor | None = None  # [B, 3, h, w] upscaler inputs (LatentBank.draw); None elsewhere

    def select(self, rows: list[int]) -> Batch:
        """The given rows (instance rows listed before class rows), as a batch of their own."""
        index = torch.tensor(rows, device=self.latents.device)
        return Batch(self.latents[index], self.geometry[rows], [self.captions[i] for i in rows],
                     sum(1 for i in rows if i < self.num_instance), None if self.mask is None else self.mask[index],
                     low_res=None if self.low_res is None else self.low_res[index.to(self.low_res.device)])


@dataclass(frozen=True)
class Share:
    """One process's part of a global batch under data parallelism: process ``index`` of ``count``.

    Every process draws the whole global batch and its noise and timesteps from the same random
    stream (all start from one seed), then keeps its own contiguous slice of the instance rows and of
    the class rows. So N processes with batch b see exactly the samples and noise of one process with
    batch N x b, and averaging their gradients gives that process's gradient."""

    index: int = 0
    count: int = 1

    def rows(self, num_instance: int, total: int) -> list[int]:
        """This process's rows of a batch whose first ``num_instance`` rows are instance rows."""
        keep = []
        for start, size in ((0, num_instance), (num_instance, total - num_instance)):
            if size % self.count:
                raise ValueError(f"{size} rows cannot be split evenly between {self.count} processes")
            part = size // self.count
            keep += range(start + self.index * part, start + (self.index + 1) * part)
        return keep


def at_shape(members: list[int], targets: list[tuple[int, int]], shape: tuple[int, int]) -> list[int]:
    """The class images among ``members`` cut to ``shape`` (the photos' bucket), so photo and class rows share
    one UNet call; when none is, those of the shape most of them have (square class images from before
    bucketed priors: the draw is then exactly the unbucketed one)."""
    matching = [i for i in members if targets[i] == shape]
    if matching:
        return matching
    shapes = [targets[i] for i in members]
    common = max(dict.fromkeys(shapes), key=shapes.count)  # first seen wins a tie
    return [i for i in members if targets[i] == common]


@dataclass
class ClassPick:
    """Several classes (subjects of different kinds): each photo's class rows come from its own class."""

    groups: list[list[int]]  # class-image indices of each class
    captions: list[int]  # PromptBank index of each class's prompt
    photo_class: list[int]  # class of each instance photo

    @classmethod
    def of(cls, image_class: list[int], photo_class: list[int], first_caption: int) -> ClassPick:
        count = max(image_class) + 1
        groups = [[i for i, k in enumerate(image_class) if k == c] for c in range(count)]
        return cls(groups, [first_caption + c for c in range(count)], list(photo_class))

    def draw(self, photos: torch.Tensor, targets: list[tuple[int, int]] | None = None,
             shape: tuple[int, int] | None = None) -> tuple[torch.Tensor, list[int]]:
        """One class image per drawn photo, from that photo's class (at the photos' ``shape`` when the class has
        images there, see ``at_shape``; ``targets``: each class image's shape), and each row's class prompt."""
        kinds = [self.photo_class[int(i)] for i in photos]
        groups = self.groups if targets is None else [at_shape(g, targets, shape) for g in self.groups]
        rows = [groups[k][int(torch.randint(0, len(groups[k]), ()).item())] for k in kinds]
        return torch.tensor(rows), [self.captions[k] for k in kinds]


def draw_indices(groups: list[list[int]], batch_size: int) -> torch.Tensor:
    """``batch_size`` image indices from one bucket. A bucket is chosen as often as it has images (by
    drawing one image), then the batch is drawn within it; with one bucket this is a plain uniform draw."""
    if len(groups) == 1:
        return torch.tensor(groups[0])[torch.randint(0, len(groups[0]), (batch_size,))]
    sizes = torch.tensor([len(g) for g in groups])
    first = int(torch.randint(0, int(sizes.sum()), ()).item())
    members = groups[int((sizes.cumsum(0) <= first).sum().item())]
    return torch.tensor(members)[torch.randint(0, len(members), (batch_size,))]


def draw_batch(instance: LatentBank, classes: LatentBank | None, batch_size: int, class_caption: int | ClassPick,
               device: torch.device) -> Batch:
    """``batch_size`` subject images from one bucket and, with prior preservation, as many class images: of
    the one class (``class_caption`` is its prompt's index) or, with a ``ClassPick``, each of its photo's
    class; at the photos' bucket when there are class images at it (``at_shape``), else trained ``apart``."""
    ii = draw_indices(instance.groups(), batch_size)
    latents, geometry, mask, low = instance.draw(ii)
    if classes is None:
        mask = None if mask is None else mask.to(device, torch.float32)
        return Batch(latents.to(device, torch.float32), geometry, ii.tolist(), batch_size, mask,
                     low_res=_on(low, device))
    shape = instance.targets[int(ii[0])]
    if isinstance(class_caption, ClassPick):
        ci, class_captions = class_caption.draw(ii, classes.targets, shape)
    else:
        members = torch.tensor(at_shape(list(range(len(classes))), classes.targets, shape))
        ci, class_captions = members[torch.randint(0, len(members), (batch_size,))], [class_caption] * batch_size
    parts, geometries, captions, masks, lows = [latents], [geometry], ii.tolist(), [mask], [low]
    apart = []
    for rows in _by_shape(ci, classes.targets):
        c_latents, c_geometry, _, c_low = classes.draw(ci[rows])
        c_captions = [class_captions[r] for r in rows]
        if classes.targets[int(ci[rows[0]])] != shape:  # no class image at the photos' bucket: a UNet call apart
            apart.append(Batch(c_latents.to(device, torch.float32), c_geometry, c_captions, 0,
                               low_res=_on(c_low, device)))
            continue
        parts.append(c_latents)
        geometries.append(c_geometry)
        captions += c_captions
        lows.append(c_low)
        if mask is not None:  # class rows count fully
            masks.append(torch.ones(c_latents.shape[0], 1, *c_latents.shape[-2:], device=mask.device))
    mask = None if mask is None else torch.cat(masks).to(device, torch.float32)
    low = None if low is None else torch.cat(lows)
    return Batch(torch.cat(parts).to(device, torch.float32), torch.cat(geometries), captions, batch_size, mask,
                 apart, low_res=_on(low, device))


def _by_shape(indices: torch.Tensor, targets: list[tuple[int, int]]) -> list[list[int]]:
    """Positions in ``indices`` grouped by their image's shape, in order of first appearance."""
    found: dict[tuple[int, int], list[int]] = {}
    for position, i in enumerate(indices.tolist()):
        found.setdefault(targets[i], []).append(position)
    return list(found.values())


def _on(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if x is None else x.to(device, torch.float32)


def dreambooth_step_loss(models: Models, prompts: PromptBank, batch: Batch, prior_weight: float,
                         settings: TrainConfig | None = None, share: Share = Share()) -> LossParts:
    """Noise the batch at random timesteps and return the (instance + weighted prior) loss.

    ``settings`` supplies the noise options (offset, timestep range, input perturbation) and Min-SNR's
    gamma; without it the step is plain DreamBooth. With several processes ``batch`` is the global
    batch and ``share`` says which of its rows this process scores (see ``Share``).
    """
    settings = settings or TrainConfig()
    pred, target, weights, mine = _predict(models, prompts, batch, settings, share)
    if not batch.apart:
        return dreambooth_loss(pred, target, mine.num_instance, prior_weight, weights, mine.mask)
    # class images at another shape than the photos' bucket: one UNet call per shape, rows scored alike
    rows = [_weighted_rows(pred, target, weights, mine.mask)]
    for part in batch.apart:
        pred, target, weights, part = _predict(models, prompts, part, settings, share)
        rows.append(_weighted_rows(pred, target, weights, part.mask))
    n = mine.num_instance
    return loss_from_rows(rows[0][:n], torch.cat([rows[0][n:], *rows[1:]]), prior_weight)


def _weighted_rows(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                   mask: torch.Tensor | None) -> torch.Tensor:
    errors = row_errors(pred, target, mask)
    return errors if weights is None else errors * weights.float()


def _predict(models: Models, prompts: PromptBank, batch: Batch, settings: TrainConfig, share: Share = Share()):
    """The denoiser's prediction on this process's noised rows, its target, the loss weights (None when
    plain) and those rows; noise and timesteps are drawn for the whole batch, whichever rows are kept."""
    objective = models.family.training_objective(models.noise_scheduler, settings)
    draw = objective.draw(batch.latents)
    if share.count > 1:
        keep = share.rows(batch.num_instance, batch.latents.shape[0])
        batch, draw = batch.select(keep), draw.select(torch.tensor(keep, device=batch.latents.device))
    latents = batch.latents
    noisy = objective.noisy(latents, draw)
    cond = prompts.get(batch.captions, grad=bool(models.trained_encoders))
    pred = models.family.predict(models.denoiser, noisy, draw.timesteps, cond, batch, models.condition)
    pred = objective.output(pred, noisy, draw)
    return pred, objective.target(latents, draw), objective.weights(draw), batch
