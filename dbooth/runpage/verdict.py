"""The top of the run page: did it work, and what now. A headline from the run's state and (when it was
scored) its figures against the base model, then the exact commands that go on from here, built only from
options the CLI has (``dbooth sample/eval/export/merge-lora/train --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from dbooth.export.clients import clients_of
from dbooth.runpage.run_folder import RunFolder
from dbooth.util.errors import DboothError
from dbooth.workspace.prompts import format_prompt

EXPORTS = {True: ("lora-kohya", "lora"), False: ("single-file", "diffusers")}  # by LoRA run or not, most used first
LEARNED = 0.05  # a subject fidelity this much above the base model's counts as learned (DINO or the oracle's share)
# the judge's three figures in eval.json: subject fidelity, prompt fidelity, drift of the class
KEYS = {"encoders": ("dino", "clip_t", "pres"), "oracle": ("subject_fidelity", "prompt_fidelity", "pres")}
NAMES = {"dino": "subject fidelity (DINO)", "clip_t": "prompt fidelity (CLIP-T)", "pres": "PRES",
         "subject_fidelity": "subject fidelity", "prompt_fidelity": "prompt fidelity"}


@dataclass
class Verdict:
    tone: str  # ok, warn, bad or info: the headline's colour
    headline: str
    details: list[str]  # sentences; the page escapes them and shows `backticked` words as code


def scored_keys(data: dict) -> tuple[str, str, str]:
    """Subject fidelity, prompt fidelity and drift, as the judge of ``eval.json`` names them."""
    oracle = data.get("judge") == "oracle" or "dino" not in data["metrics"].get("base", {})
    return KEYS["oracle" if oracle else "encoders"]


def chosen_model(data: dict) -> str:
    """The weights the verdict speaks of: the best checkpoint when eval chose one, else the final ones."""
    best = (data.get("best") or {}).get("checkpoint")
    return best if best in data["metrics"] else "final"


def judge(r: RunFolder) -> Verdict:
    """How the run ended and, once ``dbooth eval`` scored it, whether it learned the subject."""
    st = r.status
    planned = st.steps_planned
    if st.state == "running":
        return Verdict("info", f"Training: step {r.last_step or 0} of {planned}.",
                       ["This page is rewritten at each validation and when the run ends."])
    if st.state in ("interrupted", "stopped"):
        how = "interrupted" if st.state == "interrupted" else "stopped (its process is gone)"
        return Verdict("warn", f"Not finished: {how} at step {st.steps_done or 0} of {planned}.", [])
    if st.state == "failed":
        return Verdict("bad", f"Failed: {st.error or 'see the terminal it ran in'}.", [])
    done = f"Trained {st.steps_done} steps" + (f" in {_seconds(st.train_seconds)}" if st.train_seconds else "")
    stopped = (r.info.get("stop_when") or {}).get("stopped")
    early = [f"train.stop_when stopped it at step {stopped['step']}: {stopped['reason']}."] if stopped else []
    if r.upscaler:
        return Verdict("ok", done + ".", early + ["Compare the validation upscales by step below."])
    if r.eval is None:
        look = ("compare the validation images by step below, or " if r.validation is not None else
                "this run drew no validation images (train.validation_every: 0), so ")
        return Verdict("info", f"{done}. Not scored yet.", early + [
            f"The loss alone does not say whether the subject was learned: {look}score the run against its base "
            "model with `dbooth eval`" + (" (the first command below)." if r.workspace is not None else ".")])
    return _scored(r.eval, done, early)


def _scored(data: dict, done: str, early: list[str]) -> Verdict:
    subject, prompt, drift = scored_keys(data)
    base, name = data["metrics"]["base"], chosen_model(data)
    got = data["metrics"][name]
    where = f"{name} (the best checkpoint)" if name == (data.get("best") or {}).get("checkpoint") else name
    moves = [f"{NAMES.get(k, k)} {_figure(base.get(k))} for the base model, {_figure(got.get(k))} for {name}"
             for k in (subject, prompt, drift) if k in base]
    said = "; ".join(moves)
    details = early + ([said[0].upper() + said[1:] + "."] if said else [])
    best = data.get("best")
    if best is not None and best.get("checkpoint") is None:
        details.append("No checkpoint passed the rule (" + best["rule"] + "): each lost too much prompt fidelity"
                       " or class (overfitting). Train fewer steps or with a lower learning rate.")
    if got.get(subject) is None or base.get(subject) is None:
        return Verdict("info", f"{done}; scored by `dbooth eval`.", details)
    if got[subject] - base[subject] >= LEARNED:
        return Verdict("ok", f"{done}. The subject was learned: {NAMES[subject]} rose from "
                             f"{base[subject]:.3f} to {got[subject]:.3f} at {where}.", details)
    details.append("Train longer (--steps) or with a higher learning rate (--lr), then score again.")
    return Verdict("warn", f"{done}. The subject was not learned yet: {NAMES[subject]} {got[subject]:.3f} at "
                           f"{where}, base model {base[subject]:.3f}.", details)


def _figure(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def sample_prompt(r: RunFolder) -> str:
    """A prompt that puts the subject in a scene: the run's first validation prompt, else one on the beach."""
    m = r.manifest
    if m is not None and m.train.validation_prompts:
        template = m.train.validation_prompts[0]
    else:
        template = "a photo of {identifier} {class} on the beach"
    try:
        return format_prompt(template, r.info.get("identifier", "sks"), r.info.get("class_noun", "thing"))
    except DboothError:
        return template


