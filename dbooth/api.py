"""One library function per CLI verb, callable from Python as well."""

from __future__ import annotations

import contextlib
from pathlib import Path

from dbooth.workspace.config import Manifest, apply_overrides
from dbooth.util.errors import DboothError
from dbooth.util.fsutil import check_writable
from dbooth.util.reporting import Reporter
from dbooth.workspace.folder import Workspace, create_workspace, find_run, find_run_at, list_runs, open_workspace


def native_resolution(base_model: str, *, allow_pickle: bool = False) -> int | None:
    """The image size a base model was trained at, read from its configs (None when they cannot be read)."""
    return base_model_defaults(base_model, allow_pickle=allow_pickle).get("train.resolution")


def base_model_defaults(base_model: str, *, allow_pickle: bool = False) -> dict:
    """Manifest values that suit a base model (its resolution; a flow model's sampling settings), read from its
    configs; empty when they cannot be read."""
    from dbooth.families import manifest_defaults
    from dbooth.families.source import resolve_model

    try:
        return manifest_defaults(resolve_model(base_model, allow_pickle=allow_pickle))
    except DboothError:
        return {}


def init(
    name: str | Path,
    class_noun: str | None,
    *,
    identifier: str | None = None,
    base_model: str | None = None,
    images: Path | None = None,
    example: str | None = None,
    allow_pickle: bool = False,
    reporter: Reporter | None = None,
) -> Workspace:
    """Create a workspace folder with its manifest (and subject photos, if given).

    A pickle-based base model (``.ckpt``, ``.bin``) is refused unless ``allow_pickle``, which the manifest keeps.
    ``identifier="auto"`` takes the base model's first rare single token; with a ``reporter``, an identifier the
    tokenizer splits or knows as a word gets a warning (see dbooth.identifiers).
    """
    if not Path(name).expanduser().exists():  # an existing one is refused by create_workspace, with its reason
        check_writable(name, "workspace")
    data: dict = {}
    if example is not None:
        from dbooth.plugins import examples

        data.update(examples().settings(example))
        example_base = data.get("base_model")
        if images is not None:
            raise DboothError("init: --example brings its own photos; drop --images or --example")
    if class_noun is not None:
        data["class_noun"] = class_noun
    if "class_noun" not in data:
        raise DboothError("init: the class noun is missing; pass --class NOUN (e.g. --class dog)")
    if identifier is not None:
        data["identifier"] = identifier
    if base_model is not None:
        from dbooth.families.source import PICKLE_SUFFIXES, resolve_model

        local = Path(base_model).expanduser()
        # a local model is stored as an absolute path so the manifest works from any folder
        data["base_model"] = str(local.resolve()) if local.exists() else base_model
        if local.suffix.lower() in PICKLE_SUFFIXES:
            resolve_model(base_model, allow_pickle=allow_pickle)  # a pickle is refused before anything is written
    if example is not None and data["base_model"] != example_base:
        # builtin:shapes-x4 shares builtin:shapes' text encoder: another base keeps the default upscaler
        data = {k: v for k, v in data.items() if not k.startswith("upscaler.")}
    if allow_pickle:
        data["allow_pickle"] = True
    from dbooth.plugins import named_model

    named = named_model(data.get("base_model") or Manifest(class_noun=data["class_noun"]).base_model)
    if named is not None and named.defaults is not None and example is None:
        data = {**named.defaults(), **data}  # what suits this model; the command line's values win
    manifest = Manifest(class_noun=data.pop("class_noun"))
    overrides = dict(data)
    found = base_model_defaults(overrides.get("base_model", manifest.base_model), allow_pickle=allow_pickle)
    overrides = {**found, **overrides}  # what the model's configs say suits it; the command line's values win
    manifest = apply_overrides(manifest, overrides)
    if named is not None and named.classes is not None and reporter is not None:
        _check_class_noun(manifest.class_noun, named, reporter)
    chosen = _checked_identifier(manifest.identifier, manifest.base_model, [], manifest.allow_pickle, reporter)
    if chosen != manifest.identifier:
        manifest = apply_overrides(manifest, {"identifier": chosen})
    ws = create_workspace(name, manifest, images=images)
    if example is not None:
        from dbooth.plugins import examples

        examples().write_images(example, ws.instance_dir)
    return ws


def _check_class_noun(noun: str, named, reporter: Reporter) -> None:
    """A model whose captions are known names few classes: a class noun outside them is a word it never saw."""
    classes = named.classes()
    if noun not in classes:
        reporter.warn(f"class noun {noun!r}: {named.spec} has never seen it (its classes are {', '.join(classes)}), "
                      "so its tokenizer splits it into pieces and the class prior means nothing; pass --class with "
                      "one of them")


