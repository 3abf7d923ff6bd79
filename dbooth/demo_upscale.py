"""``dbooth demo --upscale``: the paper's stage (b) after the demo's stage (a), measured and shown.

Fine-tunes the workspace's upscaler (``upscaler.base``, ``builtin:shapes-x4`` for the examples) on the
subject photos, then

- measures bicubic, the base upscaler and the fine-tuned one on the same inputs with
  ``dbooth.builtin.evaluate_upscaler``: rendered 64 px images of the subject in new scenes (a perfect
  stage-(a) output, whose true 256 px render is known) for subject detail recovery and PSNR, and solid
  objects of its class under the class prompt for drift (class detail error);
- enlarges the fine-tuned stage-(a) model's own samples (one held-out context and the class prompt)
  with both upscalers, same seeds, for the report's side-by-side images.
"""

from __future__ import annotations

import time
from pathlib import Path

from dbooth.reporting import Reporter

# learning rates for the 1.47M-parameter builtin:shapes-x4 (pretrained at 5e-4), measured on the CPU: see
# BENCHMARKS.md "Stage (b) on the built-in model"; steps are the example manifest's upscaler.max_steps
UPSCALER_LEARNING_RATES = {"full": 5e-4, "lora": 1e-3}
MEASURES = ("detail", "psnr", "class_detail_error", "class_psnr")


def run_stage_b(ws, manifest, settings, stage_a: dict[str, list], prompts: dict[str, str],
                reporter: Reporter) -> tuple[dict, dict]:
    """Train stage (b) on ``ws``, measure and draw it. ``stage_a`` maps "subject"/"class" to the fine-tuned
    stage-(a) samples to enlarge and ``prompts`` the same keys to their prompts. Returns (metrics, grids)."""
    from dbooth import api
    from dbooth.builtin.evaluate_upscaler import BICUBIC, evaluate_upscaler, upscale
    from dbooth.sample import load_for_sampling
    from dbooth.schedulers import set_scheduler

    s = settings
    method = s.method
    overrides = {"train.method": method, "train.max_steps": s.upscaler_steps or manifest.upscaler.max_steps,
                 "train.learning_rate": s.upscaler_learning_rate or UPSCALER_LEARNING_RATES[method]}
    result = api.train(ws, overrides, upscaler=True, reporter=reporter)
    up = manifest.upscaler
    sampling = {"steps": manifest.sample.steps, "noise_level": up.noise_level, "guidance_scale": 1.0}

    t = time.time()
    reporter.info("stage (b): bicubic, base and fine-tuned upscaler on the subject and its class")
    scores, enlarged = {}, {}
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
        enlarged[label] = {key: upscale(upscaler, images, [prompts[key]] * len(images), seed=s.seed, **sampling)
                           for key, images in stage_a.items()}
        del upscaler
    metrics = {
        "upscaler_base": up.base, "method": method, "steps": result.steps, "run": result.run.id,
        "noise_level": up.noise_level, "train_seconds": round(result.seconds, 1),
        "eval_seconds": round(time.time() - t, 1), "scenes": s.upscale_scenes, "prompts": prompts, **scores,
    }
    return metrics, _grids(ws.root / "report", enlarged, s.samples_per_prompt)


def _grids(folder: Path, enlarged: dict[str, dict[str, list]], cols: int) -> dict[str, str]:
    from dbooth.sample import make_grid

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
<p>The fine-tuned stage-(a) model's own samples, enlarged 4x:</p>{images}
"""
