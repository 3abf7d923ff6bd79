"""What the CLI prints for a verb's result: rich tables and lines laid out from the library's data.

``dbooth.cli.app`` parses options and calls the library; the layouts live here so that the verbs stay short.
Nothing here computes a result: every figure comes in the data passed. Results go to stdout (``answer``);
progress, warnings and errors to stderr.
"""

from __future__ import annotations

from dbooth.cli.console import answer
from dbooth.util.diskspace import human


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_eval(data: dict) -> None:
    """``dbooth eval``: a column per scored model (base, checkpoints, final), a row per metric."""
    from rich.table import Table

    best = (data.get("best") or {}).get("checkpoint")
    table = Table(title=f"run {data['run']}: {data['prompts']}, {data['images_per_prompt']} images per prompt")
    table.add_column("metric")
    for name in data["metrics"]:
        table.add_column(name + (" (best)" if name == best else ""), justify="right")
    notes = {"dino": "subject, higher", "clip_i": "subject, higher", "clip_t": "prompt, higher",
             "pres": "prior drift, lower", "div_dino": "diversity, higher", "subject_fidelity": "higher",
             "prompt_fidelity": "higher", "div": "diversity, higher"}
    keys = list(dict.fromkeys(key for m in data["metrics"].values() for key in m))  # the judge's, in its order
    for key in keys:
        label = f"{key} ({notes[key]})" if key in notes else key
        table.add_row(label, *(figure(m.get(key)) for m in data["metrics"].values()))
    for key in (data.get("oracle") or {}).get("metrics", {}).get("base", {}):
        table.add_row(f"oracle {key}", *(figure(m[key]) for m in data["oracle"]["metrics"].values()))
    answer.print(table)
    if "best" in data:
        answer.print(f"[green]best checkpoint:[/] {best or 'none passes the rule'} ({data['best']['rule']})")


def print_status(st) -> None:
    """``dbooth status``: the workspace, its subjects and every run, on stdout."""
    answer.print(f"[bold]{st.root}[/]: [bold]{st.identifier} {st.class_noun}[/] on {st.base_model} "
                 f"at {st.resolution} px")
    match = ""
    if st.class_images_stale:
        match = f" [yellow]({st.class_images_stale} made with other settings; `dbooth prior --replace`)[/]"
    elif st.prior_enabled and st.class_images < st.class_images_wanted:
        match = f" [yellow]({st.class_images_wanted - st.class_images} missing; `dbooth prior`)[/]"
    if st.busy is not None:
        b = st.busy
        answer.print(f"[cyan]busy:[/] `dbooth {b.get('verb', '?')}` (pid {b.get('pid', '?')} "
                     f"on {b.get('host', '?')}) is using this workspace")
    prior = "" if st.prior_enabled else " (prior preservation off)"
    answer.print(f"photos {st.photos}; class images {st.class_images} of {st.class_images_wanted}{prior}{match}")
    for sub in st.subjects:
        answer.print(f"subject {sub['name']}: [bold]{sub['identifier']} {sub['class_noun']}[/], "
                     f"photos {sub['photos']}; class images {sub['class_images']} in {sub['class_dir']}")
    if not st.runs:
        answer.print("no runs yet; `dbooth train` starts one")
        return
    colours = {"finished": "green", "running": "cyan", "failed": "red", "stopped": "yellow", "interrupted": "yellow"}
    answer.print(f"runs ({len(st.runs)}):")
    for r in st.runs:
        state = f"[{colours.get(r.state, 'white')}]{r.state}[/]"
        if r.state == "running" and r.pid:
            state += f" (pid {r.pid})"
        if r.resumable:
            state += f", resumable with `dbooth train{' --upscaler' if 'upscaler' in r.options else ''} --resume`"
        parts = [f"[bold]{r.id}[/]", ", ".join([r.method] + r.options), state,
                 f"step {'-' if r.steps_done is None else r.steps_done}/{'-' if r.steps_planned is None else r.steps_planned}"]
        if r.final_loss is not None:
            parts.append(f"loss {r.final_loss:.4f}")
        if r.train_seconds is not None:
            parts.append(f"{r.train_seconds:.0f} s")
        parts.append(human(r.size_bytes))
        if r.checkpoints:
            parts.append("checkpoints " + ", ".join(str(c) for c in r.checkpoints)
                         + (f" (resume state at {r.resume_from})" if r.resume_from is not None and r.state != "finished"
                            else ""))
        if r.best_checkpoint:
            parts.append(f"best {r.best_checkpoint}")
        answer.print("  " + "  ".join(parts))
        if r.timings:
            from dbooth.training.timings import describe

            answer.print(f"    time: {describe(r.timings)}")
        if r.error:
            answer.print(f"    [red]error:[/] {r.error}")
        if r.page:
            answer.print(f"    page: {r.page}")