def prior(ws: Workspace, overrides: dict | None = None, *, replace: bool = False, reporter: Reporter | None = None,
          wait: float | None = None):
    """Generate the missing class images of every subject's class; returns the top-level subject's class plan."""
    check_writable(ws.root / "class", "workspace")
    from dbooth.generate.class_images import generate_class_images, photo_sizes, plan
    from dbooth.workspace.subjects import classes

    manifest = apply_overrides(ws.manifest(), overrides or {})
    kinds = classes(ws, manifest)
    sizes = photo_sizes(ws, manifest)  # with train.buckets, class images follow the photos' buckets
    with _writer(ws, "prior", reporter, wait):
        if len(kinds) == 1:
            return generate_class_images(ws.class_dir, manifest, replace_stale=replace, reporter=reporter,
                                         sizes=sizes.get(ws.class_dir))
        pipe = None
        if any(plan(k.class_dir, k.manifest, sizes.get(k.class_dir)).missing or replace for k in kinds):
            from dbooth.families.loading import inference_device, inference_dtype, load_pipeline

            pipe = load_pipeline(manifest.base_model, dtype=inference_dtype(), allow_pickle=manifest.allow_pickle)
            pipe.to(inference_device())
        plans = []
        for kind in kinds:
            if reporter is not None:
                reporter.info(f"class {kind.class_noun!r} in {kind.class_dir}")
            plans.append(generate_class_images(kind.class_dir, kind.manifest, pipe=pipe, replace_stale=replace,
                                               reporter=reporter, sizes=sizes.get(kind.class_dir)))
        return plans[0]


def add_subject(ws: Workspace, name: str, class_noun: str | None, *, identifier: str | None,
                images: Path | None = None, example: str | None = None, reporter: Reporter | None = None) -> Workspace:
    """Add a further subject to a workspace: its photos go to ``instance/NAME/``, its entry to ``subjects:``.
    ``identifier="auto"`` and ``reporter`` as for ``init``."""
    import shutil

    from dbooth.workspace.config import manifest_to_dict, write_manifest
    from dbooth.util.images import mask_file, scan_folder
    from dbooth.workspace.prompts import caption_file

    if (images is None) == (example is None):
        raise DboothError("init --add-subject: pass its photos with --images DIR or --example NAME (one of them)")
    if example is not None and class_noun is None:
        from dbooth.plugins import examples

        class_noun = examples().class_noun(example)
    if class_noun is None:
        raise DboothError("init --add-subject: the class noun is missing; pass --class NOUN (e.g. --class dog)")
    if identifier is None:
        raise DboothError("init --add-subject: pass --identifier TOKEN, a rare token other subjects do not use "
                          "(e.g. zwx)")
    manifest = ws.manifest()
    used = [manifest.identifier, *(s.identifier for s in manifest.subjects)]
    identifier = _checked_identifier(identifier, manifest.base_model, used, manifest.allow_pickle, reporter)
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
            from dbooth.plugins import examples

            examples().write_images(example, tmp)
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


def _checked_identifier(identifier: str, base_model: str, used: list[str], allow_pickle: bool,
                        reporter: Reporter | None) -> str:
    """``auto`` resolved to the first free rare token; any other identifier checked against the base model's
    tokenizer, its warnings (or why it could not be checked) told to the ``reporter``."""
    from dbooth.identifiers import AUTO, identifier_warnings, pick_identifier

    if identifier == AUTO:
        return pick_identifier(base_model, used, allow_pickle=allow_pickle)
    if reporter is not None:
        warnings, note = identifier_warnings(base_model, [identifier], used, allow_pickle=allow_pickle)
        for line in warnings:
            reporter.warn(line)
        if note:
            reporter.info(note)
    return identifier


def identifiers(ws: Workspace | None = None, *, base_model: str | None = None, num: int = 10,
                check: list[str] | None = None, prior: bool = False, samples: int = 8, reporter: Reporter | None = None):
    """Rare single tokens of the base model (the workspace's unless ``base_model``) not yet used by the workspace,
    warnings for ``check`` (default: the workspace's identifiers), and with ``prior`` what the model already draws
    for them (or for the candidates): a ``dbooth.identifiers.survey.Survey``."""
    from dbooth.identifiers.survey import survey

    manifest = ws.manifest() if ws is not None else None
    default = Manifest(class_noun="-").base_model  # the manifest's default base model
    base = base_model or (manifest.base_model if manifest is not None else default)
    allow_pickle = manifest.allow_pickle if manifest is not None else False
    used = [] if manifest is None else [manifest.identifier, *(s.identifier for s in manifest.subjects)]
    result = survey(base, num=num, used=used, check=check or used, allow_pickle=allow_pickle)
    if prior:
        from dbooth.identifiers.base_meaning import identifier_priors

        result.priors = identifier_priors(base, check or used or result.candidates, manifest, samples=samples,
                                          reporter=reporter)
    return result


