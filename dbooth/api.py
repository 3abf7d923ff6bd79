"""One library function per CLI verb, callable from Python as well."""

from __future__ import annotations

from pathlib import Path

from dbooth.config import Manifest, apply_overrides
from dbooth.errors import DboothError
from dbooth.reporting import Reporter
from dbooth.workspace import Workspace, create_workspace, find_run, find_run_at, open_workspace


def native_resolution(base_model: str, *, allow_pickle: bool = False) -> int | None:
    """The image size a base model was trained at, read from its configs (None when they cannot be read)."""
    from dbooth.families import native_resolution as read
    from dbooth.models.source import resolve_model

    try:
        return read(resolve_model(base_model, allow_pickle=allow_pickle))
    except DboothError:
        return None


def init(
    name: str | Path,
    class_noun: str | None,
    *,
    identifier: str | None = None,
    base_model: str | None = None,
    images: Path | None = None,
    example: str | None = None,
    allow_pickle: bool = False,
) -> Workspace:
    """Create a workspace folder with its manifest (and subject photos, if given).

    A pickle-based base model (``.ckpt``, ``.bin``) is refused unless ``allow_pickle``, which the manifest keeps.
    """
    data: dict = {}
    if example is not None:
        from dbooth.demo import example_settings

        data.update(example_settings(example))
        if images is not None:
            raise DboothError("init: --example brings its own photos; drop --images or --example")
    if class_noun is not None:
        data["class_noun"] = class_noun
    if "class_noun" not in data:
        raise DboothError("init: the class noun is missing; pass --class NOUN (e.g. --class dog)")
    if identifier is not None:
        data["identifier"] = identifier
    if base_model is not None:
        from dbooth.models.source import PICKLE_SUFFIXES, resolve_model

        local = Path(base_model).expanduser()
        # a local model is stored as an absolute path so the manifest works from any folder
        data["base_model"] = str(local.resolve()) if local.exists() else base_model
        if local.suffix.lower() in PICKLE_SUFFIXES:
            resolve_model(base_model, allow_pickle=allow_pickle)  # a pickle is refused before anything is written
    if allow_pickle:
        data["allow_pickle"] = True
    manifest = Manifest(class_noun=data.pop("class_noun"))
    overrides = dict(data)
    resolution = native_resolution(overrides.get("base_model", manifest.base_model), allow_pickle=allow_pickle)
    if resolution is not None and "train.resolution" not in overrides:
        overrides["train.resolution"] = resolution
    manifest = apply_overrides(manifest, overrides)
    ws = create_workspace(name, manifest, images=images)
    if example is not None:
        from dbooth.builtin.subjects import write_example_images

        write_example_images(example, ws.instance_dir)
    return ws


def prior(ws: Workspace, overrides: dict | None = None, *, replace: bool = False, reporter: Reporter | None = None,
          wait: float | None = None):
    """Generate the missing class images of every subject's class; returns the top-level subject's class plan."""
    from dbooth.prior import generate_class_images, plan
    from dbooth.subjects import classes

    manifest = apply_overrides(ws.manifest(), overrides or {})
    kinds = classes(ws, manifest)
    with _writer(ws, "prior", reporter, wait):
        if len(kinds) == 1:
            return generate_class_images(ws.class_dir, manifest, replace_stale=replace, reporter=reporter)
        pipe = None
        if any(plan(k.class_dir, k.manifest).missing or replace for k in kinds):
            from dbooth.models.loading import inference_device, inference_dtype, load_pipeline

            pipe = load_pipeline(manifest.base_model, dtype=inference_dtype(), allow_pickle=manifest.allow_pickle)
            pipe.to(inference_device())
        plans = []
        for kind in kinds:
            if reporter is not None:
                reporter.info(f"class {kind.class_noun!r} in {kind.class_dir}")
            plans.append(generate_class_images(kind.class_dir, kind.manifest, pipe=pipe, replace_stale=replace,
                                               reporter=reporter))
        return plans[0]


