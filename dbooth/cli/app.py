"""The ``dbooth`` command: parses options, calls one library function per verb, prints."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from dbooth import __version__
from dbooth.cli.console import RichReporter, answer, console, error  # answer: stdout; console: stderr
from dbooth.util.errors import DboothError
from dbooth.export.clients import FORMATS, clients_text, load_lines
from dbooth.workspace.schema import EVAL_PROMPTS, MIXED_PRECISIONS, OPTIMIZERS, SAMPLERS

EXPORT_DTYPES = ("fp32", "fp16", "bf16")  # dbooth.export.dtypes.DTYPES, without importing torch

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain columns: rich's panels cut long option names at 80-100 columns
    context_settings={"max_content_width": shutil.get_terminal_size().columns},  # click stops at 80 by default
    help="DreamBooth fine-tuning: one workspace folder per subject, driven by its dbooth.yaml.",
)

_INTERRUPT_TOLD: list[bool] = []  # a verb that said what its Ctrl-C kept (train) appends, so main() stays quiet

WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (default: current folder).")


def _quiet_libraries() -> None:
    """Keep the libraries' info logs and download bars out of dbooth's output.

    Only environment variables and warning filters: importing diffusers here to call its logging
    functions would cost seconds on every ``--help`` and typo. The libraries read these when the
    code that needs them imports them (dbooth.families.loading also turns off diffusers' own bar).
    """
    for key, value in (
        ("TOKENIZERS_PARALLELISM", "false"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ):
        os.environ.setdefault(key, value)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        from dbooth.util.errors import closest_key

        hint = closest_key(value, choices)
        raise DboothError(f"{what} {value}: not one of {', '.join(choices)}"
                          + (f"; did you mean {hint}?" if hint else ""))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dbooth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """DreamBooth fine-tuning: one workspace folder per subject, driven by its dbooth.yaml."""


def _complete_runs(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run ids of the workspace named on the command line so far (-w), newest first."""
    from dbooth.workspace.folder import list_runs, open_workspace

    try:
        ws = open_workspace(ctx.params.get("workspace") or Path("."))
        ids = [r.id for r in reversed(list_runs(ws))]
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [i for i in ids if i.startswith(incomplete)]


def _choices(*values: str):
    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return complete


def _photo_paths(folder: Path) -> list[Path]:
    from dbooth.util.images import scan_folder

    return scan_folder(folder, what="instance images", min_side=0, allow_empty=True).paths


def _ws(path: Path):
    from dbooth.workspace.folder import open_workspace

    return open_workspace(path)


@app.command()
def init(
    name: Path = typer.Argument(..., help="Folder to create for this subject (with --add-subject: the workspace)."),
    class_noun: Optional[str] = typer.Option(None, "--class", "-c", help="Class noun, e.g. dog."),
    identifier: Optional[str] = typer.Option(
        None, "--identifier", help="Rare token bound to the subject (default sks; auto: the first of `dbooth identifiers`)."),
    base: Optional[str] = typer.Option(None, "--base", help="Hub id, diffusers folder, .safetensors file, or builtin:shapes."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of subject photos to copy into instance/."),
    example: Optional[str] = typer.Option(None, "--example", help="Start from a built-in example subject."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Accept a pickle-based (.ckpt/.bin/.pt) base model: loading one can run code."),
    add_subject: Optional[str] = typer.Option(
        None, "--add-subject", help="Add a further subject NAME to the existing workspace (photos go to instance/NAME/)."),
) -> None:
    """Create a workspace folder with dbooth.yaml, instance/, class/ and runs/ (or add a subject to one)."""
    from dbooth import api

    if add_subject is not None:
        if base is not None or allow_pickle:
            raise DboothError("init --add-subject: the workspace's base model stays; drop --base/--allow-pickle")
        ws = api.add_subject(_ws(name), add_subject, class_noun, identifier=identifier, images=images,
                             example=example, reporter=RichReporter())
        s = ws.manifest().subjects[-1]
        if identifier == "auto":
            console.print(f"--identifier auto took [bold]{s.identifier}[/], the first free rare token of "
                          f"{ws.manifest().base_model} (`dbooth identifiers -w {ws.root}` lists the others)")
        n = len(_photo_paths(ws.instance_dir / s.name))
        answer.print(f"[green]added[/] subject {s.name} to {ws.root}/ (class [bold]{s.class_noun}[/], identifier "
                     f"[bold]{s.identifier}[/], {n} instance images in instance/{s.name}/)")
        console.print(f"next: `dbooth prior -w {ws.root}` for its class images, then `dbooth train -w {ws.root}`")
        return
    ws = api.init(name, class_noun, identifier=identifier, base_model=base, images=images, example=example,
                  allow_pickle=allow_pickle, reporter=RichReporter())
    m = ws.manifest()
    if identifier == "auto":
        console.print(f"--identifier auto took [bold]{m.identifier}[/], the first rare token of {m.base_model} "
                      f"(`dbooth identifiers -w {ws.root}` lists the others)")
    from dbooth.util.images import scan_folder

    n = len(scan_folder(ws.instance_dir, what="instance images", min_side=0, allow_empty=True).paths)
    answer.print(f"[green]created[/] {ws.root}/ (class [bold]{m.class_noun}[/], identifier [bold]{m.identifier}[/], "
                 f"base {m.base_model}, {n} instance images)")
    console.print(f"next: add photos to {ws.instance_dir}/ if needed, then `dbooth prior -w {ws.root}`")


@app.command("identifiers")
def identifiers_cmd(
    tokens: Optional[list[str]] = typer.Argument(None, help="Identifiers to check (default: the workspace's)."),
    workspace: Optional[Path] = typer.Option(
        None, "--workspace", "-w", help="Workspace whose model and identifiers to use (default: the current folder, "
        "if it is one)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the workspace's, else the default)."),
    num: int = typer.Option(10, "-n", "--num", min=1, help="Candidates to list."),
    prior_: bool = typer.Option(False, "--prior", help="Sample each identifier alone and judge what the model "
                                "already draws for it (loads the model)."),
    samples: int = typer.Option(8, "--samples", min=1, help="Samples per identifier with --prior."),
) -> None:
    """Rare single tokens to use as identifiers (DreamBooth section 4.2), and checks of the ones you chose."""
    from dbooth import api
    from dbooth.workspace.folder import MANIFEST_NAME

    if workspace is None and (Path(".") / MANIFEST_NAME).is_file():
        workspace = Path(".")
    result = api.identifiers(None if workspace is None else _ws(workspace), base_model=base, num=num,
                             check=tokens or None, prior=prior_, samples=samples, reporter=RichReporter())
    answer.print(f"rare single tokens of {result.model} ({result.vocabulary_size} tokens; {result.rule}):")
    answer.print("  " + ("  ".join(result.candidates) or "none left"))
    if result.used:
        answer.print(f"in use in this workspace: {', '.join(result.used)}")
    for ident, warnings in result.checks.items():
        if not warnings:
            answer.print(f"[green]{ident}[/]: one token, not among the words {result.model} knows well")
        for line in warnings:
            answer.print(f"[yellow]{ident}[/]: {line}")
    for p in result.priors:
        seen = ", ".join(f"{k} {v}" for k, v in sorted(p.labels.items(), key=lambda kv: (-kv[1], kv[0])))
        answer.print(f"prior of [bold]{p.identifier}[/] (\"{p.prompt}\", {p.samples} samples, {p.judge}): "
                     + (f"looks like {p.looks_like} in {p.share:.0%} ({seen})" if p.labels else
                        "looks like none of the judge's labels"))


@app.command()
def prior(
    workspace: Path = WorkspaceOpt,
    num: Optional[int] = typer.Option(None, "--num", "-n", help="Number of class images wanted."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images generated per batch."),
    replace: bool = typer.Option(False, "--replace", help="Regenerate class images made with other settings."),
    buckets: Optional[bool] = typer.Option(None, "--buckets/--no-buckets",
                                           help="Class images at the photos' aspect buckets (train.buckets)."),
    wait: bool = typer.Option(False, "--wait", help="If another train/prior is using the workspace, wait for it."),
) -> None:
    """Generate the missing class images for prior preservation."""
    from dbooth import api

    ws = _ws(workspace)
    settings = {"prior.num_class_images": num, "prior.batch_size": batch_size, "train.buckets": buckets}
    result = api.prior(ws, settings, replace=replace, reporter=RichReporter(), wait=float("inf") if wait else None)
    answer.print(f"[green]class images:[/] {result.present} in {ws.class_dir} "
                 f"({len(result.user_images)} yours, {len(result.generated)} generated)")
    if result.times is not None:
        console.print(f"[green]made:[/] {result.times.describe()}")


@app.command()
def train(
    workspace: Path = WorkspaceOpt,
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA adapters or full fine-tuning."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps (default: train.max_steps)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the UNet or transformer (default: train.learning_rate)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Subject images per step "
                                             "(default: train.batch_size)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank (default: train.lora.rank)."),
    dora: Optional[bool] = typer.Option(None, "--dora/--no-dora", help="DoRA: LoRA plus a learned magnitude per channel."),
    prior_preservation: Optional[bool] = typer.Option(None, "--prior/--no-prior", help="Prior-preservation loss."),
    train_text_encoder: Optional[bool] = typer.Option(
        None, "--train-text-encoder/--freeze-text-encoder",
        help="Train the text encoder too: better fidelity, more memory (default: train.train_text_encoder)."),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="no, fp16 or bf16.",
                                                  autocompletion=_choices(*MIXED_PRECISIONS)),
    gradient_checkpointing: Optional[bool] = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing",
        help="Recompute activations in the backward pass: less memory, slower steps "
             "(default: train.gradient_checkpointing)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: train.seed)."),
    snr_gamma: Optional[float] = typer.Option(None, "--snr-gamma", help="Min-SNR loss weighting gamma (5 is usual)."),
    noise_offset: Optional[float] = typer.Option(None, "--noise-offset", help="Offset noise strength (0.05-0.1)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw, adamw8bit, adafactor or prodigy.",
                                            autocompletion=_choices(*OPTIMIZERS)),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", help="Keep (and output) an EMA of the trained weights."),
    masked_loss: Optional[bool] = typer.Option(None, "--masked-loss/--no-masked-loss",
                                               help="Learn only the white area of NAME.mask.png beside a photo."),
    buckets: Optional[bool] = typer.Option(None, "--buckets/--no-buckets",
                                           help="Aspect-ratio buckets: wide and tall photos keep their shape."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished run from its last checkpoint."),
    wait: bool = typer.Option(False, "--wait", help="If another train/prior is using the workspace, wait for it."),
    upscaler: bool = typer.Option(False, "--upscaler", help="Stage (b): fine-tune the manifest's upscaler on "
                                  "low/high-resolution pairs of the photos (--steps, --lr, --lora, --prior set its own)."),
    processes: Optional[int] = typer.Option(None, "--processes", help="Train data-parallel in N processes (one per "
                                            "GPU) through `accelerate launch`; --batch-size is per process."),
    accelerate_config: Optional[Path] = typer.Option(None, "--accelerate-config",
                                                     help="accelerate config file for the launch (e.g. "
                                                          "templates/accelerate/zero2.yaml)."),
) -> None:
    """Fine-tune on the subject photos (and class images) into a new run folder."""
    from dbooth import api
    from dbooth.training.distributed import is_main, num_processes, relaunch

    ws = _ws(workspace)
    if processes is not None or accelerate_config is not None:
        if num_processes() > 1:
            raise DboothError("train --processes: this is already one of several processes started by "
                              "`accelerate launch`; give the process count to the launcher only")
        if (processes or 1) > 1 or accelerate_config is not None:
            raise typer.Exit(relaunch(processes or 1, sys.argv[1:], config_file=accelerate_config))
    overrides = {
        "train.method": None if lora is None else ("lora" if lora else "full"),
        "train.max_steps": steps,
        "train.learning_rate": lr,
        "train.batch_size": batch_size,
        "train.lora.rank": rank,
        "train.lora.use_dora": dora,
        "prior.enabled": prior_preservation,
        "train.train_text_encoder": train_text_encoder,
        "train.mixed_precision": mixed_precision,
        "train.gradient_checkpointing": gradient_checkpointing,
        "train.seed": seed,
        "train.snr_gamma": snr_gamma,
        "train.noise_offset": noise_offset,
        "train.ema.enabled": ema,
        "train.optimizer": optimizer,
        "train.masked_loss": masked_loss,
        "train.buckets": buckets,
    }
    if resume:
        unsupported = [k for k, v in overrides.items() if v is not None and k != "train.max_steps"]
        if unsupported:
            raise DboothError("train --resume: only --steps may change when resuming; drop the other options")
    try:
        result = api.train(ws, overrides, resume=resume, reporter=RichReporter(), wait=float("inf") if wait else None,
                           upscaler=upscaler)
    except KeyboardInterrupt:  # Typer would exit 130 without a word
        if is_main():
            here = Path.cwd().resolve() == ws.root.resolve()
            error(api.interrupted_train(ws, upscaler=upscaler, workspace_arg=None if here else str(workspace)))
        _INTERRUPT_TOLD.append(True)
        raise typer.Exit(130) from None
    if not is_main():
        return
    where = result.run.final_dir
    answer.print(f"[green]trained[/] {result.steps} steps in {result.seconds:.0f}s, final loss {result.final_loss:.4f}")
    answer.print(f"run: {result.run.dir}  output: {where}")
    stop_when = result.run.info().get("stop_when")
    if stop_when:  # train.stop_when scored the checkpoints: say why it stopped (or not) and what it picked
        stopped = stop_when.get("stopped")
        answer.print(f"stopped early at step {stopped['step']}: {stopped['reason']}" if stopped
                     else "train.stop_when: fidelity had not peaked by the last step")
        best = stop_when.get("best")
        answer.print(f"best checkpoint: {best} (`dbooth sample --run {result.run.id}@best`)" if best
                     else "no checkpoint passed the rule; see stop_when in run.json")


@app.command()
def sample(
    prompt: str = typer.Argument(..., help='Prompt, e.g. "a sks dog on the beach" ({identifier}/{class} allowed).'),
    workspace: Path = WorkspaceOpt,
    num: Optional[int] = typer.Option(None, "-n", "--num", help="Number of images."),
    seed: Optional[int] = typer.Option(None, "--seed", help="First image's seed; the next ones count up "
                                       "(default: sample.seed)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: sample.steps)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale "
                                             "(default: sample.guidance_scale)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dpm++, ddim, euler, euler_a, pndm, ddpm.",
                                            autocompletion=_choices(*SAMPLERS)),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the latest finished run); RUN@best or "
                                      "RUN@STEP samples a checkpoint (best: chosen by `dbooth eval --checkpoints`).",
                                      autocompletion=_complete_runs),
    base_only: bool = typer.Option(False, "--base-only", help="Sample the untouched base model."),
    upscale: bool = typer.Option(False, "--upscale", help="Then enlarge each image 4x with the latest upscaler run "
                                 "(`train --upscaler`), or the base upscaler if there is none."),
    upscaler_run: Optional[str] = typer.Option(None, "--upscaler-run", help="Upscaler run id for --upscale.",
                                               autocompletion=_complete_runs),
) -> None:
    """Sample the latest run (or --run, or --base-only) into samples/; --upscale adds stage (b)."""
    from dbooth import api

    ws = _ws(workspace)
    overrides = {
        "sample.num_images": num,
        "sample.seed": seed,
        "sample.steps": steps,
        "sample.guidance_scale": guidance,
        "sample.scheduler": scheduler,
        "sample.negative_prompt": negative,
    }
    result = api.sample(ws, prompt, overrides, run_id=run, base_only=base_only, upscale=upscale,
                        upscaler_run=upscaler_run, reporter=RichReporter())
    answer.print(f"[green]wrote[/] {len(result.paths)} images to {result.folder}"
                 + (f" (grid: {result.grid.name})" if result.grid else ""))


