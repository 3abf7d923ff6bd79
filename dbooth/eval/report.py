"""The "Evaluation" section of ``RUN/report.html``: metric table, image grids and the fidelity curve.

The builders are pure functions of ``eval.json``'s data, so the page can be checked without a model;
``save_grids`` and ``write_report`` are the only ones that touch the disk. The section sits between two
comment markers, so a second ``dbooth eval`` replaces it and leaves the rest of the page alone.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from dbooth.util.fsutil import atomic_write_bytes, atomic_write_text

REPORT_FILE = "report.html"
GRID_DIR = "eval"
START, END = "<!-- dbooth:eval -->", "<!-- /dbooth:eval -->"
BASE, FINAL = "base", "final"
CLASS = "class"  # the grids' key for the class prompt's samples (what PRES judges)
ROWS = (("dino", "DINO (subject, higher)"), ("clip_i", "CLIP-I (subject, higher)"),
        ("clip_t", "CLIP-T (prompt, higher)"), ("pres", "PRES (prior drift, lower)"),
        ("div_dino", "DIV (diversity, DINO, higher)"),
        # a base model's own exact judge (the built-in world's oracle), when it judges alone
        ("subject_fidelity", "subject fidelity (higher)"), ("prompt_fidelity", "prompt fidelity (higher)"),
        ("div", "DIV (diversity, higher)"))
# the curve: subject fidelity (y) against prompt fidelity (x), one point per scored step
WIDTH, HEIGHT = 480, 320
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 20, 50  # margins inside the SVG for the axes' labels
X_KEY, Y_KEY = "clip_t", "dino"


def grid_file(index: int | str, model: str) -> str:
    """Path of one grid relative to the run folder; prompts are numbered, as their text may be anything."""
    key = f"{index:02d}" if isinstance(index, int) else index
    return f"{GRID_DIR}/grid-{key}-{model}.png"


def shown_models(data: dict) -> list[str]:
    """Whose samples the page shows: the base model, the best checkpoint when it is not the final weights, final."""
    best = (data.get("best") or {}).get("checkpoint")
    return [BASE] + ([best] if best and best not in (BASE, FINAL) else []) + [FINAL]


def step_of(name: str) -> int | None:
    match = re.fullmatch(r"step-(\d+)", name)
    return int(match.group(1)) if match else None


def point_label(name: str) -> str:
    step = step_of(name)
    return name if step is None else f"step {step}"


def plot_points(metrics: dict[str, dict]) -> list[tuple[str, float, float]]:
    """``(name, x, y)`` in SVG coordinates for every model scored on both axes, in eval.json's (step) order."""
    scored = {n: m for n, m in metrics.items() if m.get(X_KEY) is not None and m.get(Y_KEY) is not None}
    if not scored:
        return []
    xs, ys = [m[X_KEY] for m in scored.values()], [m[Y_KEY] for m in scored.values()]
    return [(n, _scale(m[X_KEY], min(xs), max(xs), LEFT, WIDTH - RIGHT),
             _scale(m[Y_KEY], min(ys), max(ys), HEIGHT - BOTTOM, TOP)) for n, m in scored.items()]


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    """``lo..hi`` onto ``a..b``; a single value sits in the middle."""
    if hi == lo:
        return round((a + b) / 2, 2)
    return round(a + (v - lo) / (hi - lo) * (b - a), 2)