def add_subject(ws: Workspace, name: str, class_noun: str | None, *, identifier: str | None,
                images: Path | None = None, example: str | None = None) -> Workspace:
    """Add a further subject to a workspace: its photos go to ``instance/NAME/``, its entry to ``subjects:``."""
    import shutil

    from dbooth.config import manifest_to_dict, write_manifest
    from dbooth.images import mask_file, scan_folder
    from dbooth.prompts import caption_file

    if (images is None) == (example is None):
        raise DboothError("init --add-subject: pass its photos with --images DIR or --example NAME (one of them)")
    if example is not None and class_noun is None:
        from dbooth.builtin.subjects import get_example

        class_noun = get_example(example).class_noun
    if class_noun is None:
        raise DboothError("init --add-subject: the class noun is missing; pass --class NOUN (e.g. --class dog)")
    if identifier is None:
        raise DboothError("init --add-subject: pass --identifier TOKEN, a rare token other subjects do not use "
                          "(e.g. zwx)")
    manifest = ws.manifest()
    entry = {"name": name, "identifier": identifier, "class_noun": class_noun}
    listed = manifest_to_dict(manifest)["subjects"] + [entry]
    updated = apply_overrides(manifest, {"subjects": listed})  # checks the name, identifier and class prompt
    folder = ws.instance_dir / name
    if folder.exists():
        raise DboothError(f"init --add-subject: {folder} already exists; choose another subject name")
    if images is not None:
        found = scan_folder(Path(images).expanduser(), what="instance images", min_side=0)
    tmp = folder.with_name(f".{name}.adding")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if example is not None:
            from dbooth.builtin.subjects import write_example_images

            write_example_images(example, tmp)
        else:
            for p in found.paths:
                for item in (p, caption_file(p), mask_file(p)):
                    if item.is_file():
                        shutil.copy2(item, tmp / item.name)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_manifest(ws.manifest_path, updated)
    return ws


def train(ws: Workspace, overrides: dict | None = None, *, resume: bool = False, reporter: Reporter | None = None,
          wait: float | None = None):
    """Train a new run (or ``resume``); ``wait`` seconds for a busy workspace instead of refusing at once."""
    from dbooth.training import train as run_training

    manifest = apply_overrides(ws.manifest(), overrides or {})
    with _writer(ws, "train", reporter, wait):
        return run_training(ws, manifest, resume=resume, reporter=reporter)


def _writer(ws: Workspace, verb: str, reporter: Reporter | None, wait: float | None = None):
    """The workspace lock that keeps a second ``train``/``prior`` from writing beside this one."""
    from dbooth.lock import workspace_lock

    def stale(previous: dict) -> None:
        from dbooth.workspace import clear_leftovers

        removed = clear_leftovers(ws)  # the dead process cannot finish its temporary files
        if reporter is not None:
            reporter.warn(f"taking over the workspace lock of `dbooth {previous.get('verb', '?')}` "
                          f"(pid {previous.get('pid', '?')}), which is no longer running"
                          + (f"; removed {removed} unfinished temporary files" if removed else ""))

    def waiting(other: dict) -> None:
        if reporter is not None:
            reporter.info(f"waiting for `dbooth {other.get('verb', '?')}` (pid {other.get('pid', '?')}) "
                          "to finish with this workspace; Ctrl-C stops waiting")

    return workspace_lock(ws.root, verb, on_stale=stale, wait=wait, on_wait=waiting)