def print_bench(report: dict) -> None:
    """``dbooth bench``: the measured configuration, its ablation, the side by side and generation."""
    from rich.table import Table

    if report.get("mode") == "e2e":
        print_end_to_end(report)
        return
    s = report["settings"]
    answer.print(f"[bold]{report['config']}[/]: {report['description']}")
    answer.print(f"device {report['device']}, torch {report['torch']}; {s['method']}, {s['resolution']} px, "
                 f"batch {s['batch_size']}{' + prior' if s['prior_preservation'] else ''}, "
                 f"precision {s['mixed_precision']}; {report['warmup']} warm-up + {report['steps']} timed steps, "
                 f"{report['repeats']} run(s)")
    main_table = Table("steps/s", "s/step", f"peak MB ({report['peak_memory_kind']})", "TFLOP/step", "TFLOP/s",
                       "of peak", "class images/s")
    util = report["utilization"]
    main_table.add_row(f"{report['steps_per_s']:.3f}", f"{1 / report['steps_per_s']:.3f}", _mb(report["peak_memory_mb"]),
                       f"{report['flops_per_step'] / 1e12:.3f}", f"{report['achieved_tflops']:.3f}",
                       "-" if util is None else f"{100 * util:.0f}%",
                       "-" if report.get("class_images_per_s") is None else f"{report['class_images_per_s']:.3f}")
    answer.print(main_table)
    if report["ablation"]:
        answer.print(_compared(report["ablation"], "setting", "base", "speedup", "memory_ratio", title="ablation"))
    if report.get("reference"):
        answer.print(_compared(report["reference"]["rows"], "trainer", "reference", "speed_vs_reference",
                               "memory_vs_reference", title="side by side (same environment, alternating)"))
    if report.get("generation"):
        table = Table("class-image generation", "batch", "steps", "images/s", "peak MB")
        for row in report["generation"]:
            if "images_per_s" not in row:
                table.add_row(row["label"], "-", "-", str(row.get("error"))[:60], "-")
                continue
            table.add_row(row["label"], str(row["batch"]), str(row["steps"]), f"{row['images_per_s']:.3f}",
                          _mb(row["peak_memory_mb"]))
        answer.print(table)
        split = [row for row in report["generation"] if row.get("split")]
        if split:
            answer.print(_generation_split(split))


def _generation_split(rows: list[dict]):
    """Where dbooth's class-image time went (the median run): as `dbooth prior` prints it."""
    from rich.table import Table

    table = Table("class images", "images", "whole s", "load s", "denoise s", "decode s", "PNG writes s (waited)",
                  title="where the class-image time went")
    for row in rows:
        t = row["split"]
        table.add_row(row["label"], str(t["images"]), f"{t['load'] + t['seconds']:.1f}", f"{t['load']:.1f}",
                      f"{t['denoise']:.1f}", f"{t['decode']:.1f}", f"{t['write']:.1f} ({t['waited']:.1f})")
    return table


def _compared(rows: list[dict], what: str, against: str, speed: str, memory: str, title: str):
    """Steps/s and peak memory of each row against a baseline row, with every run's steps/s."""
    from rich.table import Table

    table = Table(what, "steps/s", f"x {against}", "peak MB", f"x {against}", "runs (steps/s)", title=title)
    for row in rows:
        if "steps_per_s" not in row:
            table.add_row(row["label"], "-", "-", "-", "-", row.get("skipped") or str(row.get("error"))[:60])
            continue
        table.add_row(row["label"], f"{row['steps_per_s']:.3f}", f"{row[speed]:.2f}", _mb(row["peak_memory_mb"]),
                      f"{row[memory]:.2f}", " ".join(f"{x:.2f}" for x in row["steps_per_s_runs"]))
    return table


def _mb(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def print_end_to_end(report: dict) -> None:
    """``dbooth bench --e2e``: wall time and the split per phase for each checkpoint policy."""
    from rich.table import Table

    s = report["settings"]
    answer.print(f"[bold]{report['config']}[/] end to end: {report['description']}")
    answer.print(f"device {report['device']}, torch {report['torch']}; {s['method']}, {s['resolution']} px, "
                 f"{s['max_steps']} steps, checkpoint every {s['checkpoint_every']} (keep {s['keep_checkpoints']}), "
                 f"{s['validation_images']} validation images every {s['validation_every']}, "
                 f"{s['num_class_images']} class images; {report['repeats']} run(s) per policy, medians")
    phases = ("load", "caching", "steps", "checkpoints", "validation", "save", "other")
    table = Table("checkpoint policy", "wall s", *(f"{p} s" for p in phases), "total s", "writer thread s",
                  "checkpoints on disk")
    for row in report["rows"]:
        if "timings" not in row:
            table.add_row(row["label"], str(row.get("error"))[:60])
            continue
        t = row["timings"]
        table.add_row(row["label"], f"{row['wall_seconds']:.1f}", *(f"{t[p]:.1f}" for p in phases),
                      f"{t['total']:.1f}", f"{t['checkpoint_writes_background']:.1f}", human(row["checkpoint_bytes"]))
    answer.print(table)
