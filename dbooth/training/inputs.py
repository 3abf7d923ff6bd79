"""Everything a training run reads besides the model, checked before any model is loaded.

Model-free and torch-free: a missing class folder, a photo that will not open or a caption file
without the identifier is reported in well under a second, before a run folder exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dbooth.workspace.config import Manifest, apply_overrides, load_manifest
from dbooth.util.errors import DboothError
from dbooth.util.images import load_mask, load_rgb, mask_file, scan_folder
from dbooth.workspace.paths import require_inside
from dbooth.generate.class_images import class_shapes, photo_sizes, pick_class_images
from dbooth.workspace.prompts import caption_file, class_prompt, instance_captions
from dbooth.util.reporting import Reporter
from dbooth.workspace.subjects import Subject, classes, subjects
from dbooth.training.early_stop import check_stop_when
from dbooth.workspace.folder import Run, Workspace, list_runs


@dataclass
class TrainingInputs:
    manifest: Manifest  # a resumed run's own settings, with only the step budget taken from the caller
    resumed: Run | None
    instance_paths: list[Path]
    captions: list[str]  # one per instance photo
    class_paths: list[Path]
    masks: list[Path | None] | None = None  # one per instance photo with masked loss; None = no masks in use
    # several subjects: the class prompt of each class, the class of each photo and of each class image
    class_prompts: list[str] = field(default_factory=list)
    photo_class: list[int] = field(default_factory=list)
    image_class: list[int] = field(default_factory=list)
    stage: str = "base"  # "upscaler": stage (b), the manifest is dbooth.workspace.stages.upscaler_manifest's


def gather_inputs(ws: Workspace, manifest: Manifest, *, resume: bool, reporter: Reporter,
                  stage: str = "base", extend_to: int | None = None) -> TrainingInputs:
    resumed = resumable_run(ws, stage) if resume else None
    if resumed is not None:
        # a resumed run keeps its own settings (steps, learning rate, method: those of the command that started
        # it, recorded in its config.yaml); only the step budget may be extended, by an explicit --steps
        manifest = load_manifest(resumed.config_path)
        if extend_to is not None:
            manifest = apply_overrides(manifest, {"train.max_steps": extend_to})
    else:
        _mention_resumable(ws, stage, reporter)
        manifest = _base_learning_rate(manifest)
    cfg = manifest.train
    if cfg.fused_backward:
        _check_fused_backward(cfg)
    if cfg.max_timestep is not None and cfg.min_timestep >= cfg.max_timestep:
        raise DboothError(f"train.min_timestep ({cfg.min_timestep}) must be below train.max_timestep ({cfg.max_timestep})")
    check_stop_when(manifest)
    everyone = subjects(ws, manifest)
    kinds = classes(ws, manifest)
    instance_paths, captions, photo_class = [], [], []
    for subject in everyone:
        photos = subject_photos(subject, reporter)
        if manifest.instance_captions == "files":
            require_inside([caption_file(p) for p in photos], ws.root, "caption files")
        instance_paths += photos
        captions += instance_captions(subject.manifest, photos)
        photo_class += [[k.class_dir for k in kinds].index(subject.class_dir)] * len(photos)
    class_paths, image_class = [], []
    if manifest.prior.enabled:
        sizes = photo_sizes(ws, manifest)
        for k, kind in enumerate(kinds):
            found = class_images(kind, reporter, sizes.get(kind.class_dir))
            class_paths += found
            image_class += [k] * len(found)
    require_inside(instance_paths + class_paths, ws.root, "images")
    masks = instance_masks(instance_paths, ws.root, reporter) if cfg.masked_loss else None
    return TrainingInputs(manifest, resumed, instance_paths, captions, class_paths, masks,
                          [class_prompt(k.manifest) for k in kinds], photo_class, image_class, stage)


def instance_masks(photos: list[Path], root: Path, reporter: Reporter) -> list[Path | None] | None:
    """Each photo's NAME.mask.png, or None for a photo without one; None when no photo has a mask.

    A mask must open, match its photo's size and mark some subject: an all-black mask would teach nothing."""
    import numpy as np

    masks = [mask_file(p) if mask_file(p).is_file() else None for p in photos]
    found = [(p, m) for p, m in zip(photos, masks) if m is not None]
    if not found:
        return None
    require_inside([m for _, m in found], root, "masks")
    for photo, mask in found:
        image = load_mask(mask)
        size = load_rgb(photo).size
        if image.size != size:
            raise DboothError(f"mask {mask.name} is {image.size[0]}x{image.size[1]} but {photo.name} is "
                              f"{size[0]}x{size[1]} (upright); draw the mask on the photo as it is shown")
        if not np.asarray(image).any():
            raise DboothError(f"mask {mask.name} is all black: nothing of {photo.name} would be learned; "
                              "paint the subject white or remove the mask")
    if len(found) < len(photos):
        reporter.info(f"masked loss: {len(found)} of {len(photos)} photos have a mask; the others count fully")
    return masks


