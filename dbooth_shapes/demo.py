"""``dbooth demo``: DreamBooth end to end on the built-in model, measured by the oracle.

Builds a workspace from an example subject, generates the class prior, trains, samples the
subject in contexts its photos never showed, and compares base and fine-tuned model on the
same prompts and seeds. Writes ``report.json`` (the paper's four quantities) and
``report.html`` (image grids).
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dbooth.util.errors import DboothError
from dbooth.util.fsutil import atomic_write_text
from dbooth.util.reporting import Reporter

# the example the built-in model binds best (BENCHMARKS.md has all four); the CLI's --subject help names it
DEFAULT_SUBJECT = "striped_heart"
# contexts none of the example photos show: prompt fidelity is measured on new scenes
HELD_OUT_CONTEXTS = (
    "in the jungle",
    "floating on top of water",
    "with a mountain in the background",
    "with a city in the background",
)
MARKER = ".dbooth-demo"
DEMO_LEARNING_RATES = {"full": 1e-4, "lora": 1e-3}


@dataclass
class DemoSettings:
    subject: str = DEFAULT_SUBJECT
    method: str = "full"
    prior: bool = True
    steps: int | None = None
    learning_rate: float | None = None
    num_class_images: int | None = None
    samples_per_prompt: int = 6
    class_samples: int = 12
    seed: int = 0
    evaluate_base: bool = True
    class_images_from: Path | None = None  # reuse another demo workspace's class/ (same prompt and model)
    captions: bool = True  # each photo's scene caption (instance_captions: files); False: one prompt for all
    upscale: bool = False  # also stage (b): fine-tune the upscaler on the subject, measure and show it
    upscaler_steps: int | None = None  # None: the example's upscaler.max_steps
    upscaler_learning_rate: float | None = None  # None: dbooth_shapes.demo_upscale.UPSCALER_LEARNING_RATES[method]
    upscale_scenes: int = 6  # rendered subject scenes and class objects stage (b) is measured on


@dataclass
class DemoResult:
    workspace: Path
    report_json: Path
    report_html: Path
    metrics: dict = field(default_factory=dict)


def run_demo(out: Path, settings: DemoSettings | None = None, reporter: Reporter | None = None) -> DemoResult:
    from dbooth import api
    from dbooth_shapes.oracle import Oracle
    from dbooth_shapes.examples import get_example
    from dbooth.workspace.config import apply_overrides, write_manifest

    s = settings or DemoSettings()
    reporter = reporter or Reporter()
    subject = get_example(s.subject)
    oracle = Oracle.load()
    name = f"{s.subject}-{s.method}" + ("" if s.prior else "-noprior")
    ws_path = Path(out) / name
    if ws_path.exists():
        if not (ws_path / MARKER).is_file():
            raise DboothError(f"demo: {ws_path} exists and was not made by dbooth demo; pass another --out")
        shutil.rmtree(ws_path)
    timings: dict[str, float] = {}

    t = time.time()
    ws = api.init(ws_path, None, example=s.subject)
    (ws.root / MARKER).write_text("made by dbooth demo; rerunning the demo replaces this folder\n")
    # a 5M-parameter model pretrained at lr 4e-4 needs larger steps than Stable Diffusion's 5e-6 / 1e-4
    learning_rate = s.learning_rate or DEMO_LEARNING_RATES[s.method]
    overrides = {"train.method": s.method, "prior.enabled": s.prior, "train.max_steps": s.steps,
                 "train.learning_rate": learning_rate, "prior.num_class_images": s.num_class_images,
                 "instance_captions": "files" if s.captions else "prompt"}
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), overrides))
    manifest = ws.manifest()
    reporter.info(f"workspace {ws.root}: {subject.description} ({manifest.class_noun})")

    if s.prior:
        t = time.time()
        if s.class_images_from is not None:
            for p in Path(s.class_images_from).glob("*.png"):
                shutil.copy2(p, ws.class_dir / p.name)
        api.prior(ws, reporter=reporter)
        timings["prior_seconds"] = round(time.time() - t, 1)
    result = api.train(ws, reporter=reporter)
    timings["train_seconds"] = round(result.seconds, 1)

    t = time.time()
    reporter.info("sampling base and fine-tuned model on held-out contexts")
    grids = _evaluate(ws, result.run, manifest, s, oracle, reporter)
    timings["eval_seconds"] = round(time.time() - t, 1)

    metrics = dict(grids.pop("metrics"))
    stage_a = grids.pop("images")
    if s.upscale:
        from dbooth_shapes.demo_upscale import run_stage_b

        got = stage_a["finetuned"]  # every held-out context's samples, the first context's shown
        context_prompt = {c: next(p for p in metrics["prompts"]["subject"] if p.endswith(c)) for c in HELD_OUT_CONTEXTS}
        samples = {"subject": [im for c in HELD_OUT_CONTEXTS for im in got[c]], "class": got["class"]}
        prompts = {"subject": [context_prompt[c] for c in HELD_OUT_CONTEXTS for _ in got[c]],
                   "class": [metrics["prompts"]["class"]] * len(got["class"])}
        metrics["stage_b"], stage_b_grids = run_stage_b(ws, manifest, s, samples, prompts, reporter,
                                                        shown=len(got[HELD_OUT_CONTEXTS[0]]))
        grids.update(stage_b_grids)
    metrics.update(
        subject=s.subject,
        method=s.method,
        prior_preservation=s.prior,
        steps=result.steps,
        run=result.run.id,
        **timings,
    )
    report_json = ws.root / "report.json"
    atomic_write_text(report_json, json.dumps(metrics, indent=2) + "\n")
    report_html = ws.root / "report.html"
    if s.evaluate_base:
        atomic_write_text(report_html, _html(metrics, grids, subject.description, _training(ws.root, result.run)))
    return DemoResult(workspace=ws.root, report_json=report_json, report_html=report_html, metrics=metrics)


def _evaluate(ws, run, manifest, s: DemoSettings, oracle, reporter) -> dict:
    from dbooth.workspace.prompts import format_prompt
    from dbooth.generate.sample import load_for_sampling, make_grid
    from dbooth.generate.schedulers import set_scheduler

    subject_prompts = {
        ctx: format_prompt(f"a photo of a {{identifier}} {{class}} {ctx}", manifest.identifier, manifest.class_noun)
        for ctx in HELD_OUT_CONTEXTS
    }
    class_text = format_prompt(manifest.class_prompt, manifest.identifier, manifest.class_noun)
    images: dict[str, dict[str, list]] = {}
    models = (("base", None), ("finetuned", run)) if s.evaluate_base else (("finetuned", run),)
    for label, which in models:
        pipe = load_for_sampling(manifest.base_model, which)
        set_scheduler(pipe, manifest.sample.scheduler)
        found = {}
        for key, prompt, n in [(c, p, s.samples_per_prompt) for c, p in subject_prompts.items()] + [
            ("class", class_text, s.class_samples)
        ]:
            found[key] = _sample(pipe, prompt, n, s.seed, manifest)
        images[label] = found
        del pipe
    metrics = {}
    for label in images:
        got = images[label]
        subject_images = [im for ctx in HELD_OUT_CONTEXTS for im in got[ctx]]
        contexts = [ctx for ctx in HELD_OUT_CONTEXTS for _ in got[ctx]]
        values = {
            "subject_fidelity": oracle.subject_fidelity(subject_images, s.subject),
            "prompt_fidelity": oracle.prompt_fidelity(subject_images, contexts),
            "pres": oracle.pres(got["class"], s.subject),
            "div": oracle.div({ctx: got[ctx] for ctx in HELD_OUT_CONTEXTS}),
        }
        values = {k: round(float(v), 4) for k, v in values.items()}
        if label == "base":
            metrics["base"] = values
        else:
            metrics.update(values)
    metrics["prompts"] = {"subject": list(subject_prompts.values()), "class": class_text}
    metrics["samples_per_prompt"] = s.samples_per_prompt
    metrics["class_samples"] = s.class_samples

    from PIL import Image

    folder = ws.root / "report"
    folder.mkdir(exist_ok=True)
    grids = {}

    def save(name: str, ims: list) -> str:
        make_grid(ims, cols=min(len(ims), s.samples_per_prompt)).save(folder / f"{name}.png")
        return f"report/{name}.png"

    photos = sorted(ws.instance_dir.glob("*.png"))  # the example photos; their caption files sit beside them
    grids["photos"] = save("training_photos", [Image.open(p).convert("RGB") for p in photos])
    for label in images:
        for ctx in HELD_OUT_CONTEXTS:
            grids[f"{label}:{ctx}"] = save(f"{label}_{ctx.replace(' ', '_')}", images[label][ctx])
        grids[f"{label}:class"] = save(f"{label}_class", images[label]["class"])
    grids["metrics"] = metrics
    grids["images"] = images
    return grids


def _sample(pipe, prompt: str, n: int, seed: int, manifest) -> list:
    import torch

    return pipe(  # diffusers pipelines run under no_grad themselves
        [prompt] * n,
        num_inference_steps=manifest.sample.steps,
        guidance_scale=manifest.sample.guidance_scale,
        height=manifest.train.resolution,
        width=manifest.train.resolution,
        generator=[torch.Generator("cpu").manual_seed(seed + k) for k in range(n)],
    ).images


def _training(root: Path, run) -> str:
    """The report's training section: the run's loss curve (as on its run page) and a link to that page."""
    from dbooth.runpage import PAGE_FILE
    from dbooth.runpage.charts import loss_chart, smoothing_for
    from dbooth.training.history import HISTORY_FILE, read_history

    rows = read_history(run.dir / HISTORY_FILE)
    chart = loss_chart(rows)
    page = run.dir / PAGE_FILE
    link = (f" The run's own page, with its settings, files and the commands that go on from here: "
            f"<a href='{html.escape(page.relative_to(root).as_posix())}'>{html.escape(run.id)}</a>."
            if page.is_file() else "")
    if not chart:
        return f"<h2>Training</h2><p>{link}</p>" if link else ""
    return (f"<h2>Training</h2>{chart}<p class=note>The loss against the step: thick lines are a moving average "
            f"(EMA, weight {smoothing_for(len(rows)):.2f}) of each step's value, drawn faint; the learning rate has "
            f"its own axis on the right. The loss is noisy by nature and says little about likeness: the "
            f"oracle's figures above and the images below do.{link}</p>")


# under the class prompt's samples: what PRES counts, so a drifted class scoring 0 is not read as a healthy one
PRES_NOTE = ("PRES is the share of these class-prompt samples that the oracle recognises as the subject itself "
             "({subject}). A sample that came out black, in another colour or pattern, or in the wrong shape is not "
             "the subject, so it counts as 0: PRES measures whether the class collapsed onto your subject, not "
             "whether the class samples are still good. A PRES of 0 beside a row of black or misshapen samples means "
             "the class did not turn into the subject but did drift from what the base model drew; compare the two "
             "rows by eye for that.")


def _html(metrics: dict, grids: dict, description: str, training: str = "") -> str:
    from dbooth.runpage.glossary import meaning

    e = html.escape
    stage_b = ""
    if "stage_b" in metrics:
        from dbooth_shapes.demo_upscale import html_section

        stage_b = html_section(metrics["stage_b"], grids)
    base = metrics["base"]
    rows = "".join(
        f"<tr><td>{e(meaning(k, 'oracle')[0])}</td><td>{base[k]:.3f}</td><td>{metrics[k]:.3f}</td>"
        f"<td class=what>{e(meaning(k, 'oracle')[1])}</td></tr>"
        for k in ("subject_fidelity", "prompt_fidelity", "pres", "div")
    )
    sections = []
    for ctx in HELD_OUT_CONTEXTS:
        prompt = next(p for p in metrics["prompts"]["subject"] if p.endswith(ctx))
        sections.append(
            f"<h3>{e(prompt)}</h3><p>base model</p><img src='{grids['base:' + ctx]}'>"
            f"<p>fine-tuned (same seeds)</p><img src='{grids['finetuned:' + ctx]}'>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>dbooth demo: {e(metrics['subject'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}}img{{image-rendering:pixelated;width:100%;max-width:{96 * 6}px}}img.big{{max-width:{256 * 3}px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}td.what{{font-size:.9em;color:#444}}
svg.loss-curve{{width:100%;height:auto}}.note{{color:#555;font-size:.92em}}</style></head><body>
<h1>dbooth demo: {e(description)}</h1>
<p>Method: {e(metrics['method'])}, prior preservation: {e(str(metrics['prior_preservation']))}, {metrics['steps']} steps,
training {metrics['train_seconds']} s. The figures are judged by the built-in oracle, an exact judge of the rendered
world, on {metrics['samples_per_prompt']} samples per held-out scene and {metrics['class_samples']} of the class
prompt, the same seeds for both models.</p>
<table><tr><th>figure</th><th>base model</th><th>fine-tuned</th><th>what it measures</th></tr>{rows}</table>
{training}
<h2>Training photos</h2><img src='{grids['photos']}'>
<h2>Subject in new contexts</h2>{''.join(sections)}
<h2>Class prompt: {e(metrics['prompts']['class'])}</h2>
<p>before (base model)</p><img src='{grids['base:class']}'><p>after (fine-tuned, same seeds)</p><img src='{grids['finetuned:class']}'>
<p class=note>PRES {base['pres']:.3f} before, {metrics['pres']:.3f} after. {e(PRES_NOTE.format(subject=description))}</p>
{stage_b}</body></html>
"""


