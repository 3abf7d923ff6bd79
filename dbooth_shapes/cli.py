"""The ``dbooth demo`` verb (registered by ``dbooth_shapes.plugin``) and its table of results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dbooth.cli.console import RichReporter, answer, console


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
    upscale: bool = typer.Option(
        False, "--upscale", help="Also stage (b): fine-tune the upscaler on the subject, compare it with the base one."
    ),
) -> None:
    """DreamBooth end to end on the built-in model, offline: prior, train, sample, evaluate, report."""
    from dbooth_shapes.demo import DemoSettings, dreambench_table, run_demo, table_markdown

    from dbooth.util.fsutil import check_writable

    check_writable(out, "demo --out")
    if table is not None:
        check_writable(table, "demo --table")
        import json

        from dbooth.util.fsutil import atomic_write_text

        subjects = [x for x in (only or "").split(",") if x] or None
        results = dreambench_table(out, subjects, reporter=RichReporter(), captions=captions, steps=steps)
        atomic_write_text(table, json.dumps(results, indent=2, default=str) + "\n")
        typer.echo(table_markdown(results["summary"]))
        console.print(f"[green]table:[/] {table}")
        return

    settings = DemoSettings(method="lora" if lora else "full", prior=prior_preservation, steps=steps, captions=captions,
                            upscale=upscale)
    if subject:
        settings.subject = subject
    result = run_demo(out, settings, reporter=RichReporter())
    print_demo(result.metrics, settings.subject)
    answer.print(f"[green]report:[/] {result.report_html}  metrics: {result.report_json}")


def print_demo(m: dict, subject: str) -> None:
    """``dbooth demo``: the oracle's figures, base against fine-tuned, and stage (b)'s when it ran."""
    from rich.table import Table

    table = Table(title=f"{subject}: base model vs fine-tuned (oracle)")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("fine-tuned", justify="right")
    for key, note in (("subject_fidelity", "higher is better"), ("prompt_fidelity", "higher is better"),
                      ("pres", "lower is better"), ("div", "higher is more diverse")):
        table.add_row(f"{key} ({note})", f"{m['base'][key]:.3f}", f"{m[key]:.3f}")
    answer.print(table)
    if "stage_b" in m:
        b = m["stage_b"]
        up = Table(title=f"stage (b): {b['upscaler_base']} before and after fine-tuning ({b['steps']} steps)")
        for column in ("measure", "bicubic", "base upscaler", "fine-tuned"):
            up.add_column(column, justify="left" if column == "measure" else "right")
        for key, note in (("detail", "subject detail recovery, higher is better"), ("psnr", "subject PSNR, dB"),
                          ("class_detail_error", "class drift, lower is better"), ("class_psnr", "class PSNR, dB")):
            up.add_row(f"{key} ({note})", *(f"{b[label][key]:.3f}" for label in ("bicubic", "base", "finetuned")))
        o = b["oracle"]
        for key, note in (("subject_fidelity", "oracle, enlarged stage-(a) samples"), ("pres", "oracle, lower is better")):
            up.add_row(f"{key} ({note}; stage a: {o['stage_a'][key]:.3f})",
                       *(f"{o[label][key]:.3f}" for label in ("bicubic", "base", "finetuned")))
        answer.print(up)