def _check_fused_backward(cfg) -> None:
    """The optimizer inside the backward pass steps each parameter once per backward, with AdamW's settings."""
    clash = ("train.gradient_accumulation_steps > 1" if cfg.gradient_accumulation_steps > 1 else
             f"train.optimizer: {cfg.optimizer}" if cfg.optimizer != "adamw" else
             "train.mixed_precision: fp16 (its gradient scaler unscales all gradients together)"
             if cfg.mixed_precision == "fp16" else None)
    if clash:
        raise DboothError(f"train.fused_backward steps AdamW per parameter inside the backward pass and cannot "
                          f"run with {clash}; set train.fused_backward: false, or use adamw, bf16 and no accumulation")


def _base_learning_rate(manifest: Manifest) -> Manifest:
    """A null ``train.learning_rate`` takes the base model's own rate for the method when it names one
    (builtin:shapes: Stable Diffusion's 5e-6 would change nothing in a short run); recorded in the run's config."""
    from dbooth.plugins import named_model

    cfg = manifest.train
    if cfg.learning_rate is not None or cfg.optimizer == "prodigy":
        return manifest
    named = named_model(manifest.base_model)
    if named is None or not named.learning_rates or cfg.method not in named.learning_rates:
        return manifest
    return apply_overrides(manifest, {"train.learning_rate": named.learning_rates[cfg.method]})


def _mention_resumable(ws: Workspace, stage: str, reporter: Reporter) -> None:
    """A new run beside one that could continue: say so, once, before starting afresh."""
    try:
        run = resumable_run(ws, stage)
    except DboothError:
        return
    info = run.info()
    at, planned = info.get("interrupted_at"), info.get("planned_steps")
    how = (f"stopped at step {at} of {planned}" if at is not None and planned is not None
           else f"did not finish ({info.get('status', 'unfinished')})")
    again = "dbooth train --upscaler --resume" if stage == "upscaler" else "dbooth train --resume"
    reporter.warn(f"run {run.id} {how} and can continue from {run.resume_checkpoint().name} with `{again}`; "
                  "starting a new run instead")


def resumable_run(ws: Workspace, stage: str = "base") -> Run:
    runs = [r for r in list_runs(ws) if r.stage == stage and not r.complete and r.checkpoints()]
    if not runs:
        what, verb = ("upscaler run", "dbooth train --upscaler") if stage == "upscaler" else ("run", "dbooth train")
        raise DboothError(
            f"workspace {ws.root}: no unfinished {what} with a checkpoint in {ws.runs_dir}; start a new one with `{verb}`"
        )
    if runs[-1].resume_checkpoint() is None:
        run = runs[-1]
        raise DboothError(
            f"run {run.id}: its checkpoints ({', '.join(p.name for p in run.checkpoints())}) hold weights only, no "
            "optimizer state to resume from (only the newest keeps it, and it is missing or was removed); "
            "sample them with `dbooth sample --run RUN@STEP` or start a new run with `dbooth train`"
        )
    return runs[-1]


def subject_photos(subject: Subject, reporter: Reporter) -> list[Path]:
    # a photo smaller than the training resolution is upscaled and teaches a blurry subject
    size = subject.manifest.train.resolution
    what = "instance images" if subject.name is None else f"instance images of subject {subject.name}"
    instance = scan_folder(subject.instance_dir, what=what, min_side=size)
    for p in instance.small:
        reporter.warn(f"{p.name} is smaller than the {size} px training resolution; it will be upscaled and look soft")
    return instance.paths


def class_images(subject: Subject, reporter: Reporter, photos: list[tuple[int, int]] | None = None) -> list[Path]:
    """The class images of ``subject``'s class, at most ``prior.num_class_images`` (with ``train.buckets``,
    as many at each of the photos' buckets as ``dbooth prior`` makes; ``photos``: the photos' sizes)."""
    found = scan_folder(subject.class_dir, what="class images", min_side=0, allow_empty=True)
    if not found.paths:
        raise DboothError(
            f"prior preservation is on but {subject.class_dir} has no class images; "
            "run `dbooth prior` first or set prior.enabled: false"
        )
    class_paths = pick_class_images(found.paths, found.sizes, subject.manifest, photos)
    wanted = sum(n for _, n in class_shapes(subject.manifest, photos))
    if len(class_paths) < wanted:
        reporter.warn(
            f"{len(class_paths)} of {wanted} class images present in {subject.class_dir}; "
            f"`dbooth prior` generates the rest, or set prior.num_class_images: {len(class_paths)} in dbooth.yaml "
            "to train with these (`dbooth prior -n` does not change it)"
        )
    return class_paths