def sample(
    ws: Workspace,
    prompt: str,
    overrides: dict | None = None,
    *,
    run_id: str | None = None,
    base_only: bool = False,
    reporter: Reporter | None = None,
):
    from dbooth.prompts import format_prompt

    manifest = apply_overrides(ws.manifest(), overrides or {})
    run, checkpoint = (None, None) if base_only else find_run_at(ws, run_id)
    if run is not None:
        from dbooth.paths import require_inside

        require_inside([checkpoint or run.final_dir], run.dir, "run outputs")
    text = format_prompt(prompt, manifest.identifier, manifest.class_noun, where="prompt")
    from dbooth.sample import generate, load_for_sampling, sample_folder  # torch and diffusers: after the checks

    if checkpoint is not None:
        from dbooth.eval.checkpoints import checkpoint_pipeline

        pipe = checkpoint_pipeline(run, checkpoint, allow_pickle=manifest.allow_pickle)
    else:
        pipe = load_for_sampling(manifest.base_model, run, allow_pickle=manifest.allow_pickle)
    s = manifest.sample
    label = "base" if run is None else run.id + (f"@{checkpoint.name}" if checkpoint is not None else "")
    return generate(
        pipe,
        text,
        out_dir=sample_folder(ws.samples_dir, label),
        num_images=s.num_images,
        seed=s.seed,
        steps=s.steps,
        guidance_scale=s.guidance_scale,
        scheduler=s.scheduler,
        negative_prompt=s.negative_prompt,
        height=manifest.train.resolution,
        width=manifest.train.resolution,
        model_label=manifest.base_model if run is None else f"{manifest.base_model} + {label}",
        reporter=reporter,
    )


def evaluate(ws: Workspace, *, run_id: str | None = None, checkpoints: bool = False, prompts: str | None = None,
             images_per_prompt: int | None = None, reporter: Reporter | None = None):
    """Score the base model and a finished run (and each checkpoint) on DreamBench's metrics; RUN/eval.json, report.html."""
    manifest = apply_overrides(ws.manifest(), {"eval.prompts": prompts, "eval.images_per_prompt": images_per_prompt})
    run = find_run(ws, run_id)
    from dbooth.eval.evaluate import evaluate_run  # torch and transformers: after the checks

    return evaluate_run(ws, run, manifest, checkpoints=checkpoints, reporter=reporter)


def merge_lora(ws: Workspace, *, run_id: str | None = None, scale: float = 1.0, out: Path | None = None,
               dtype: str = "fp32", force: bool = False) -> Path:
    """Fuse a LoRA run (``RUN@best``/``RUN@STEP``: that checkpoint) into its base model; writes a full diffusers
    pipeline folder."""
    run, checkpoint = _run_at(ws, run_id)
    if run.info().get("method") != "lora":
        raise DboothError(f"run {run.id}: is a full fine-tune, there is no LoRA to merge; use `dbooth export --format diffusers`")
    from dbooth.export import merge_run

    return merge_run(run.dir, checkpoint=checkpoint, base_pipeline_loader=_base_loader(ws), out=out, scale=scale,
                     dtype=dtype, force=force)


def export(ws: Workspace, fmt: str, *, run_id: str | None = None, out: Path | None = None, dtype: str = "fp32",
           force: bool = False) -> Path:
    """Export a finished run (``RUN@best``/``RUN@STEP``: that checkpoint) as diffusers, single-file, lora or
    lora-kohya."""
    run, checkpoint = _run_at(ws, run_id)
    from dbooth.export import export_run

    return export_run(run.dir, fmt, checkpoint=checkpoint, base_pipeline_loader=_base_loader(ws), out=out,
                      dtype=dtype, force=force)


def _run_at(ws: Workspace, ref: str | None):
    """The run and checkpoint (None: the final weights) ``ref`` names, the checkpoint checked to be the run's."""
    run, checkpoint = find_run_at(ws, ref)
    if checkpoint is not None:
        from dbooth.paths import require_inside

        require_inside([checkpoint], run.dir, "run checkpoints")
    return run, checkpoint


def _base_loader(ws: Workspace):
    """Loads a run's base model with the workspace's consent (or not) to pickle files."""
    from functools import partial

    from dbooth.models.loading import load_pipeline

    return partial(load_pipeline, allow_pickle=ws.manifest().allow_pickle)


def run_family(ws: Workspace, run_id: str | None = None):
    """The model family a finished run trained (runs from before families were recorded are SD 1.x)."""
    from dbooth.families import get_family

    return get_family(find_run_at(ws, run_id)[0].info().get("family") or "sd1")


__all__ = ["init", "add_subject", "prior", "train", "sample", "evaluate", "merge_lora", "export", "open_workspace"]
