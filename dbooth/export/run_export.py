"""Turn a finished run into the artifact a user asked for: the one entry point the CLI calls."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from diffusers import DiffusionPipeline

from dbooth.util.errors import DboothError
from dbooth.export.card import card_metadata, model_card
from dbooth.export.clients import FOLDER_FORMATS, FORMATS, LORA_FORMATS, clients_of
from dbooth.export.dtypes import parse_dtype
from dbooth.export.pipeline_folder import save_pipeline_folder
from dbooth.export.kohya import kohya_metadata, save_kohya_lora
from dbooth.export.lora_file import read_lora_file, save_lora_file, save_scaled_lora_file
from dbooth.export.merge import merge_lora_into_pipeline
from dbooth.export.naming import default_stem
from dbooth.export.run_info import RunInfo, read_run
from dbooth.export.single_file import save_single_file
from dbooth.families import get_family
from dbooth.util.fsutil import atomic_write_text, remove_temporaries

PipelineLoader = Callable[[str], DiffusionPipeline]


def export_run(
    run_dir: str | Path,
    fmt: str,
    *,
    checkpoint: str | Path | None = None,
    base_pipeline_loader: PipelineLoader | None = None,
    out: str | Path | None = None,
    dtype: str = "fp32",
    force: bool = False,
) -> Path:
    """Export the run in ``run_dir`` as ``fmt`` (one of ``FORMATS``) and return the path written.

    ``diffusers`` writes a pipeline folder with README.md; the other formats write one ``.safetensors``
    file whose ``__metadata__`` carries the model card fields, plus a sidecar ``.md`` card; both say which
    clients load it and how (``dbooth.export.clients``). A LoRA run exported as ``diffusers`` or
    ``single-file`` is merged into its base model first; the base comes from
    ``base_pipeline_loader(run.base_model)`` (default: the base must be a local diffusers folder).
    ``checkpoint`` (a folder in ``run_dir/checkpoints``) exports the weights saved at that step instead
    of the final ones, in every format. Default ``out``: ``run_dir/export/WS-RUNSTART[@STEP][-diffusers|-merged]
    [-DTYPE]`` (+ ``.safetensors`` for files; ``dbooth.export.naming``), e.g. ``corgi-20261207-180120.safetensors``.
    """
    if fmt not in FORMATS:
        raise DboothError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    torch_dtype = parse_dtype(dtype)
    run = read_run(run_dir, checkpoint)
    family = get_family(run.family)
    if not clients_of(fmt, family.pipeline_class_name):
        usable = " or ".join(f"--format {f}" for f in FORMATS if clients_of(f, family.pipeline_class_name))
        raise DboothError(f"export --format {fmt}: no client loads a {family.title} run in that format, so dbooth "
                          f"does not write one; use {usable}")
    if fmt in LORA_FORMATS and not run.is_lora:
        raise DboothError(
            f"run {run.run_id} is a full fine-tune, so it has no LoRA to export as {fmt}: "
            "use --format diffusers or --format single-file"
        )
    is_file = fmt not in FOLDER_FORMATS
    default = run.run_dir / "export" / (default_stem(run, fmt, dtype) + (".safetensors" if is_file else ""))
    path = _output_path(out, default, fmt, is_file=is_file, force=force)
    remove_temporaries(path.parent, outputs_moved_aside=False)  # what a killed export left there
    meta = card_metadata(run, fmt, dtype, name=path.stem)
    card = model_card(run, fmt, dtype, merged=run.is_lora and fmt not in LORA_FORMATS, name=path.stem)
    with _checkpoint_lora(run, base_pipeline_loader) as run:
        return _write(run, fmt, path, torch_dtype, meta, card, base_pipeline_loader)


def _write(run: RunInfo, fmt: str, path: Path, torch_dtype, meta: dict, card: str,
           base_pipeline_loader: PipelineLoader | None) -> Path:
    family = get_family(run.family)
    if fmt == "diffusers":
        return save_pipeline_folder(trained_pipeline(run, base_pipeline_loader), path, dtype=torch_dtype, card=card)
    if fmt == "single-file" and family.objective == "flow":  # the transformer alone
        from dbooth.export.transformer_file import save_transformer_file

        save_transformer_file(trained_pipeline(run, base_pipeline_loader), path, family.name, dtype=torch_dtype,
                              metadata=meta)
    elif fmt == "single-file":
        save_single_file(trained_pipeline(run, base_pipeline_loader), path, torch_dtype, meta,
                         layout=family.single_file_layout, prediction_type=run.prediction_type)
    else:
        lora = read_lora_file(run.lora_file, default_alpha=run.lora_alpha)
        if fmt == "lora" and family.objective == "flow":  # ComfyUI reads these too, but not their alpha
            save_scaled_lora_file(lora, path, dtype=torch_dtype, metadata=meta)
        elif fmt == "lora":
            save_lora_file(lora, path, dtype=torch_dtype, metadata=meta)
        else:
            comment = f"dbooth run {run.label}; prompt with '{run.identifier} {run.class_noun}'"
            ss = kohya_metadata(lora, base_model=run.base_model, output_name=path.stem, steps=run.steps,
                                comment=comment, family=family.name, prediction_type=run.prediction_type)
            unet = (_base_denoiser_config(run, base_pipeline_loader, family.denoiser_name)
                    if family.kohya_unet_names != "diffusers" else None)
            save_kohya_lora(lora, path, dtype=torch_dtype, metadata=meta | ss, family=family.name, unet=unet)
    atomic_write_text(path.with_suffix(".md"), card)
    return path


def merge_run(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    base_pipeline_loader: PipelineLoader | None = None,
    out: str | Path | None = None,
    scale: float = 1.0,
    dtype: str = "fp32",
    force: bool = False,
) -> Path:
    """Fuse a LoRA run (or its ``checkpoint``) into its base model and write a full diffusers pipeline folder
    (default ``run_dir/WS-RUNSTART-merged``, ``run_dir/WS-RUNSTART@STEP-merged`` for a checkpoint)."""
    torch_dtype = parse_dtype(dtype)
    run = read_run(run_dir, checkpoint)
    if not run.is_lora:
        raise DboothError(
            f"run {run.run_id} is a full fine-tune and has no LoRA to merge: "
            f"its pipeline is already in {run.final_dir}; use export --format diffusers to copy it"
        )
    default = run.run_dir / default_stem(run, "diffusers", dtype)  # as export --format diffusers names it
    path = _output_path(out, default, "merge-lora", is_file=False, force=force)
    remove_temporaries(path.parent, outputs_moved_aside=False)  # what a killed merge left there
    with _checkpoint_lora(run, base_pipeline_loader) as run:
        pipe = trained_pipeline(run, base_pipeline_loader, scale=scale)
    card = model_card(run, "diffusers", dtype, merged=True, name=path.name)
    if scale != 1.0:
        card += f"\nMerged with LoRA scale {scale:g}.\n"
    return save_pipeline_folder(pipe, path, dtype=torch_dtype, card=card)


def trained_pipeline(
    run: RunInfo, base_pipeline_loader: PipelineLoader | None = None, *, scale: float = 1.0
) -> DiffusionPipeline:
    """The run's result as one float32 pipeline: ``final/`` (or the checkpoint's weights on the base) for full
    runs, base + fused LoRA for LoRA runs."""
    loader = base_pipeline_loader or _local_base_loader
    if not run.is_lora and run.checkpoint is not None:
        from dbooth.training.restore import checkpoint_pipeline
        from dbooth.workspace.folder import Run

        return checkpoint_pipeline(Run(run.run_dir), run.checkpoint, loader=loader)
    if not run.is_lora:
        return DiffusionPipeline.from_pretrained(run.final_dir, local_files_only=True)
    base = loader(run.base_model)
    return merge_lora_into_pipeline(base, run.lora_file, scale, default_alpha=run.lora_alpha)


@contextmanager
def _checkpoint_lora(run: RunInfo, base_pipeline_loader: PipelineLoader | None) -> Iterator[RunInfo]:
    """For a LoRA run's checkpoint: ``run`` whose ``lora_file`` is the checkpoint's adapters, written to a
    temporary folder in the final file's format, so every format reads it as it reads ``final/``."""
    if run.checkpoint is None or not run.is_lora:
        yield run
        return
    from dbooth.training.restore import save_checkpoint_lora
    from dbooth.workspace.folder import Run

    with tempfile.TemporaryDirectory(prefix="dbooth-checkpoint-lora-") as folder:
        weights = save_checkpoint_lora(Run(run.run_dir), run.checkpoint, Path(folder),
                                       loader=base_pipeline_loader or _local_base_loader)
        yield replace(run, lora_weights=weights)


