"""The run page's "Evaluation" section, from ``RUN/eval.json`` and the grids ``dbooth eval`` saved beside
it: the figures of every scored model, each figure against the step, and the samples of base, best and final
on the same prompts and seeds."""

from __future__ import annotations

from dbooth.eval.report import CLASS, FINAL, grid_file, shown_models, step_of
from dbooth.runpage import charts
from dbooth.runpage.html_bits import esc, img, section, table
from dbooth.runpage.run_folder import RunFolder

# (eval.json key, row label) in the table's order; the judge's own keys follow in theirs
ROWS = (("dino", "DINO (subject, higher)"), ("clip_i", "CLIP-I (subject, higher)"),
        ("clip_t", "CLIP-T (prompt, higher)"), ("subject_fidelity", "subject fidelity (higher)"),
        ("prompt_fidelity", "prompt fidelity (higher)"), ("pres", "PRES (prior drift, lower)"),
        ("div_dino", "DIV (diversity, DINO, higher)"), ("div", "DIV (diversity, higher)"))
# the figures drawn against the step, one panel each
PANELS = (("dino", "DINO: subject fidelity"), ("clip_i", "CLIP-I: subject fidelity"),
          ("clip_t", "CLIP-T: prompt fidelity"), ("subject_fidelity", "subject fidelity"),
          ("prompt_fidelity", "prompt fidelity"), ("pres", "PRES: class drift (lower is better)"))
CELL = 96  # pixels per sample in the grids' columns


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def metric_table(data: dict) -> str:
    """One column per model (base, checkpoints, final), one row per figure; the oracle's rows when present."""
    best = (data.get("best") or {}).get("checkpoint")
    names = list(data["metrics"])
    present = {key for m in data["metrics"].values() for key in m}
    rows = [(label, [data["metrics"][n].get(key) for n in names]) for key, label in ROWS if key in present]
    oracle = (data.get("oracle") or {}).get("metrics") or {}
    for key in oracle.get("base", {}):
        rows.append((f"oracle {key}", [oracle.get(n, {}).get(key) for n in names]))
    head = "".join(f"<th class=best>{esc(n)} (best)</th>" if n == best else f"<th>{esc(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{esc(label)}</td>" + "".join(f"<td>{_figure(v)}</td>" for v in values) + "</tr>"
                   for label, values in rows)
    return f"<table class=figures><tr><th>figure</th>{head}</tr>{body}</table>"


def model_steps(names: list[str], final_step: int | None) -> dict[str, int]:
    """The step of each scored model: base 0, ``step-N`` N, final the run's last step (when known)."""
    out = {}
    for name in names:
        step = 0 if name == "base" else final_step if name == FINAL else step_of(name)
        if step is not None:
            out[name] = step
    return out


def panels(metrics: dict[str, dict], final_step: int | None, best: str | None) -> str:
    """One small chart per figure the judge gave, each against the step; "" when nothing has two points."""
    steps = model_steps(list(metrics), final_step)
    drawn = []
    for key, title in PANELS:
        points = [(n, steps[n], m[key]) for n, m in metrics.items() if n in steps and m.get(key) is not None]
        drawn.append(charts.metric_panel(title, points, best))
    drawn = [d for d in drawn if d]
    return f"<div class=panels>{''.join(drawn)}</div>" if drawn else ""


def grids_table(r: RunFolder, data: dict) -> str:
    """Rows of prompts (the class prompt last), a column per shown model, the saved grids that exist."""
    models = shown_models(data)
    best = (data.get("best") or {}).get("checkpoint")
    rows = []
    for index, prompt in [*enumerate(data.get("prompt_list", []), 1), (CLASS, CLASS)]:
        paths = [r.dir / grid_file(index, m) for m in models]
        if not any(p.is_file() for p in paths):
            continue
        label = f"class prompt: {data.get('class_prompt')} (PRES is judged on these)" if prompt == CLASS else prompt
        rows.append([esc(label)] + [img(p, r.dir, f"{label}: {m}", cell=CELL) if p.is_file() else "-"
                                    for p, m in zip(paths, models)])
    if not rows:
        return ""
    head = ["prompt"] + [esc(m) + (" (best)" if m == best else "") for m in models]
    return ("<h3>Samples: the same prompts and seeds for every model</h3>"
            f'<div class=scroll>{table(head, rows, "grid")}</div>')


def eval_section(r: RunFolder) -> str:
    data = r.eval
    if data is None:
        return ""
    judges = data.get("encoders")
    judged = (f"judges {esc(judges['dino'])} and {esc(judges['clip'])}" if judges
              else "judged by the base model's oracle alone (DINO and CLIP were not in the cache)")
    body = [f"<p>{esc(data.get('prompts', ''))}: {len(data.get('prompt_list', []))} prompts, "
            f"{data.get('images_per_prompt')} images per prompt at seeds {data.get('seed')} upwards, the same for "
            f"every model; {judged}; {esc(data.get('created', ''))}.</p>",
            metric_table(data)]
    if data.get("oracle"):
        body.append(f"<p>Oracle rows: the built-in world's exact judge, subject {esc(data['oracle']['subject'])}.</p>")
    best = data.get("best")
    if best is not None:
        body.append(f"<p>Best checkpoint: <b>{esc(best['checkpoint'] or 'none passes the rule')}</b> "
                    f"({esc(best['rule'])}).</p>")
    chart = panels(data["metrics"], r.info.get("steps"), (best or {}).get("checkpoint"))
    if chart:
        body.append("<h3>Each figure against the training step</h3>" + chart
                    + "<p class=note>Hollow red point and dashed line: the base model (step 0); green: the best "
                      "checkpoint.</p>")
    body.append(grids_table(r, data))
    return section("evaluation", "Evaluation", *body)
