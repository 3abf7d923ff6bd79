"""The run page's upper sections as HTML: the verdict and next steps, the settings that matter, the loss
curve and the validation images by step. Each takes the ``RunFolder`` and returns "" when it has no data."""

from __future__ import annotations

from dbooth.runpage import charts, verdict
from dbooth.runpage.eval_view import panels
from dbooth.runpage.html_bits import command, esc, img, marked, section, table
from dbooth.runpage.run_folder import RunFolder
from dbooth.workspace.run_options import describe_options

THUMBS = (64, 128)  # validation images' width on the page, at least and at most
ROOM = 840  # pixels for the images of a row of the grid, beside its label


def summary_section(r: RunFolder) -> str:
    """The verdict, its figures and the commands that go on from here."""
    v = verdict.judge(r)
    body = [f'<p class="verdict {v.tone}">{marked(v.headline)}</p>']
    body += [f"<p>{marked(line)}</p>" for line in v.details]
    steps = verdict.next_steps(r)
    if steps:
        body.append("<h3>Next steps</h3>")
        body += [f"<p class=why>{esc(why)}:</p>{command(*argv)}" for why, argv in steps]
    elif r.workspace is None and r.status.state == "finished":
        body.append("<p>This run folder is not inside a workspace's runs/, so the dbooth commands cannot name it;"
                    " the files below load without dbooth.</p>")
    return section("summary", "Did it work?", *body)


def settings_rows(r: RunFolder) -> list[tuple[str, str]]:
    """``(setting, value)`` for what shapes a run most, from config.yaml where readable, else run.json."""
    info, m = r.info, r.manifest
    rows = [("base model", f"{info.get('base_model', '?')} ({info.get('family', 'sd1')})"),
            ("subject", f"{info.get('identifier', '?')} {info.get('class_noun', '?')}: "
                        f"\u201c{info.get('instance_prompt', '')}\u201d"
                        + (", a caption per photo" if info.get("instance_captions") else ""))]
    further = [f"{x.get('identifier')} {x.get('class_noun')}" for x in (info.get("subjects") or [])[1:]]
    if further:
        rows.append(("further subjects", ", ".join(further)))
    lora = info.get("lora") or {}
    method = (f"LoRA rank {lora.get('rank')}, alpha {lora.get('alpha')}" if r.lora else "full fine-tune")
    options = describe_options(info.get("options"))
    rows.append(("method", method + (", text encoder trained too" if info.get("train_text_encoder") else "")
                 + (f"; {', '.join(options)}" if options else "")))
    rows.append(("steps", f"{r.last_step if r.last_step is not None else '-'} of "
                          f"{info.get('planned_steps', info.get('steps', '?'))}"))
    if m is not None:
        rows += _manifest_rows(m, r.upscaler)
    if r.upscaler:
        rows.append(("noise level", str(info.get("noise_level", "-"))))
    else:
        rows.append(("prior preservation", f"on, class prompt \u201c{info['class_prompt']}\u201d"
                     + (f", weight {m.prior.loss_weight:g}, {m.prior.num_class_images} class images" if m else "")
                     if info.get("class_prompt") else "off"))
    return rows


def _manifest_rows(m, upscaler: bool) -> list[tuple[str, str]]:
    t = m.train
    lr = f"{t.resolved_learning_rate():g}, {t.lr_scheduler}" + (f", {t.lr_warmup_steps} warm-up steps"
                                                               if t.lr_warmup_steps else "")
    if t.train_text_encoder and t.resolved_text_encoder_learning_rate() != t.resolved_learning_rate():
        lr += f"; text encoder {t.resolved_text_encoder_learning_rate():g}"
    batch = f"{t.batch_size}" + (f" x {t.gradient_accumulation_steps} accumulated" if t.gradient_accumulation_steps > 1
                                 else "")
    rows = [("learning rate", lr), ("batch size", batch),
            ("optimizer, precision", f"{t.optimizer}, mixed precision {t.mixed_precision}"),
            ("resolution", f"{t.resolution} px, {t.crop} crop" + (", buckets" if t.buckets else "")
             + (", random flips" if t.random_flip else "")),
            ("seed", str(t.seed)),
            ("checkpoints", f"every {t.checkpoint_every} steps, the newest {t.keep_checkpoints} kept"
             if t.checkpoint_every else "none, only the final weights"),
            ("validation images", f"every {t.validation_every} steps, {t.validation_images} per prompt"
             if t.validation_every else "none (train.validation_every: 0)")]
    if not upscaler and t.validation_prompts:
        rows.append(("validation prompts", "; ".join(t.validation_prompts)))
    return rows