TABLE_CONFIGS = (
    ("DreamBooth, no prior preservation", "full", False),
    ("DreamBooth, prior preservation", "full", True),
    ("LoRA, prior preservation", "lora", True),
)


def dreambench_table(out: Path, subjects: list[str] | None = None, reporter: Reporter | None = None,
                     captions: bool = True, steps: int | None = None) -> dict:
    """Every example subject under every configuration; the base model is measured once per subject."""
    from dbooth_shapes.examples import list_examples

    rows: dict[str, list[dict]] = {"Base model (before fine-tuning)": []}
    for subject in subjects or list_examples():
        class_dir = None
        for label, method, prior in sorted(TABLE_CONFIGS, key=lambda c: not c[2]):
            settings = DemoSettings(subject=subject, method=method, prior=prior, captions=captions, steps=steps,
                                    evaluate_base=(method, prior) == ("full", True), class_images_from=class_dir)
            result = run_demo(out, settings, reporter)
            if prior and class_dir is None:
                class_dir = result.workspace / "class"
            metrics = result.metrics
            rows.setdefault(label, []).append(metrics)
            if "base" in metrics:
                rows["Base model (before fine-tuning)"].append(dict(metrics["base"], train_seconds=0.0))
    summary = {}
    for label, found in rows.items():
        summary[label] = {
            key: round(sum(m[key] for m in found) / len(found), 3)
            for key in ("subject_fidelity", "prompt_fidelity", "pres", "div", "train_seconds")
        }
        summary[label]["n"] = len(found)
    return {"summary": summary, "runs": rows}


def table_markdown(summary: dict) -> str:
    lines = ["| configuration | subject fidelity | prompt fidelity | PRES (lower is better) | DIV | training time (s) |",
             "|---|---|---|---|---|---|"]
    for label, m in summary.items():
        lines.append(f"| {label} | {m['subject_fidelity']:.3f} | {m['prompt_fidelity']:.3f} | {m['pres']:.3f} "
                     f"| {m['div']:.3f} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)