def curve_svg(metrics: dict[str, dict], best: str | None = None) -> str:
    """DINO against CLIP-T, one labelled point per step joined in step order; base hollow, best ringed."""
    points = plot_points(metrics)
    if not points:
        return ""
    e = html.escape
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    xs = [metrics[n][X_KEY] for n, _, _ in points]
    ys = [metrics[n][Y_KEY] for n, _, _ in points]
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" width="{WIDTH}" height="{HEIGHT}" '
         f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'),
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#888"/>',
        f'<text x="{x0}" y="{y0 + 15}">{min(xs):.4f}</text>',
        f'<text x="{x1}" y="{y0 + 15}" text-anchor="end">{max(xs):.4f}</text>',
        f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 8}" text-anchor="middle">CLIP-T (prompt fidelity)</text>',
        f'<text x="{x0 - 4}" y="{y0}" text-anchor="end">{min(ys):.4f}</text>',
        f'<text x="{x0 - 4}" y="{y1 + 8}" text-anchor="end">{max(ys):.4f}</text>',
        (f'<text transform="translate(14 {(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">'
         'DINO (subject fidelity)</text>'),
    ]
    steps = [(x, y) for n, x, y in points if n != BASE]
    if len(steps) > 1:
        parts.append('<polyline fill="none" stroke="#4a7ab5" points="'
                     + " ".join(f"{x},{y}" for x, y in steps) + '"/>')
    for name, x, y in points:
        m = metrics[name]
        kind = "base" if name == BASE else "best" if name == best else "step"
        fill, stroke = {"base": ("white", "#c33"), "best": ("#2a2", "#000"), "step": ("#4a7ab5", "#4a7ab5")}[kind]
        parts.append(
            f'<circle class="point {kind}" cx="{x}" cy="{y}" r="{6 if kind == "best" else 4}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="2" data-name="{e(name)}" data-clip-t="{m[X_KEY]}" data-dino="{m[Y_KEY]}">'
            f'<title>{e(name)}: CLIP-T {m[X_KEY]:.4f}, DINO {m[Y_KEY]:.4f}</title></circle>')
        label = point_label(name) + (" (best)" if kind == "best" else "")
        at = f'x="{x + 7}"' if x < WIDTH - 100 else f'x="{x - 7}" text-anchor="end"'  # labels stay inside
        parts.append(f'<text {at} y="{y - 6}">{e(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def metric_table(data: dict) -> str:
    """One column per model (base, checkpoints, final), one row per metric; the oracle's rows when present."""
    e = html.escape
    best = (data.get("best") or {}).get("checkpoint")
    names = list(data["metrics"])
    head = "".join(f'<th{" class=best" if n == best else ""}>{e(n)}{" (best)" if n == best else ""}</th>'
                   for n in names)
    present = {key for m in data["metrics"].values() for key in m}
    rows = [(label, [data["metrics"][n].get(key) for n in names]) for key, label in ROWS if key in present]
    oracle = (data.get("oracle") or {}).get("metrics") or {}
    for key in oracle.get(BASE, {}):
        rows.append((f"oracle {key}", [oracle.get(n, {}).get(key) for n in names]))
    body = "".join(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{_figure(v)}</td>" for v in values) + "</tr>"
                   for label, values in rows)
    return f"<table><tr><th>metric</th>{head}</tr>{body}</table>"


def eval_section(data: dict, grids: dict[str, dict[str, str]]) -> str:
    """The section, markers included. ``grids``: model -> prompt (or ``CLASS``) -> image path relative to the page."""
    e = html.escape
    best = data.get("best")
    judges = data["encoders"]
    judged = (f"judges {e(judges['dino'])} and {e(judges['clip'])}" if judges
              else "judged by the base model's oracle alone (DINO and CLIP were not in the cache)")
    intro = (f"<p>{e(str(data['prompts']))}: {len(data['prompt_list'])} prompts, {data['images_per_prompt']} images "
             f"per prompt at seeds {data['seed']} upwards, the same for every model; {judged}; "
             f"{e(data['created'])}.</p>")
    out = [START, '<section id="evaluation"><h2>Evaluation</h2>', intro,
           metric_table(data),
           f"<p class=note>{e(data['div'])}</p>"]
    if data.get("oracle"):
        out.append(f"<p>Oracle figures: the built-in world's exact judge, subject {e(data['oracle']['subject'])}.</p>")
    if best is not None:
        out.append(f"<p>Best checkpoint: <b>{e(best['checkpoint'] or 'none passes the rule')}</b> "
                   f"({e(best['rule'])}).</p>")
        svg = curve_svg(data["metrics"], best["checkpoint"])
        if svg:
            out.append("<h3>Subject fidelity against prompt fidelity, by step</h3>" + svg)
    models = shown_models(data)
    for prompt in [*data["prompt_list"], CLASS]:
        shown = [(m, grids.get(m, {}).get(prompt)) for m in models]
        shown = [(m, src) for m, src in shown if src]
        if not shown:
            continue
        title = f"class prompt: {data['class_prompt']}" if prompt == CLASS else prompt
        out.append(f"<h3>{e(title)}</h3>")
        for model, src in shown:
            label = model + (" (best)" if best and model == best["checkpoint"] else "")
            out.append(f'<figure><figcaption>{e(label)}</figcaption><img src="{e(src)}" alt="{e(label)}"></figure>')
    out += ["</section>", END]
    return "\n".join(out)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>dbooth run {run}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}img{{max-width:100%}}
figure{{margin:0.5em 0}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th.best{{background:#dfd}}</style></head><body>
<h1>dbooth run {run}</h1>
{section}
</body></html>
"""


def merge_section(page: str | None, section: str, run: str, markers: tuple[str, str] = (START, END),
                  before: str | None = None) -> str:
    """``page`` with the section between ``markers`` replaced by ``section``; when it has none, added before
    the ``before`` marker if the page has it (the training section goes above the evaluation), else before
    ``</body>``."""
    if page is None:
        return PAGE.format(run=html.escape(run), section=section)
    start, end = page.find(markers[0]), page.find(markers[1])
    if start != -1 and end > start:
        return page[:start] + section + page[end + len(markers[1]):]
    at = page.find(before) if before else -1
    if at != -1:
        return page[:at] + section + "\n" + page[at:]
    at = page.lower().rfind("</body>")
    if at == -1:
        return page + "\n" + section + "\n"
    return page[:at] + section + "\n" + page[at:]


def save_grids(run_dir: Path, model: str, images: dict[str, list], class_images: list) -> dict[str, str]:
    """One row of samples per prompt as ``RUN/eval/grid-NN-MODEL.png``; returns prompt -> relative path."""
    from dbooth.generate.sample import make_grid

    saved = {}
    for key, index, ims in [*((p, i, ims) for i, (p, ims) in enumerate(images.items(), 1)),
                            (CLASS, CLASS, class_images)]:
        if not ims:
            continue
        buf = io.BytesIO()
        make_grid(ims, cols=len(ims)).save(buf, format="PNG")
        rel = grid_file(index, model)
        atomic_write_bytes(Path(run_dir) / rel, buf.getvalue())
        saved[key] = rel
    return saved


def write_report(run_dir: Path, data: dict, grids: dict[str, dict[str, str]]) -> Path:
    """Write (or update) ``RUN/report.html``; grids of models the page does not show are removed."""
    run_dir = Path(run_dir)
    shown = {m: grids.get(m, {}) for m in shown_models(data)}
    keep = {run_dir / rel for g in shown.values() for rel in g.values()}
    for old in (run_dir / GRID_DIR).glob("grid-*.png"):
        if old not in keep:
            old.unlink(missing_ok=True)
    existing = {m: {p: rel for p, rel in g.items() if (run_dir / rel).is_file()} for m, g in shown.items()}
    path = run_dir / REPORT_FILE
    page = path.read_text(encoding="utf-8") if path.is_file() else None
    atomic_write_text(path, merge_section(page, eval_section(data, existing), str(data["run"])))
    return path