def train(ws: Workspace, overrides: dict | None = None, *, resume: bool = False, reporter: Reporter | None = None,
          wait: float | None = None, upscaler: bool = False):
    """Train a new run (or ``resume``); ``wait`` seconds for a busy workspace instead of refusing at once.

    ``upscaler``: stage (b), the manifest's ``upscaler`` section; ``train.*`` overrides of its method, steps,
    learning rate and ``prior.enabled`` apply to the upscaler's own settings."""
    from dbooth.training.distributed import is_main
    from dbooth.training import train as run_training

    check_writable(ws.runs_dir, "workspace")
    extend_to = (overrides or {}).get("train.max_steps")  # a resumed run keeps its own budget unless asked
    if upscaler:
        from dbooth.workspace.stages import upscaler_overrides

        overrides = upscaler_overrides(overrides or {})
    manifest = apply_overrides(ws.manifest(), overrides or {})
    # under `accelerate launch` the main process holds the lock for all of the run's processes
    with _writer(ws, "train", reporter, wait) if is_main() else contextlib.nullcontext():
        return run_training(ws, manifest, resume=resume, reporter=reporter, stage="upscaler" if upscaler else "base",
                            extend_to=extend_to)


def interrupted_train(ws: Workspace, *, upscaler: bool = False, workspace_arg: str | None = None) -> str:
    """What a Ctrl-C during ``train`` kept, and the exact command that goes on from there (one line)."""
    runs = [r for r in list_runs(ws) if r.stage == _stage(upscaler)]
    if not runs:
        return "interrupted before the run started; nothing was written"
    run, info = runs[-1], runs[-1].info()
    at, planned = info.get("interrupted_at"), info.get("planned_steps") or info.get("steps")
    where = f"interrupted at step {at} of {planned}" if at is not None else "interrupted"
    command = "dbooth train" + (f" -w {workspace_arg}" if workspace_arg else "") + (" --upscaler" if upscaler else "")
    checkpoint = run.resume_checkpoint()
    if checkpoint is None:
        every = ws.manifest().train.checkpoint_every
        return (f"{where}, before its first checkpoint (train.checkpoint_every: {every}): run {run.id} cannot "
                f"continue; `{command}` starts again")
    return (f"{where}; run {run.id} keeps {checkpoint.name}: `{command} --resume` continues it to step {planned} "
            "with its own settings")


def _writer(ws: Workspace, verb: str, reporter: Reporter | None, wait: float | None = None):
    """The workspace lock that keeps a second ``train``/``prior`` from writing beside this one."""
    from dbooth.workspace.lock import workspace_lock

    def stale(previous: dict) -> None:
        from dbooth.workspace.folder import clear_leftovers

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
    upscale: bool = False,
    upscaler_run: str | None = None,
    reporter: Reporter | None = None,
):
    """Sample the latest stage-(a) run (or ``run_id``, or the base model); with ``upscale`` (or an
    ``upscaler_run``) enlarge each image with the latest upscaler run (or the base upscaler): stage (b)."""
    check_writable(ws.root / "samples", "workspace")
    from dbooth.workspace.prompts import format_prompt

    manifest = apply_overrides(ws.manifest(), overrides or {})
    upscale = upscale or upscaler_run is not None
    run, checkpoint, up = _runs_to_sample(ws, run_id, base_only, upscale, upscaler_run, reporter)
    text = format_prompt(prompt, manifest.identifier, manifest.class_noun, where="prompt")
    from dbooth.families import family_of
    from dbooth.generate.sample import generate, sample_folder  # torch: after the checks

    pipe = _stage_a_pipeline(manifest, run, checkpoint)
    s = manifest.sample
    label = "base" if run is None else run.id + (f"@{checkpoint.name}" if checkpoint is not None else "")
    up_label = None
    if upscale:
        up_label = up.id if up is not None else "base-upscaler"
    folder = sample_folder(ws.samples_dir, label if up_label is None else f"{label}+{up_label}")
    model_label = manifest.base_model if run is None else f"{manifest.base_model} + {label}"
    result = generate(
        pipe,
        text,
        out_dir=folder if up_label is None else folder / "stage-a",
        num_images=s.num_images,
        seed=s.seed,
        steps=s.steps,
        guidance_scale=s.guidance_scale,
        scheduler=s.scheduler,
        negative_prompt=s.negative_prompt,
        height=manifest.train.resolution,
        width=manifest.train.resolution,
        model_label=model_label,
        reporter=reporter,
        extra=family_of(pipe).call_kwargs(manifest.train),
    )
    if up_label is None:
        return _page_refreshed(run, result)
    del pipe
    return _page_refreshed(run, _enlarge_samples(manifest, up, result.paths, text, folder, model_label, reporter))


