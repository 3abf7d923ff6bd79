"""``dbooth eval``: sample the base model and a run (or each of its checkpoints) at fixed seeds and score them.

Every model sees the same prompts and seeds, so the differences between columns are the training's.
The scores go to ``RUN/eval.json`` (written atomically) and the run page ``RUN/report.html`` (dbooth.runpage) is
rewritten to show them with the samples scored, kept as grids in ``RUN/eval/``; with ``checkpoints`` the rule in
``dbooth.eval.pick`` chooses one, and its name goes into ``run.json`` as ``best_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from dbooth.eval import report
from dbooth.runpage.page import refresh_run_page
from dbooth.eval.pick import pick_best
from dbooth.eval.prompt_sets import eval_prompts
from dbooth.util.fsutil import atomic_write_text
from dbooth.workspace.prompts import format_prompt
from dbooth.util.reporting import Reporter
from dbooth.workspace.folder import Run, Workspace

EVAL_FILE = "eval.json"
METRICS = ("dino", "clip_i", "clip_t", "pres", "div_dino")
FINAL = "final"
# LPIPS (the paper's DIV) needs the lpips package, which needs torchvision and downloads AlexNet weights;
# dbooth measures DIV with the DINO encoder it has loaded anyway, and names the key after it.
DIV_MEANING = "div_dino: mean pairwise 1 - cosine of DINO embeddings among one prompt's samples (the paper uses LPIPS)"
BATCH = 4


@dataclass
class EvalResult:
    path: Path
    data: dict
    report: Path | None = None


def evaluate_run(ws: Workspace, run: Run, manifest, *, checkpoints: bool = False, prompts: str | None = None,
                 reporter: Reporter | None = None) -> EvalResult:
    """Score the base model, ``run``'s final weights and (``checkpoints``) every saved checkpoint."""
    from dbooth.util.images import scan_folder

    reporter = reporter or Reporter()
    info = run.info()
    manifest = dataclasses.replace(manifest, identifier=info.get("identifier") or manifest.identifier,
                                   class_noun=info.get("class_noun") or manifest.class_noun)
    label, subject_prompts = eval_prompts(manifest, prompts)
    class_text = format_prompt(manifest.class_prompt, manifest.identifier, manifest.class_noun)
    photo_paths = scan_folder(ws.instance_dir, what="instance images", min_side=0).paths
    e = manifest.eval
    from PIL import Image

    photos = [Image.open(p).convert("RGB") for p in photo_paths]
    judge, oracle = _judges(manifest, photos, subject_prompts, reporter)  # before any pipeline: fails at once

    models: list[tuple[str, Path | None]] = [("base", None)]
    if checkpoints:
        models += [(c.name, c) for c in run.checkpoints()]
    models.append((FINAL, None))
    scores, oracle_scores, grids = {}, {}, {}
    for name, checkpoint in models:
        reporter.info(f"sampling {name}" + ("" if name == "base" else f" of run {run.id}"))
        pipe = _load(manifest, run, name, checkpoint)
        images = {p: sample_at_seeds(pipe, p, e.images_per_prompt, e.seed, manifest) for p in subject_prompts}
        class_images = sample_at_seeds(pipe, class_text, e.class_images, e.seed, manifest)
        del pipe
        grids[name] = report.save_grids(run.dir, name, images, class_images)
        scores[name] = judge.score(images, class_images)
        if oracle is not None and oracle is not judge:
            oracle_scores[name] = oracle.score(images, class_images)
        reporter.info(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores[name].items() if v is not None))

    data = {
        "run": run.id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "prompts": label,
        "prompt_list": subject_prompts,
        "class_prompt": class_text,
        "images_per_prompt": e.images_per_prompt,
        "class_images": e.class_images,
        "seed": e.seed,
        "sampling": {"scheduler": manifest.sample.scheduler, "steps": manifest.sample.steps,
                     "guidance_scale": manifest.sample.guidance_scale, "resolution": manifest.train.resolution},
        "encoders": {"dino": e.dino, "clip": e.clip} if oracle is not judge else None,
        "judge": "oracle" if oracle is judge else "encoders",
        "div": DIV_MEANING,
        "metrics": scores,
    }
    if oracle is not None and oracle is not judge:
        data["oracle"] = {"subject": oracle.subject, "metrics": oracle_scores}
    if checkpoints:
        prior = bool(info.get("class_prompt"))
        margin = e.prompt_fidelity_margin if judge.default_prompt_margin is None else judge.default_prompt_margin
        pick = pick_best({k: v for k, v in scores.items() if k != "base"}, scores["base"],
                         prompt_margin=margin, pres_margin=e.pres_margin, prior=prior, keys=judge.keys)
        data["best"] = {"checkpoint": pick.best, "rule": pick.rule, "eligible": pick.eligible}
        info = run.info()
        info["best_checkpoint"] = pick.best
        run.write_info(info)
    path = run.dir / EVAL_FILE
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    report.prune_grids(run.dir, data, grids)
    return EvalResult(path, data, refresh_run_page(run.dir, reporter))


def _judges(manifest, photos: list, prompts: list[str], reporter: Reporter):
    """The judge whose figures the table and the pick use, and the base model's own exact judge (the oracle) when
    it has one. With such a judge the DINO/CLIP encoders are optional: used when at hand, skipped when they would
    need a download. Without one they are required, and a missing one is a one-line error before any sampling."""
    from dbooth.eval.encoders import at_hand
    from dbooth.eval.judges import EncoderJudge
    from dbooth.plugins import judge_for

    e = manifest.eval
    oracle = judge_for(manifest.base_model, photos)
    if oracle is not None and not (at_hand(e.dino) and at_hand(e.clip)):
        reporter.info(f"judging with {manifest.base_model}'s oracle alone: {e.dino} and {e.clip} (eval.dino, "
                      "eval.clip) are not in the Hugging Face cache")
        return oracle, oracle
    reporter.info(f"loading judges {e.dino} and {e.clip}")
    return EncoderJudge.load(e, photos, prompts), oracle


def _load(manifest, run: Run, name: str, checkpoint: Path | None):
    from dbooth.training.restore import checkpoint_pipeline
    from dbooth.families.loading import inference_device
    from dbooth.generate.sample import load_for_sampling
    from dbooth.generate.schedulers import set_scheduler

    if checkpoint is not None:
        pipe = checkpoint_pipeline(run, checkpoint, allow_pickle=manifest.allow_pickle)
    else:
        pipe = load_for_sampling(manifest.base_model, None if name == "base" else run,
                                 allow_pickle=manifest.allow_pickle)
    set_scheduler(pipe, manifest.sample.scheduler)
    return pipe.to(inference_device())


def sample_at_seeds(pipe, prompt: str, n: int, seed: int, manifest) -> list:
    """Image ``k`` of every prompt uses seed ``seed + k``, for every model alike."""
    import torch

    from dbooth.families import family_of

    s, images = manifest.sample, []
    for start in range(0, n, BATCH):
        seeds = range(seed + start, seed + min(n, start + BATCH))
        images += pipe(
            [prompt] * len(seeds),
            negative_prompt=[s.negative_prompt] * len(seeds) if s.negative_prompt else None,
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
            height=manifest.train.resolution,
            width=manifest.train.resolution,
            generator=[torch.Generator("cpu").manual_seed(k) for k in seeds],
            **family_of(pipe).call_kwargs(manifest.train),
        ).images
    return images
