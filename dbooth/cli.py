"""The ``dbooth`` command: parses options, calls one library function per verb, prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from dbooth import __version__
from dbooth.console import RichReporter, console, error
from dbooth.errors import DboothError
from dbooth.export.clients import FORMATS, clients_text, load_lines

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="DreamBooth fine-tuning: one workspace folder per subject, driven by its dbooth.yaml.",
)

WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (default: current folder).")


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def _ws(path: Path):
    from dbooth.workspace import open_workspace

    return open_workspace(path)


@app.command()
def init(
    name: Path = typer.Argument(..., help="Folder to create for this subject."),
    class_noun: Optional[str] = typer.Option(None, "--class", "-c", help="Class noun, e.g. dog."),
    identifier: Optional[str] = typer.Option(None, "--identifier", help="Rare token bound to the subject (default sks)."),
    base: Optional[str] = typer.Option(None, "--base", help="Hub id, diffusers folder, .safetensors file, or builtin:shapes."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of subject photos to copy into instance/."),
    example: Optional[str] = typer.Option(None, "--example", help="Start from a built-in example subject."),
) -> None:
    """Create a workspace folder with dbooth.yaml, instance/, class/ and runs/."""
    from dbooth import api

    ws = api.init(name, class_noun, identifier=identifier, base_model=base, images=images, example=example)
    m = ws.manifest()
    from dbooth.images import scan_folder

    n = len(scan_folder(ws.instance_dir, what="instance images", min_side=0, allow_empty=True).paths)
    console.print(f"[green]created[/] {ws.root}/ (class [bold]{m.class_noun}[/], identifier [bold]{m.identifier}[/], "
                  f"base {m.base_model}, {n} instance images)")
    console.print(f"next: add photos to {ws.instance_dir}/ if needed, then `dbooth prior -w {ws.root}`")


@app.command()
def prior(
    workspace: Path = WorkspaceOpt,
    num: Optional[int] = typer.Option(None, "--num", "-n", help="Number of class images wanted."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images generated per batch."),
    replace: bool = typer.Option(False, "--replace", help="Regenerate class images made with other settings."),
) -> None:
    """Generate the missing class images for prior preservation."""
    from dbooth import api

    ws = _ws(workspace)
    result = api.prior(ws, {"prior.num_class_images": num, "prior.batch_size": batch_size}, replace=replace,
                       reporter=RichReporter())
    console.print(f"[green]class images:[/] {result.present} in {ws.class_dir} "
                  f"({len(result.user_images)} yours, {len(result.generated)} generated)")


@app.command()
def train(
    workspace: Path = WorkspaceOpt,
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA adapters or full fine-tuning."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps."),
    lr: Optional[float] = typer.Option(None, "--lr", help="UNet learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Subject images per step."),
    rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank."),
    prior_preservation: Optional[bool] = typer.Option(None, "--prior/--no-prior", help="Prior-preservation loss."),
    train_text_encoder: Optional[bool] = typer.Option(None, "--train-text-encoder/--freeze-text-encoder"),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="no, fp16 or bf16."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished run from its last checkpoint."),
) -> None:
    """Fine-tune on the subject photos (and class images) into a new run folder."""
    from dbooth import api

    ws = _ws(workspace)
    overrides = {
        "train.method": None if lora is None else ("lora" if lora else "full"),
        "train.max_steps": steps,
        "train.learning_rate": lr,
        "train.batch_size": batch_size,
        "train.lora.rank": rank,
        "prior.enabled": prior_preservation,
        "train.train_text_encoder": train_text_encoder,
        "train.mixed_precision": mixed_precision,
        "train.gradient_checkpointing": gradient_checkpointing,
        "train.seed": seed,
    }
    if resume:
        unsupported = [k for k, v in overrides.items() if v is not None and k != "train.max_steps"]
        if unsupported:
            raise DboothError("train --resume: only --steps may change when resuming; drop the other options")
    result = api.train(ws, overrides, resume=resume, reporter=RichReporter())
    where = result.run.final_dir
    console.print(f"[green]trained[/] {result.steps} steps in {result.seconds:.0f}s, final loss {result.final_loss:.4f}")
    console.print(f"run: {result.run.dir}  output: {where}")


@app.command()
def sample(
    prompt: str = typer.Argument(..., help='Prompt, e.g. "a sks dog on the beach" ({identifier}/{class} allowed).'),
    workspace: Path = WorkspaceOpt,
    num: Optional[int] = typer.Option(None, "-n", "--num", help="Number of images."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    guidance: Optional[float] = typer.Option(None, "--guidance"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dpm++, ddim, euler, euler_a, pndm, ddpm."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the latest finished run)."),
    base_only: bool = typer.Option(False, "--base-only", help="Sample the untouched base model."),
) -> None:
    """Sample the latest run (or --run, or --base-only) into samples/."""
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
    result = api.sample(ws, prompt, overrides, run_id=run, base_only=base_only, reporter=RichReporter())
    console.print(f"[green]wrote[/] {len(result.paths)} images to {result.folder}"
                  + (f" (grid: {result.grid.name})" if result.grid else ""))


@app.command("merge-lora")
def merge_lora(
    workspace: Path = WorkspaceOpt,
    run: Optional[str] = typer.Option(None, "--run", help="LoRA run id (default: the latest finished run)."),
    scale: float = typer.Option(1.0, "--scale", help="LoRA strength fused into the weights."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/merged)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    """Fuse a LoRA run into the base weights; writes a full diffusers pipeline folder."""
    from dbooth import api

    path = api.merge_lora(_ws(workspace), run_id=run, scale=scale, out=out, dtype=dtype, force=force)
    console.print(f"[green]merged[/] into {path}")


EXPORT_HELP = f"""Export a run for diffusers, ComfyUI, AUTOMATIC1111/Forge, kohya sd-scripts or InvokeAI.