def _page_refreshed(run, result):
    """``result``, once the run page of ``run`` (None: the base model, which has no page) shows what was added."""
    if run is not None:
        from dbooth.runpage.page import refresh_run_page

        refresh_run_page(run.dir)
    return result


def _runs_to_sample(ws: Workspace, run_id: str | None, base_only: bool, upscale: bool, upscaler_run: str | None,
                    reporter: Reporter | None):
    """The stage-(a) run and checkpoint to sample and the upscaler run (None: the base models), each checked
    before torch is loaded: a wrong stage or outputs outside the run's folder fail fast."""
    from dbooth.workspace.paths import require_inside

    run, checkpoint = (None, None) if base_only else find_run_at(ws, run_id)
    if run is not None:
        if run.stage != "base":
            raise DboothError(f"run {run.id} is an upscaler run (stage b): pass it as --upscaler-run with --upscale, "
                              "and a stage-(a) run (or none, for the latest) as --run")
        require_inside([checkpoint or run.final_dir], run.dir, "run outputs")
    up = _upscaler_run(ws, upscaler_run, reporter) if upscale else None
    if up is not None:
        require_inside([up.final_dir], up.dir, "run outputs")
    return run, checkpoint, up


def _stage_a_pipeline(manifest: Manifest, run, checkpoint):
    """The pipeline to sample: a checkpoint's weights, or the run's final ones (or the base model's)."""
    from dbooth.generate.sample import load_for_sampling

    if checkpoint is not None:
        from dbooth.training.restore import checkpoint_pipeline

        return checkpoint_pipeline(run, checkpoint, allow_pickle=manifest.allow_pickle)
    return load_for_sampling(manifest.base_model, run, allow_pickle=manifest.allow_pickle)


def _enlarge_samples(manifest: Manifest, up, paths: list[Path], text: str, folder: Path, model_label: str,
                     reporter: Reporter | None):
    """Stage (b): each stage-(a) image enlarged into ``folder`` by the upscaler run ``up`` (None: the base
    upscaler), seeded as the image was, once the stage-(a) pipeline has been let go."""
    from dbooth.families import family_of
    from dbooth.generate.sample import load_for_sampling, upscale as enlarge
    from dbooth.workspace.stages import check_stage

    s = manifest.sample
    upscaler_base = up.info().get("base_model", manifest.upscaler.base) if up is not None else manifest.upscaler.base
    up_pipe = load_for_sampling(upscaler_base, up, allow_pickle=manifest.allow_pickle)
    check_stage(family_of(up_pipe), "upscaler", upscaler_base)
    noise_level = up.info().get("noise_level", manifest.upscaler.noise_level) if up else manifest.upscaler.noise_level
    return enlarge(
        up_pipe,
        paths,
        text,
        out_dir=folder,
        seeds=[s.seed + k for k in range(len(paths))],
        noise_level=noise_level,
        steps=s.steps,
        guidance_scale=s.guidance_scale,
        scheduler=s.scheduler,
        negative_prompt=s.negative_prompt,
        model_label=model_label,
        upscaler_label=upscaler_base if up is None else f"{upscaler_base} + {up.id}",
        reporter=reporter,
    )


def _upscaler_run(ws: Workspace, ref: str | None, reporter: Reporter | None):
    """The upscaler run ``ref`` names, else the latest finished one; None (with a note) when there is none."""
    if ref is not None:
        run = find_run(ws, ref, stage="upscaler")
        if run.stage != "upscaler":
            raise DboothError(f"run {run.id} is a stage-(a) run, not an upscaler run; pass it as --run, and an "
                              "upscaler run (from `dbooth train --upscaler`) as --upscaler-run")
        return run
    try:
        return find_run(ws, stage="upscaler")
    except DboothError:
        if reporter is not None:
            reporter.info(f"no upscaler run in this workspace yet: upscaling with the base upscaler "
                          f"{ws.manifest().upscaler.base} (`dbooth train --upscaler` fine-tunes it on the subject)")
        return None