@app.command("eval")
def evaluate(
    workspace: Path = WorkspaceOpt,
    run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the latest finished run).",
                                      autocompletion=_complete_runs),
    checkpoints: bool = typer.Option(False, "--checkpoints",
                                     help="Also score every saved checkpoint and pick the best (run.json best_checkpoint)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="dreambench (the paper's 25) or validation.",
                                          autocompletion=_choices(*EVAL_PROMPTS)),
    num: Optional[int] = typer.Option(None, "-n", "--num", help="Images per prompt (default: eval.images_per_prompt)."),
) -> None:
    """Measure a run against its base model: DINO, CLIP-I, CLIP-T, PRES and DIV on fixed seeds."""
    from dbooth import api
    from dbooth.cli import views

    result = api.evaluate(_ws(workspace), run_id=run, checkpoints=checkpoints, prompts=prompts,
                          images_per_prompt=num, reporter=RichReporter())
    views.print_eval(result.data)
    answer.print(f"[green]wrote[/] {result.path}" + (f" and {result.report}" if result.report else ""))


@app.command("merge-lora")
def merge_lora(
    workspace: Path = WorkspaceOpt,
    run: Optional[str] = typer.Option(None, "--run", help="LoRA run id (default: the latest finished run); "
                                      "RUN@best or RUN@STEP merges a checkpoint.", autocompletion=_complete_runs),
    scale: float = typer.Option(1.0, "--scale", help="LoRA strength fused into the weights."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/WS-RUNSTART[@STEP]-merged)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16.", autocompletion=_choices(*EXPORT_DTYPES)),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    upscaler: bool = typer.Option(False, "--upscaler", help="Merge the latest upscaler run (default: stage a's)."),
) -> None:
    """Fuse a LoRA run into the base weights; writes a full diffusers pipeline folder."""
    from dbooth import api

    path = api.merge_lora(_ws(workspace), run_id=run, scale=scale, out=out, dtype=dtype, force=force,
                          upscaler=upscaler)
    answer.print(f"[green]merged[/] into {path}")


EXPORT_HELP = f"""Export a run for diffusers, ComfyUI, AUTOMATIC1111/Forge, kohya sd-scripts or InvokeAI.

\b
{clients_text()}

A LoRA run exported as diffusers or single-file is merged into its base model first. \
The lora file loads only in diffusers: ComfyUI and AUTOMATIC1111/Forge skip every key of it without a word, \
so use lora-kohya for them. After writing, export prints how to load the file in each client."""


@app.command(help=EXPORT_HELP)
def export(
    workspace: Path = WorkspaceOpt,
    fmt: str = typer.Option(..., "--format", "-f", help=", ".join(FORMATS) + " (see the table above).",
                            autocompletion=_choices(*FORMATS)),
    run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the latest finished run); RUN@best or "
                                      "RUN@STEP exports a checkpoint.", autocompletion=_complete_runs),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16.", autocompletion=_choices(*EXPORT_DTYPES)),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: RUN/export/...)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    upscaler: bool = typer.Option(False, "--upscaler", help="Export the latest upscaler run (default: stage a's)."),
) -> None:
    _check_choice("export --format", fmt, FORMATS)  # before the libraries load: a typo is refused at once
    _check_choice("export --dtype", dtype, EXPORT_DTYPES)
    from dbooth import api

    ws = _ws(workspace)
    path = api.export(ws, fmt, run_id=run, out=out, dtype=dtype, force=force, upscaler=upscaler)
    answer.print(f"[green]exported[/] {fmt} ({dtype}) to {path}", soft_wrap=True)
    pipeline = api.run_family(ws, run, upscaler=upscaler).pipeline_class_name
    for line in load_lines(fmt, path, pipeline=pipeline):  # unwrapped, so a snippet or path copies whole
        answer.print(f"  {line}", markup=False, soft_wrap=True)


