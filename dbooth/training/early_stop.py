"""``train.stop_when``: score each checkpoint as it is saved and stop once subject fidelity has peaked.

The judges and the rule are ``dbooth eval``'s (``dbooth.eval.judges``, ``dbooth.eval.pick``) on a small
budget: a few samples of the validation (or DreamBench) prompts at seeds of their own, and the base
model's figures, taken before the first step, as the reference. ``decide`` is the stopping rule as a pure
function; ``EarlyStop`` is the hook the loop calls. It records every score in ``run.json`` (``stop_when``)
with ``best_checkpoint``, and keeps the best checkpoint from being rotated away.

Importing this module loads no model library: ``check_stop_when`` runs with the training input checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dbooth.util.errors import DboothError
from dbooth.eval.pick import pick_best

FINAL = "final"
WHERE = "train.stop_when"


@dataclass
class Decision:
    stop: bool
    best: str | None  # the pick so far; None when no checkpoint passes the rule
    reason: str


def decide(scores: dict[str, dict], base: dict, *, patience: int, prompt_margin: float, pres_margin: float,
           prior: bool, keys: tuple[str, str, str]) -> Decision:
    """Stop once ``patience`` checkpoints in a row (``scores``, in step order) brought no better pick.

    The pick is ``pick_best``'s: the highest subject fidelity among the checkpoints whose prompt fidelity
    (and PRES, with the prior) stays near the base model's; a later checkpoint only replaces it by scoring
    strictly higher, so a plateau counts as "no better". Fidelity has only peaked once it has risen: while
    the pick is no better than the base model (the subject has not appeared yet), training goes on. When
    no checkpoint passes the rule for ``patience`` checkpoints, training stops too (the prompts or the class
    are already lost).
    """
    subject = keys[0]
    pick = pick_best(scores, base, prompt_margin=prompt_margin, pres_margin=pres_margin, prior=prior, keys=keys)
    names = list(scores)
    since = len(names) - 1 - names.index(pick.best) if pick.best is not None else len(names)
    if pick.best is None:
        reason = f"none of the {since} scored checkpoints passes the rule ({pick.rule})"
    elif scores[pick.best][subject] <= base[subject]:
        return Decision(False, pick.best, f"{subject} has not risen above the base model's ({base[subject]:.3f}) yet")
    else:
        reason = (f"no better checkpoint in the {since} after {pick.best} ({subject} "
                  f"{scores[pick.best][subject]:.3f}; rule: {pick.rule})")
    return Decision(since >= patience, pick.best, reason)


def replay(scores: dict[str, dict], base: dict, *, patience: int, **rule) -> tuple[int | None, Decision]:
    """Where a run whose checkpoints scored ``scores`` (in step order, each with its ``step``) stops under ``decide``:
    the step of the checkpoint after which it stops (None: it trains to the end) and that decision."""
    names = list(scores)
    for i in range(1, len(names) + 1):
        decision = decide({n: scores[n] for n in names[:i]}, base, patience=patience, **rule)
        if decision.stop:
            return scores[names[i - 1]]["step"], decision
    return None, decide(scores, base, patience=patience, **rule)


# --- model-free checks, before a run starts -----------------------------------------------------------


def judge_kind(manifest) -> str:
    """"oracle" or "encoders": what ``judge: auto`` means for this base model."""
    kind = manifest.train.stop_when.judge
    if kind == "auto":
        from dbooth.plugins import has_judge

        return "oracle" if has_judge(manifest.base_model) else "encoders"
    return kind


def stop_prompts(manifest) -> list[str]:
    """The subject prompts each checkpoint is sampled on, filled in."""
    from dbooth.eval.prompt_sets import eval_prompts

    s = manifest.train.stop_when
    narrowed = dataclasses.replace(manifest, eval=dataclasses.replace(manifest.eval, num_prompts=s.num_prompts))
    return eval_prompts(narrowed, s.prompts)[1]


def check_stop_when(manifest) -> None:
    """One-line errors for settings that cannot work, and for judges that cannot be loaded offline."""
    s, cfg = manifest.train.stop_when, manifest.train
    if not s.enabled:
        return
    from dbooth.training.distributed import num_processes

    if num_processes() > 1:
        raise DboothError(f"{WHERE}: scores checkpoints on one process only, and this run has {num_processes()}; "
                          "turn stop_when off and pick afterwards with `dbooth eval --checkpoints`")
    if not cfg.checkpoint_every or cfg.checkpoint_every >= cfg.max_steps:
        raise DboothError(f"{WHERE}: scores checkpoints, but train.checkpoint_every is {cfg.checkpoint_every} with "
                          f"max_steps {cfg.max_steps}, so none is saved before the end; set checkpoint_every "
                          "below max_steps (e.g. a fifth of it) or turn stop_when off")
    kind = judge_kind(manifest)
    from dbooth.plugins import has_judge, named_model

    if kind == "oracle" and not has_judge(manifest.base_model):
        raise DboothError(f"{WHERE}.judge: the oracle judges only the built-in world, and the base model is "
                          f"{manifest.base_model}; use judge: auto or encoders")
    prompts = stop_prompts(manifest)
    if not prompts:
        raise DboothError(f"{WHERE}: prompts is validation and train.validation_prompts is empty; add prompts "
                          "there or set prompts: dreambench")
    if kind == "oracle":
        model = named_model(manifest.base_model)
        if model.scene_of is not None and not any(model.scene_of(p) for p in prompts):
            raise DboothError(f"{WHERE}: the oracle measures prompt fidelity by the scene a prompt names, and none "
                              f"of {prompts} names one; add e.g. '{{identifier}} {{class}} {model.scene_hint}' to "
                              "train.validation_prompts")
    else:
        _require_local(manifest.eval.dino, "DINO model", "eval.dino")
        _require_local(manifest.eval.clip, "CLIP model", "eval.clip")


def _require_local(name: str, what: str, setting: str) -> None:
    """Offline (HF_HUB_OFFLINE), a judge must be a folder or in the Hugging Face cache: checked without loading it."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise DboothError(f"{WHERE}: {what} {folder} has no config.json; point {setting} at a transformers "
                              "model folder, or turn stop_when off")
        return
    from dbooth.util.hub import offline

    if not offline():
        return  # loaded (and, if need be, downloaded) before the first step; a failure is one line then
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise DboothError(f"{WHERE}: {what} {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                          f"set; download it once while online (huggingface-cli download {name}), set {setting} "
                          "to a local folder, or turn stop_when off")


