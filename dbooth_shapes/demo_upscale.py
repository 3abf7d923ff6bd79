"""``dbooth demo --upscale``: the paper's stage (b) after the demo's stage (a), measured and shown.

Fine-tunes the workspace's upscaler (``upscaler.base``, ``builtin:shapes-x4`` for the examples) on the
subject photos, then

- measures bicubic, the base upscaler and the fine-tuned one on the same inputs with
  ``dbooth_shapes.upscaler_eval``: rendered 64 px images of the subject in new scenes (a perfect
  stage-(a) output, whose true 256 px render is known) for subject detail recovery and PSNR, and solid
  objects of its class under the class prompt for drift (class detail error);
- enlarges the fine-tuned stage-(a) model's own samples (every held-out context and the class prompt)
  with bicubic and both upscalers, same seeds: the oracle judges the subject fidelity and PRES of the
  enlarged images (it sees them at its own 64 px, so this says whether an upscaler keeps the subject
  and the class recognisable, not their fine detail), and the first context's images and the class
  prompt's are shown side by side in the report.
"""

from __future__ import annotations

import time
from pathlib import Path

from dbooth.util.reporting import Reporter

# learning rates for the 1.47M-parameter builtin:shapes-x4 (pretrained at 5e-4), measured on the CPU: see
# BENCHMARKS.md "Stage (b) on the built-in model"; steps are the example manifest's upscaler.max_steps
UPSCALER_LEARNING_RATES = {"full": 5e-4, "lora": 1e-3}
MEASURES = ("detail", "psnr", "class_detail_error", "class_psnr")


def run_stage_b(ws, manifest, settings, stage_a: dict[str, list], prompts: dict[str, list[str]],
                reporter: Reporter, shown: int) -> tuple[dict, dict]:
    """Train stage (b) on ``ws``, measure and draw it. ``stage_a`` maps "subject"/"class" to the fine-tuned
    stage-(a) samples to enlarge and ``prompts`` the same keys to each sample's prompt; the first ``shown``
    subject samples are drawn in the report. Returns (metrics, grids)."""
    from dbooth_shapes.oracle import Oracle

    from dbooth import api
    from dbooth_shapes.upscaler_eval import BICUBIC, evaluate_upscaler, upscale
    from dbooth.generate.sample import load_for_sampling
    from dbooth.generate.schedulers import set_scheduler

    s = settings
    method = s.method
    overrides = {"train.method": method, "train.max_steps": s.upscaler_steps or manifest.upscaler.max_steps,
                 "train.learning_rate": s.upscaler_learning_rate or UPSCALER_LEARNING_RATES[method]}
    result = api.train(ws, overrides, upscaler=True, reporter=reporter)
    up = manifest.upscaler
    sampling = {"steps": manifest.sample.steps, "noise_level": up.noise_level, "guidance_scale": 1.0}

    t = time.time()
    reporter.info("stage (b): bicubic, base and fine-tuned upscaler on the subject and its class")
    oracle = Oracle.load()
    scores, enlarged = {}, {}
    kept = {"stage_a": _kept(oracle, stage_a, s.subject)}
    for label, which in ((BICUBIC, None), ("base", None), ("finetuned", result.run)):
        if label == BICUBIC:
            upscaler = BICUBIC
        else:
            upscaler = load_for_sampling(up.base, which, allow_pickle=manifest.allow_pickle)
            upscaler.set_progress_bar_config(disable=True)
            set_scheduler(upscaler, manifest.sample.scheduler)
        found = evaluate_upscaler(upscaler, num_world=0, per_subject=s.upscale_scenes, subjects=[s.subject],
                                  identifier=manifest.identifier, seed=s.seed, **sampling)
        scores[label] = {k: round(float(found["subjects"][s.subject][k]), 4) for k in MEASURES}
        enlarged[label] = {key: upscale(upscaler, images, prompts[key], seed=s.seed, **sampling)
                           for key, images in stage_a.items()}
        kept[label] = _kept(oracle, enlarged[label], s.subject)
        enlarged[label]["subject"] = enlarged[label]["subject"][:shown]
        del upscaler
    metrics = {
        "upscaler_base": up.base, "method": method, "steps": result.steps, "run": result.run.id,
        "noise_level": up.noise_level, "train_seconds": round(result.seconds, 1),
        "eval_seconds": round(time.time() - t, 1), "scenes": s.upscale_scenes,
        "prompts": {"subject": prompts["subject"][0], "class": prompts["class"][0]}, **scores,
        "oracle": kept, "oracle_samples": {key: len(images) for key, images in stage_a.items()},
    }
    return metrics, _grids(ws.root / "report", enlarged, s.samples_per_prompt)