def evaluate(ws: Workspace, *, run_id: str | None = None, checkpoints: bool = False, prompts: str | None = None,
             images_per_prompt: int | None = None, reporter: Reporter | None = None):
    """Score the base model and a finished run (and each checkpoint) on DreamBench's metrics; RUN/eval.json, report.html."""
    check_writable(ws.runs_dir, "workspace")
    manifest = apply_overrides(ws.manifest(), {"eval.prompts": prompts, "eval.images_per_prompt": images_per_prompt})
    run = find_run(ws, run_id)
    if run.stage != "base":
        raise DboothError(f"eval: run {run.id} is an upscaler run; eval scores text-to-image (stage-a) runs only")
    from dbooth.eval.evaluate import evaluate_run  # torch and transformers: after the checks

    return evaluate_run(ws, run, manifest, checkpoints=checkpoints, reporter=reporter)


def merge_lora(ws: Workspace, *, run_id: str | None = None, scale: float = 1.0, out: Path | None = None,
               dtype: str = "fp32", force: bool = False, upscaler: bool = False) -> Path:
    """Fuse a LoRA run (``upscaler``: the latest upscaler run by default; ``RUN@best``/``RUN@STEP``: that
    checkpoint) into its base model; writes a full diffusers pipeline folder."""
    run, checkpoint = _run_at(ws, run_id, _stage(upscaler))
    if run.info().get("method") != "lora":
        raise DboothError(f"run {run.id}: is a full fine-tune, there is no LoRA to merge; use `dbooth export --format diffusers`")
    if out is not None:
        check_writable(out, "merge-lora --out")
    from dbooth.export import merge_run

    return _page_refreshed(run, merge_run(run.dir, checkpoint=checkpoint, base_pipeline_loader=_base_loader(ws),
                                          out=out, scale=scale, dtype=dtype, force=force))


def export(ws: Workspace, fmt: str, *, run_id: str | None = None, out: Path | None = None, dtype: str = "fp32",
           force: bool = False, upscaler: bool = False) -> Path:
    """Export a finished run (``upscaler``: the latest upscaler run by default; ``RUN@best``/``RUN@STEP``: that
    checkpoint) as diffusers, single-file, lora or lora-kohya."""
    run, checkpoint = _run_at(ws, run_id, _stage(upscaler))
    check_writable(out if out is not None else run.dir / "export", "export --out" if out is not None else "export")
    from dbooth.export import export_run

    return _page_refreshed(run, export_run(run.dir, fmt, checkpoint=checkpoint, base_pipeline_loader=_base_loader(ws),
                                           out=out, dtype=dtype, force=force))


def _stage(upscaler: bool) -> str:
    return "upscaler" if upscaler else "base"


def _run_at(ws: Workspace, ref: str | None, stage: str = "base"):
    """The run (else the latest of ``stage``) and checkpoint (None: the final weights) ``ref`` names, the
    checkpoint checked to be the run's."""
    run, checkpoint = find_run_at(ws, ref, stage=stage)
    if checkpoint is not None:
        from dbooth.workspace.paths import require_inside

        require_inside([checkpoint], run.dir, "run checkpoints")
    return run, checkpoint


def _base_loader(ws: Workspace):
    """Loads a run's base model with the workspace's consent (or not) to pickle files."""
    from functools import partial

    from dbooth.families.loading import load_pipeline

    return partial(load_pipeline, allow_pickle=ws.manifest().allow_pickle)


def run_family(ws: Workspace, run_id: str | None = None, *, upscaler: bool = False):
    """The model family a finished run trained (runs from before families were recorded are SD 1.x)."""
    from dbooth.families import get_family

    return get_family(find_run_at(ws, run_id, stage=_stage(upscaler))[0].info().get("family") or "sd1")


__all__ = ["init", "add_subject", "identifiers", "prior", "train", "sample", "evaluate", "merge_lora", "export",
           "open_workspace"]


_MOVED = {"batch": ("dbooth.batch.runner", "run_workspaces")}  # old name here -> its new module and name


def __getattr__(name: str):
    """Deprecated names: ``api.batch`` is ``dbooth.batch.run_workspaces`` now. Batch is orchestration above this
    module (it calls the verbs here), so its new home is looked up by name when old code asks, and this module
    never imports it."""
    if name in _MOVED:
        import importlib
        import warnings

        module, new = _MOVED[name]
        warnings.warn(f"dbooth.api.{name} moved to dbooth.batch.{new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