def prompt_margin(configured: float | None, judge, eval_margin: float) -> float:
    """The prompt-fidelity margin: ``train.stop_when.prompt_fidelity_margin`` when set, else the judge's
    own default (the oracle's shares need a wider one than CLIP-T's cosines), else ``eval``'s."""
    if configured is not None:
        return configured
    own = getattr(judge, "default_prompt_margin", None)
    return eval_margin if own is None else own


# --- the hook -------------------------------------------------------------------------------------------


class EarlyStop:
    """Scores the base model before the first step and each checkpoint as it is saved; says when to stop."""

    def __init__(self, manifest, judge, prompts: list[str], class_text: str, reporter):
        s = manifest.train.stop_when
        self.manifest, self.judge, self.prompts, self.class_text = manifest, judge, prompts, class_text
        self.reporter = reporter
        self.prior = manifest.prior.enabled
        self.margin = prompt_margin(s.prompt_fidelity_margin, judge, manifest.eval.prompt_fidelity_margin)
        self.record: dict = {
            "judge": type(judge).__name__, "keys": list(judge.keys), "prompts": prompts,
            "images_per_prompt": s.images_per_prompt, "class_images": s.class_images if self.prior else 0,
            "seed": s.seed, "patience": s.patience, "prompt_fidelity_margin": self.margin,
            "pres_margin": manifest.eval.pres_margin, "base": None, "scores": {}, "best": None,
        }
        self.run = self.info = None

    @classmethod
    def prepare(cls, ws, manifest, reporter) -> "EarlyStop | None":
        """Load the judge (before the base model: a missing one fails in seconds); None when stop_when is off."""
        if not manifest.train.stop_when.enabled:
            return None
        from PIL import Image

        from dbooth.eval.judges import EncoderJudge
        from dbooth.plugins import judge_for
        from dbooth.util.images import scan_folder
        from dbooth.workspace.prompts import format_prompt

        prompts = stop_prompts(manifest)
        paths = scan_folder(ws.instance_dir, what="instance images", min_side=0).paths
        photos = [Image.open(p).convert("RGB") for p in paths]
        if judge_kind(manifest) == "oracle":
            judge = judge_for(manifest.base_model, photos)
            if judge is None:
                raise DboothError(f"{WHERE}: the oracle does not see one of the built-in example subjects in "
                                  f"{ws.instance_dir}, so it cannot judge them; set {WHERE}.judge: encoders")
        else:
            reporter.info(f"loading judges {manifest.eval.dino} and {manifest.eval.clip} for {WHERE}")
            judge = EncoderJudge.load(manifest.eval, photos, prompts)
        class_text = format_prompt(manifest.class_prompt, manifest.identifier, manifest.class_noun)
        return cls(manifest, judge, prompts, class_text, reporter)

    def attach(self, run, info: dict, resumed=None) -> None:
        """Keep the record in ``info`` (the run's run.json), continuing a resumed run's."""
        previous = (resumed.info().get("stop_when") if resumed is not None else None) or {}
        for key in ("base", "scores", "best"):
            if previous.get(key) is not None:
                self.record[key] = previous[key]
        info["stop_when"] = self.record
        info["best_checkpoint"] = self.record["best"]
        self.run, self.info = run, info

    def protected(self) -> set[str]:
        """Checkpoints the rotation must keep: the best so far."""
        best = self.record["best"]
        return {best} if best and best != FINAL else set()

    def begin(self, session, step: int = 0) -> bool:
        """The base model's figures, once, before the first step (the adapters and weights are untouched).
        A run resumed from a checkpoint that was saved but never scored (stopped between the two) scores it
        now: the weights are that checkpoint's. True: that score says stop."""
        from dbooth.training.state import checkpoint_name

        if self.record["base"] is None:
            self.record["base"] = self._score(session)
            self.reporter.info(f"{WHERE}: base model " + _figures(self.record["base"], self.judge.keys))
            self.run.write_info(self.info)
        name = checkpoint_name(step)
        if step and name not in self.record["scores"] and (self.run.checkpoints_dir / name).is_dir():
            return self.after_checkpoint(session, step)
        return False

    def after_checkpoint(self, session, step: int, *, final: bool = False) -> bool:
        """Score the weights at ``step`` (a checkpoint, or the ``final`` step); True: stop training now."""
        from dbooth.training.state import checkpoint_name

        name = FINAL if final else checkpoint_name(step)
        self.record["scores"][name] = {"step": step, **self._score(session)}
        s = self.manifest.train.stop_when
        decision = decide(self.record["scores"], self.record["base"], patience=s.patience,
                          prompt_margin=self.margin, pres_margin=self.manifest.eval.pres_margin, prior=self.prior,
                          keys=self.judge.keys)
        self.record["best"] = self.info["best_checkpoint"] = decision.best
        self.reporter.info(f"{WHERE}: {name} " + _figures(self.record["scores"][name], self.judge.keys)
                           + f"; best so far {decision.best or 'none'}")
        stop = decision.stop and not final
        if stop:
            self.record["stopped"] = {"step": step, "reason": decision.reason}
            self.reporter.info(f"stopping at step {step} of {self.manifest.train.max_steps}: {decision.reason}")
        self.run.write_info(self.info)
        return stop

    def _score(self, session) -> dict:
        import torch

        from dbooth.eval.evaluate import sample_at_seeds
        from dbooth.training.ema import ema_applied
        from dbooth.training.validation import trained_view

        s, m = self.manifest.train.stop_when, self.manifest
        with ema_applied(session.ema, m.train.ema.use_for_output), \
                trained_view(session.accelerator, session.pipe, session.models, m) as view, \
                torch.no_grad(), session.accelerator.autocast():
            images = {p: sample_at_seeds(view, p, s.images_per_prompt, s.seed, m) for p in self.prompts}
            class_images = sample_at_seeds(view, self.class_text, s.class_images, s.seed, m) if self.prior else []
        return self.judge.score(images, class_images)


def _figures(scores: dict, keys) -> str:
    return ", ".join(f"{k} {scores[k]:.3f}" if scores.get(k) is not None else f"{k} -" for k in keys)