def _kept(oracle, images: dict[str, list], subject: str) -> dict[str, float]:
    """The oracle on (enlarged) stage-(a) samples: subject fidelity of the subject prompts' images and PRES of
    the class prompt's (the oracle resizes to its 64 px)."""
    return {"subject_fidelity": round(oracle.subject_fidelity(images["subject"], subject), 4),
            "pres": round(oracle.pres(images["class"], subject), 4)}


def _grids(folder: Path, enlarged: dict[str, dict[str, list]], cols: int) -> dict[str, str]:
    from dbooth.generate.sample import make_grid

    folder.mkdir(exist_ok=True)
    grids = {}
    for label, found in enlarged.items():
        for key, images in found.items():
            name = f"upscaled_{label}_{key}"
            make_grid(images, cols=min(len(images), cols)).save(folder / f"{name}.png")
            grids[f"x4:{label}:{key}"] = f"report/{name}.png"
    return grids


def html_section(m: dict, grids: dict[str, str]) -> str:
    """The report's stage-(b) section: the measures' table and the enlarged samples side by side."""
    import html

    e = html.escape
    names = {"detail": "subject detail recovery (1 = all, 0 = none, < 0 = wrong detail)",
             "psnr": "subject PSNR (dB)", "class_detail_error": "class detail error (drift; lower is better)",
             "class_psnr": "class PSNR (dB)"}
    digits = {"detail": 2, "psnr": 1, "class_detail_error": 4, "class_psnr": 1}
    rows = "".join(f"<tr><td>{e(names[k])}</td>" + "".join(f"<td>{m[c][k]:.{digits[k]}f}</td>"
                                                           for c in ("bicubic", "base", "finetuned")) + "</tr>"
                   for k in MEASURES)
    o = m["oracle"]
    kept_rows = "".join(f"<tr><td>{e(name)}</td><td>{o['stage_a'][k]:.3f}</td>"
                        + "".join(f"<td>{o[c][k]:.3f}</td>" for c in ("bicubic", "base", "finetuned")) + "</tr>"
                        for k, name in (("subject_fidelity", f"subject fidelity ({m['oracle_samples']['subject']} "
                                                               "samples, held-out contexts)"),
                                        ("pres", f"PRES ({m['oracle_samples']['class']} class samples; lower is "
                                                 "better)")))
    images = ""
    for key, what in (("subject", m["prompts"]["subject"]), ("class", m["prompts"]["class"])):
        images += f"<h3>{e(what)}</h3>" + "".join(
            f"<p>{e(label)}</p><img class='big' src='{grids[f'x4:{tag}:{key}']}'>"
            for tag, label in (("bicubic", "bicubic"), ("base", f"base upscaler {m['upscaler_base']}"),
                               ("finetuned", "fine-tuned upscaler (same seeds)")))
    return f"""<h2>Stage (b): the upscaler</h2>
<p>{e(m['upscaler_base'])} fine-tuned on the subject photos ({e(m['method'])}, {m['steps']} steps, noise level
{m['noise_level']}, training {m['train_seconds']} s). The measures upscale rendered 64 px images of the subject in
{m['scenes']} new scenes (a perfect stage-(a) output, so the true 256 px image is known) and {m['scenes']} solid
objects of its class under the class prompt.</p>
<table><tr><th>measure</th><th>bicubic</th><th>base upscaler</th><th>fine-tuned upscaler</th></tr>{rows}</table>
<p>The fine-tuned stage-(a) model's own samples, enlarged 4x, judged by the oracle (at its 64 px: does the
subject stay recognisable, does the class stay itself):</p>
<table><tr><th>measure</th><th>stage (a), 64 px</th><th>bicubic</th><th>base upscaler</th><th>fine-tuned upscaler</th>
</tr>{kept_rows}</table>{images}
"""