def _local_base_loader(spec: str) -> DiffusionPipeline:
    if not (Path(spec) / "model_index.json").is_file():
        raise DboothError(
            f"base model {spec!r} is not a local diffusers folder: pass base_pipeline_loader "
            "(dbooth.families.loading.load_pipeline) to resolve it"
        )
    return DiffusionPipeline.from_pretrained(spec, local_files_only=True)


def _base_denoiser_config(run: RunInfo, base_pipeline_loader: PipelineLoader | None, part: str = "unet") -> dict:
    """The base UNet's (or FLUX transformer's) config (kohya names SDXL modules by the UNet's block structure,
    FLUX's fused projections need the transformer's widths): read from a local folder when there is one, else
    from the loaded base pipeline."""
    import json

    config = Path(run.base_model) / part / "config.json"
    if not config.is_file():
        from dbooth.plugins import named_model

        named = named_model(run.base_model)  # a model registered by name (builtin:shapes) has a folder too
        if named is not None:
            config = named.path() / part / "config.json"
    if config.is_file():
        return json.loads(config.read_text())
    return dict(getattr((base_pipeline_loader or _local_base_loader)(run.base_model), part).config)


def _output_path(out: str | Path | None, default: Path, fmt: str, *, is_file: bool, force: bool) -> Path:
    """Check the output path before any work starts: right kind, and no silent overwrite."""
    path = default if out is None else Path(out).expanduser()
    if is_file and path.suffix != ".safetensors":
        raise DboothError(f"output {path} must end in .safetensors for --format {fmt}")
    if not is_file and path.suffix == ".safetensors":
        raise DboothError(f"output {path} is a file name, but {fmt} writes a folder: drop the .safetensors suffix")
    if path.exists():
        if not force:
            raise DboothError(f"{path} already exists: pass --force to overwrite it, or choose another --out")
        if is_file and path.is_dir():
            raise DboothError(f"{path} is a folder: choose a file path for --format {fmt}")
        if not is_file and (not path.is_dir() or any(path.iterdir())) and not (path / "model_index.json").is_file():
            raise DboothError(
                f"{path} exists and is not a diffusers pipeline folder: refusing to replace it even with "
                "--force; choose another --out"
            )
    return path