\b
{clients_text()}

A LoRA run exported as diffusers or single-file is merged into its base model first. \
The lora file loads only in diffusers: ComfyUI and AUTOMATIC1111/Forge skip every key of it without a word, \
so use lora-kohya for them. After writing, export prints how to load the file in each client."""


@app.command(help=EXPORT_HELP)
def export(
    workspace: Path = WorkspaceOpt,
    fmt: str = typer.Option(..., "--format", "-f", help=", ".join(FORMATS) + " (see the table above)."),
    run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the latest finished run)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: RUN/export/...)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
) -> None:
    from dbooth import api

    path = api.export(_ws(workspace), fmt, run_id=run, out=out, dtype=dtype, force=force)
    console.print(f"[green]exported[/] {fmt} ({dtype}) to {path}", soft_wrap=True)
    for line in load_lines(fmt, path):  # unwrapped, so a snippet or path copies whole
        console.print(f"  {line}", markup=False, soft_wrap=True)


@app.command()
def demo(
    out: Path = typer.Option(Path("dbooth-demo"), "--out", help="Folder for the demo workspace and report."),
    subject: Optional[str] = typer.Option(
        None, "--subject", help="Built-in example subject (default: striped_heart, the one the model binds best)."
    ),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters instead of the full UNet."),
    prior_preservation: bool = typer.Option(True, "--prior/--no-prior", help="Prior-preservation loss."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the example's)."),
    captions: bool = typer.Option(
        True, "--captions/--one-caption", help="Caption each photo with its scene, or all with one prompt (the paper)."
    ),
    table: Optional[Path] = typer.Option(
        None, "--table", help="Run every example subject under every configuration; write the averages as JSON here."
    ),
    only: Optional[str] = typer.Option(None, "--subjects", help="With --table: comma-separated subset of subjects."),
) -> None:
    """DreamBooth end to end on the built-in model, offline: prior, train, sample, evaluate, report."""
    from rich.table import Table

    from dbooth.demo import DemoSettings, dreambench_table, run_demo, table_markdown

    if table is not None:
        import json

        from dbooth.fsutil import atomic_write_text

        subjects = [x for x in (only or "").split(",") if x] or None
        results = dreambench_table(out, subjects, reporter=RichReporter(), captions=captions, steps=steps)
        atomic_write_text(table, json.dumps(results, indent=2, default=str) + "\n")
        typer.echo(table_markdown(results["summary"]))
        console.print(f"[green]table:[/] {table}")
        return

    settings = DemoSettings(method="lora" if lora else "full", prior=prior_preservation, steps=steps, captions=captions)
    if subject:
        settings.subject = subject
    result = run_demo(out, settings, reporter=RichReporter())
    m = result.metrics
    table = Table(title=f"{settings.subject}: base model vs fine-tuned (oracle)")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("fine-tuned", justify="right")
    for key, note in (("subject_fidelity", "higher is better"), ("prompt_fidelity", "higher is better"),
                      ("pres", "lower is better"), ("div", "higher is more diverse")):
        table.add_row(f"{key} ({note})", f"{m['base'][key]:.3f}", f"{m[key]:.3f}")
    console.print(table)
    console.print(f"[green]report:[/] {result.report_html}  metrics: {result.report_json}")


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
    generation: bool = typer.Option(True, "--generation/--no-generation", help="Measure class-image generation."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per measured process."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="diffusers' train_dreambooth.py, run side by side."),
    settings: list[str] = typer.Option([], "--set", help="Manifest override KEY=VALUE, e.g. train.batch_size=2."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    list_configs: bool = typer.Option(False, "--list", help="List the named configurations and exit."),
) -> None:
    """Measure training steps/s, peak memory and class images/s for a configuration or workspace."""
    from rich.table import Table

    from dbooth.bench import CONFIGS, BenchRequest, run_bench
    from dbooth.fsutil import atomic_write_text

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
    request = BenchRequest(config=config, workspace=workspace, steps=steps, warmup=warmup, repeats=repeats,
                           ablate=ablate, generation=generation, threads=threads, reference=reference,
                           overrides=overrides)
    report = run_bench(request, reporter=RichReporter())
    if json_path is not None:
        import json as _json

        atomic_write_text(json_path, _json.dumps(report, indent=2) + "\n")

    def mb(x):
        return "-" if x is None else f"{x:,.0f}"

    s = report["settings"]
    console.print(f"[bold]{report['config']}[/]: {report['description']}")
    console.print(f"device {report['device']}, torch {report['torch']}; {s['method']}, {s['resolution']} px, "
                  f"batch {s['batch_size']}{' + prior' if s['prior_preservation'] else ''}, "
                  f"precision {s['mixed_precision']}; {report['warmup']} warm-up + {report['steps']} timed steps, "
                  f"{report['repeats']} run(s)")
    main_table = Table("steps/s", "s/step", f"peak MB ({report['peak_memory_kind']})", "TFLOP/step", "TFLOP/s",
                       "of peak", "class images/s")
    util = report["utilization"]
    main_table.add_row(f"{report['steps_per_s']:.3f}", f"{1 / report['steps_per_s']:.3f}", mb(report["peak_memory_mb"]),
                       f"{report['flops_per_step'] / 1e12:.3f}", f"{report['achieved_tflops']:.3f}",
                       "-" if util is None else f"{100 * util:.0f}%",
                       "-" if report.get("class_images_per_s") is None else f"{report['class_images_per_s']:.3f}")
    console.print(main_table)
    if report["ablation"]:
        table = Table("setting", "steps/s", "x base", "peak MB", "x base", "runs (steps/s)", title="ablation")
        for row in report["ablation"]:
            if "steps_per_s" not in row:
                table.add_row(row["label"], "-", "-", "-", "-", row.get("skipped") or str(row.get("error"))[:60])
                continue
            table.add_row(row["label"], f"{row['steps_per_s']:.3f}", f"{row['speedup']:.2f}",
                          mb(row["peak_memory_mb"]), f"{row['memory_ratio']:.2f}",
                          " ".join(f"{x:.2f}" for x in row["steps_per_s_runs"]))
        console.print(table)
    if report.get("reference"):
        table = Table("trainer", "steps/s", "x reference", "peak MB", "x reference", "runs (steps/s)",
                      title="side by side (same environment, alternating)")
        for row in report["reference"]["rows"]:
            if "steps_per_s" not in row:
                table.add_row(row["label"], "-", "-", "-", "-", str(row.get("error"))[:60])
                continue
            table.add_row(row["label"], f"{row['steps_per_s']:.3f}", f"{row['speed_vs_reference']:.2f}",
                          mb(row["peak_memory_mb"]), f"{row['memory_vs_reference']:.2f}",
                          " ".join(f"{x:.2f}" for x in row["steps_per_s_runs"]))
        console.print(table)
    if report.get("generation"):
        table = Table("class-image generation", "batch", "steps", "images/s", "peak MB")
        for row in report["generation"]:
            if "images_per_s" not in row:
                table.add_row(row["label"], "-", "-", str(row.get("error"))[:60], "-")
                continue
            table.add_row(row["label"], str(row["batch"]), str(row["steps"]), f"{row['images_per_s']:.3f}",
                          mb(row["peak_memory_mb"]))
        console.print(table)
    if json_path is not None:
        console.print(f"[green]wrote[/] {json_path}")


def main() -> None:
    _quiet_libraries()
    try:
        app(prog_name="dbooth")
    except DboothError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted; `dbooth train --resume` continues a training run from its last checkpoint")
        sys.exit(130)