def settings_section(r: RunFolder) -> str:
    rows = [[esc(k), esc(v)] for k, v in settings_rows(r)]
    note = "" if r.manifest is not None else (
        "<p class=note>config.yaml could not be read by this dbooth; these come from run.json.</p>")
    return section("settings", "Settings", table(["setting", "value"], rows, "settings"), note,
                   "<p class=note>All of them: config.yaml in the files below.</p>")


def training_section(r: RunFolder) -> str:
    rows = r.history
    if not rows:
        return ""
    marks = []
    if r.best and r.best.startswith("step-"):
        marks.append((int(r.best.split("-")[1]), "best"))
    last = rows[-1]
    figures = ", ".join(f"{name} {last[key]:.4g}" for name, key in
                        (("loss", "loss"), ("prior loss", "prior_loss"), ("learning rate", "lr"))
                        if last.get(key) is not None)
    weight = charts.smoothing_for(len(rows))
    how = (f"Thick lines: moving average (EMA, weight {weight:.2f}); faint: each step's value"
           if weight else "Each step's value")
    body = [f"<p>{len(rows)} steps recorded in loss.csv" + (f"; at step {last['step']}: {figures}" if figures
                                                           else "") + ".</p>",
            charts.loss_chart(rows, marks),
            f"<p class=note>{how}" + (f" (the mean of {-(-len(rows) // charts.MAX_POINTS)} steps per point)"
                                       if len(rows) > charts.MAX_POINTS else "")
            + ". Loss values above the axis are drawn at its top. The loss is noisy by nature and says little "
              "about likeness: the images below do.</p>", stop_when_block(r)]
    return section("training", "Training", *body)


def stop_when_block(r: RunFolder) -> str:
    """The scores ``train.stop_when`` took at each checkpoint (run.json), against the step."""
    record = r.info.get("stop_when") or {}
    if not record.get("scores") or not record.get("base"):
        return ""
    metrics = {"base": record["base"], **{name: {k: v for k, v in m.items() if k != "step"}
                                          for name, m in record["scores"].items()}}
    chart = panels(metrics, r.info.get("steps"), record.get("best"))
    stopped = record.get("stopped")
    said = f" It stopped at step {stopped['step']}: {stopped['reason']}." if stopped else ""
    return (f"<h3>Scored during training (train.stop_when)</h3><p>Best so far: {esc(record.get('best') or 'none')}."
            f"{esc(said)}</p>{chart}")


def validation_section(r: RunFolder) -> str:
    grid = r.validation
    if grid is None:
        return ""
    head = ["prompt" if not r.upscaler else "photo"] + [f"step {s}" for s in grid.shown]
    per_cell = max((len(ims) for _, by_step in grid.rows for ims in by_step.values()), default=1)
    thumb = max(THUMBS[0], min(THUMBS[1], ROOM // (per_cell * len(grid.shown))))
    rows = []
    for label, by_step in grid.rows:
        cells = [esc(label)]
        for step in grid.shown:
            cells.append("".join(img(p, r.dir, f"{label}, step {step}", width=thumb) for p in by_step.get(step, [])))
        rows.append(cells)
    skipped = len(grid.steps) - len(grid.shown)
    note = (f"<p class=note>{len(grid.shown)} of the {len(grid.steps)} steps with images; all of them are in "
            "validation/.</p>" if skipped else "")
    intro = ("<p>The same prompts and seeds at each step: the subject should appear, then stay in the prompt's "
             "scene. Copies of your photos that ignore the prompt mean overfitting.</p>" if not r.upscaler else
             "<p>Your photos shrunk 4x and enlarged again by the upscaler being trained.</p>")
    return section("validation", "Validation images by step", intro,
                   f'<div class=scroll>{table(head, rows, "grid")}</div>', note)
