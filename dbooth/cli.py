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
    n = len(list(ws.instance_dir.iterdir()))
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


@app.command()
def version() -> None:
    """Print dbooth's version."""
    typer.echo(__version__)


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except DboothError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted; `dbooth train --resume` continues a training run from its last checkpoint")
        sys.exit(130)