def model_ref(r: RunFolder) -> str:
    """``RUN@best`` when eval chose a checkpoint that is still on disk, else ``RUN`` (the final weights)."""
    best = r.best
    if best and best != "final" and (r.run.checkpoints_dir / best).is_dir():
        return f"{r.run.id}@best"
    return r.run.id


def next_steps(r: RunFolder) -> list[tuple[str, list[str]]]:
    """``(why, argv)`` for each command worth running next; none for a run outside a workspace."""
    if r.workspace is None:
        return []
    ws, st = ["-w", str(r.workspace)], r.status
    stage = ["--upscaler"] if r.upscaler else []
    if st.state == "running":
        return []
    if st.state != "finished":
        if st.resumable:
            return [(f"continue from the checkpoint at step {st.resume_from}", ["dbooth", "train", *ws, *stage,
                                                                                 "--resume"])]
        return [("start again (nothing to resume from)", ["dbooth", "train", *ws, *stage])]
    if r.upscaler:
        return _upscaler_steps(r, ws)
    return _scoring_steps(r, ws) + _using_steps(r, ws) + _retrain_steps(r, ws)


def _scoring_steps(r: RunFolder, ws: list[str]) -> list[tuple[str, list[str]]]:
    has_checkpoints = bool(r.run.checkpoints())
    scored_checkpoints = r.eval is not None and any(k.startswith("step-") for k in r.eval["metrics"])
    if r.eval is not None and (scored_checkpoints or not has_checkpoints):
        return []
    argv = ["dbooth", "eval", *ws, "--run", r.run.id] + (["--checkpoints"] if has_checkpoints else [])
    why = "score it (and each checkpoint, to pick the best) against the base model" if has_checkpoints \
        else "score it against the base model"
    return [(why, argv)]


def _using_steps(r: RunFolder, ws: list[str]) -> list[tuple[str, list[str]]]:
    ref = model_ref(r)
    which = "the best checkpoint" if ref.endswith("@best") else "the final weights"
    steps = [(f"sample {which}", ["dbooth", "sample", *ws, "--run", ref, sample_prompt(r)])]
    for fmt in EXPORTS[r.lora]:
        clients = clients_of(fmt, r.pipeline)  # only formats some client loads for this family are written
        if clients:
            steps.append((f"export as {fmt} for {', '.join(clients)}",
                          ["dbooth", "export", *ws, "--run", ref, "--format", fmt]))
    if r.lora:
        steps.append(("merge into the base model (a whole pipeline folder)",
                      ["dbooth", "merge-lora", *ws, "--run", ref]))
    return steps


def _retrain_steps(r: RunFolder, ws: list[str]) -> list[tuple[str, list[str]]]:
    verdict = judge(r)
    if verdict.tone != "warn" or r.eval is None:
        return []
    steps = (r.status.steps_done or 0) * 2 or 400
    method = "--lora" if r.lora else "--full"
    return [("train again, longer", ["dbooth", "train", *ws, method, "--steps", str(steps)])]


def _upscaler_steps(r: RunFolder, ws: list[str]) -> list[tuple[str, list[str]]]:
    steps = [("sample the latest stage-(a) run and enlarge with this upscaler",
              ["dbooth", "sample", *ws, "--upscale", "--upscaler-run", r.run.id, sample_prompt(r)])]
    for fmt in EXPORTS[r.lora]:
        clients = clients_of(fmt, r.pipeline)
        if clients:
            steps.append((f"export as {fmt} for {', '.join(clients)}",
                          ["dbooth", "export", *ws, "--upscaler", "--run", r.run.id, "--format", fmt]))
    return steps