@app.command()
def batch(
    workspaces: list[Path] = typer.Argument(..., help="Workspace folders, on storage every Ray node sees."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to run on (ray://HEAD:10001); "
                                          "default: a Ray instance on this machine."),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="GPUs per workspace (default: 1 when "
                                                 "the cluster has GPUs, else 0); 2 or more train data-parallel."),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="CPUs Ray reserves per workspace."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs of the local Ray instance (default: all)."),
    retries: int = typer.Option(1, "--retries", help="Further attempts after a crash or a lost node (not after an "
                                "error in the workspace itself); each resumes from the last checkpoint."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps for every workspace."),
    evaluate: bool = typer.Option(False, "--eval", help="Then score each run (RUN/eval.json)."),
    export: Optional[str] = typer.Option(None, "--export", help="Then export each run: " + ", ".join(FORMATS) + ".",
                                         autocompletion=_choices(*FORMATS)),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every workspace's result here."),
) -> None:
    """Prior, train (and eval, export) for many workspaces as Ray tasks, with a live table."""
    from dbooth.batch import run_workspaces
    from dbooth.cli.batch_view import BatchView

    if export is not None and export not in FORMATS:
        raise DboothError(f"batch --export: {export!r} is not a format; use one of {', '.join(FORMATS)}")
    if json_path is not None:
        from dbooth.util.fsutil import check_writable

        check_writable(json_path, "batch --json")
    with BatchView(console) as view:
        results = run_workspaces(workspaces, steps=steps, evaluate=evaluate, export=export, retries=retries,
                                 gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run, address=address,
                                 num_cpus=num_cpus, on_update=view.update)
    if json_path is not None:
        import dataclasses
        import json

        from dbooth.util.fsutil import atomic_write_text

        atomic_write_text(json_path, json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    failed = [r for r in results if r.status != "complete"]
    console.print(f"[green]{len(results) - len(failed)} complete[/], "
                  + (f"[red]{len(failed)} failed[/]" if failed else "0 failed"))
    if failed:
        raise typer.Exit(1)


@app.command()
def status(
    workspace: Path = WorkspaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (for scripts)."),
) -> None:
    """What a workspace holds: subject, photos, class images, and every run's state."""
    from dbooth.workspace.status import workspace_status

    st = workspace_status(_ws(workspace))
    if as_json:
        import json

        typer.echo(json.dumps(st.to_dict(), indent=2))
        return
    from dbooth.cli import views

    views.print_status(st)


@app.command()
def version() -> None:
    """Print dbooth's version."""
    typer.echo(__version__)


@app.command()
def bench(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Named configuration (see --list)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", help="Measure this workspace's settings."),
    steps: int = typer.Option(20, "--steps", help="Timed training steps."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed steps first (more with --set train.compile=true)."),
    repeats: int = typer.Option(1, "--repeats", help="Runs per setting, round-robin; medians are reported."),
    ablate: bool = typer.Option(False, "--ablate", help="Also flip each speed setting, one at a time."),
    only: list[str] = typer.Option([], "--only", help="With --ablate: only rows whose label starts with this (repeatable)."),
    generation: bool = typer.Option(True, "--generation/--no-generation", help="Measure class-image generation."),
    class_images: Optional[int] = typer.Option(None, "--class-images", min=1,
                                               help="Generate this many class images, as `dbooth prior` would "
                                                    "(load and first batch included in the split)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per measured process."),
    reference: Optional[Path] = typer.Option(None, "--reference",
                                             help="diffusers' train_dreambooth.py (full) or train_dreambooth_lora.py "
                                                  "(LoRA), run side by side."),
    e2e: bool = typer.Option(False, "--e2e", help="Whole `dbooth train` runs with the defaults: time per phase, "
                                                  "current vs previous checkpoint policy."),
    settings: list[str] = typer.Option([], "--set", help="Manifest override KEY=VALUE, e.g. train.batch_size=2."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    list_configs: bool = typer.Option(False, "--list", help="List the named configurations and exit."),
    static: bool = typer.Option(False, "--static", help="Print the memory estimate from the models' configs (nothing "
                                                         "built or run; every published-shape config without -c)."),
) -> None:
    """Measure training steps/s, peak memory and class images/s for a configuration or workspace."""
    from rich.table import Table

    from dbooth.cli import views
    from dbooth.bench import CONFIGS, BenchRequest, run_bench
    from dbooth.util.fsutil import atomic_write_text, check_writable

    if json_path is not None:
        check_writable(json_path, "bench --json")
    if list_configs:
        table = Table("name", "model", "what")
        for c in CONFIGS.values():
            table.add_row(c.name, c.model, c.description)
        console.print(table)
        return
    overrides = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise DboothError(f"bench --set {item}: expected KEY=VALUE, e.g. train.batch_size=2")
        overrides[key.strip()] = value.strip()
    if static:
        from dbooth.bench.static_estimate import static_rows, static_table

        rows = static_rows(config, overrides, workspace)
        console.print(static_table(rows))
        if json_path is not None:
            import json as _json

            atomic_write_text(json_path, _json.dumps(rows, indent=2) + "\n")
        return
    request = BenchRequest(config=config, workspace=workspace, steps=steps, warmup=warmup, repeats=repeats,
                           ablate=ablate, generation=generation, threads=threads, reference=reference,
                           overrides=overrides, only=only, e2e=e2e, class_images=class_images)
    report = run_bench(request, reporter=RichReporter())
    if json_path is not None:
        import json as _json

        atomic_write_text(json_path, _json.dumps(report, indent=2) + "\n")

    views.print_bench(report)
    if json_path is not None:
        console.print(f"[green]wrote[/] {json_path}")


def _plugin_commands() -> None:
    """Verbs that plugins bring (the built-in world's ``demo``), after the core's own."""
    from dbooth.plugins import registry

    for name, function in registry().commands:
        app.command(name)(function)


_plugin_commands()


def main() -> None:
    _quiet_libraries()
    try:
        app(prog_name="dbooth")
    except DboothError as exc:
        from dbooth.training.distributed import RelayedError

        if not isinstance(exc, RelayedError):  # the main process has printed it
            error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error(interrupted_message(sys.argv[1:]))
        sys.exit(130)
    except SystemExit as exc:  # Typer turns Ctrl-C into a silent exit 130
        if exc.code == 130 and not _INTERRUPT_TOLD:
            error(interrupted_message(sys.argv[1:]))
        raise


def interrupted_message(args: list[str]) -> str:
    """What Ctrl-C left and how to go on: every output is complete or absent, so each verb just continues."""
    verb = next((a for a in args if not a.startswith("-")), "")
    if verb == "train":
        again = "dbooth train --upscaler --resume" if "--upscaler" in args else "dbooth train --resume"
        return f"interrupted; `{again}` continues the run from its last checkpoint"
    if verb == "prior":
        return "interrupted; the class images written so far are kept and `dbooth prior` makes the rest"
    return "interrupted; nothing was half-written, run the command again to finish it"
