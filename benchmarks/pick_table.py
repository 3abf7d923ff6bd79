"""The picked checkpoint against the fixed-step run, on the built-in model (BENCHMARKS.md, "Picking the checkpoint").

For each example subject: the demo's settings with prior preservation (full fine-tune, lr 1e-4, batch 2,
text encoder trained, 50 class images, scene captions), trained for ``--steps`` with a checkpoint every 100
steps and ``train.stop_when`` scoring each one with the oracle on *picking* prompts and seeds (a scene
no photo and no test prompt shows, plus the bare instance prompt; seeds 1000+). Every checkpoint is then
judged on the demo's *held-out* test (four other scenes, 6 samples each at seeds 0-5, 12 class samples),
which the picker never sees (only the checkpoints the table reports are judged there). patience is set high so every checkpoint is scored; where patience 2 would
have stopped is recomputed from the recorded scores with the same rule (``dbooth.training.early_stop.decide``).

    OMP_NUM_THREADS=1 nice python benchmarks/pick_table.py --out /tmp/pick --json pick-table.json

Variant B (``--rescore B.json``, afterwards, on the kept checkpoints): the picker samples the test's own
four scenes at other seeds (3 each, seeds 1000-1002, and 6 class samples) instead, with the same rule; the test samples (seeds 0-5) stay unseen.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

PICK_PROMPTS = ["a photo of a {identifier} {class} with a wheat field in the background",
                "a photo of a {identifier} {class}"]
PICK = {"train.stop_when.enabled": True, "train.stop_when.patience": 100, "train.stop_when.images_per_prompt": 6,
        "train.stop_when.class_images": 6, "train.stop_when.seed": 1000,
        "train.stop_when.prompt_fidelity_margin": 0.25, "train.validation_prompts": PICK_PROMPTS}


def held_out(ws, run, checkpoint, oracle, subject: str, seed: int = 0, n: int = 6, class_n: int = 12) -> dict:
    """The demo's test: four held-out scenes x 6 samples (seeds 0-5), 12 class samples, judged by the oracle.

    ``run`` None: the base model. Another ``seed`` gives the same prompts on other samples (variant B's picking).
    """
    from dbooth_shapes.demo import HELD_OUT_CONTEXTS, _sample
    from dbooth.training.restore import checkpoint_pipeline
    from dbooth.workspace.prompts import format_prompt
    from dbooth.generate.sample import load_for_sampling
    from dbooth.generate.schedulers import set_scheduler

    m = ws.manifest()
    pipe = checkpoint_pipeline(run, checkpoint) if checkpoint else load_for_sampling(m.base_model, run)
    pipe.set_progress_bar_config(disable=True)
    set_scheduler(pipe, m.sample.scheduler)
    images, contexts = [], []
    for ctx in HELD_OUT_CONTEXTS:
        prompt = format_prompt(f"a photo of a {{identifier}} {{class}} {ctx}", m.identifier, m.class_noun)
        images += _sample(pipe, prompt, n, seed, m)
        contexts += [ctx] * n
    klass = _sample(pipe, format_prompt(m.class_prompt, m.identifier, m.class_noun), class_n, seed, m)
    return {"subject_fidelity": round(oracle.subject_fidelity(images, subject), 4),
            "prompt_fidelity": round(oracle.prompt_fidelity(images, contexts), 4),
            "pres": round(oracle.pres(klass, subject), 4)}


def one_subject(out: Path, subject: str, steps: int, log, learning_rate: float | None = None,
                extra: dict | None = None, masks: bool = False, judge_all: bool = False) -> dict:
    from dbooth import api
    from dbooth_shapes.oracle import Oracle
    from dbooth.workspace.config import apply_overrides, write_manifest
    from dbooth_shapes.demo import DEMO_LEARNING_RATES
    from dbooth.training.early_stop import replay

    ws_path = out / subject
    shutil.rmtree(ws_path, ignore_errors=True)
    ws = api.init(ws_path, None, example=subject)
    if masks:  # each photo's subject mask beside it: masked loss learns the object, not the scene
        from dbooth_shapes.examples import write_example_masks
        from PIL import Image

        photos = sorted(ws.instance_dir.glob(f"{subject}_*.png"))
        side = Image.open(photos[0]).size[0]
        write_example_masks(subject, ws.instance_dir, len(photos), side)
    settings = {"train.method": "full", "prior.enabled": True, "train.learning_rate": learning_rate or DEMO_LEARNING_RATES["full"],
                "train.max_steps": steps, "train.checkpoint_every": 100, "train.keep_checkpoints": 100, **PICK,
                **(extra or {})}
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), settings))
    t = time.time()
    api.prior(ws)
    result = api.train(ws)
    train_seconds = time.time() - t
    run, info = result.run, result.run.info()
    record = info["stop_when"]
    keys = tuple(record["keys"])
    oracle = Oracle.load()
    names = list(record["scores"])
    rule = dict(prompt_margin=record["prompt_fidelity_margin"], pres_margin=record["pres_margin"], prior=True, keys=keys)
    stopped_at, d = replay(record["scores"], record["base"], patience=2, **rule)
    early = {"stopped_at": stopped_at, "best": d.best, "reason": d.reason if stopped_at is not None else "ran to the end"}
    fixed = "step-000600" if "step-000600" in names else "final"
    t = time.time()
    test = {}  # only the checkpoints the table reports (the CPU is shared), or with judge_all every one
    for name in dict.fromkeys([fixed, info["best_checkpoint"], early["best"], "final", *(names if judge_all else [])]):
        if name is None:
            continue
        checkpoint = None if name == "final" else run.checkpoints_dir / name
        test[name] = held_out(ws, run, checkpoint, oracle, subject)
        log(f"{subject} {name}: pick {record['scores'][name]} test {test[name]}")
    eval_seconds = time.time() - t
    return {"subject": subject, "run": run.id, "pick_scores": record["scores"], "pick_base": record["base"],
            "best": info["best_checkpoint"], "early_stop_patience_2": early, "held_out": test, "fixed_600": fixed,
            "train_and_pick_seconds": round(train_seconds, 1), "held_out_seconds": round(eval_seconds, 1)}


PICK_B = {"seed": 1000, "n": 3, "class_n": 6}  # the picker's budget as in variant A: 12 subject, 6 class samples
KEYS = ("subject_fidelity", "prompt_fidelity", "pres")
RULE = {"prompt_margin": 0.25, "pres_margin": 0.1, "prior": True, "keys": KEYS}  # the pre-set rule of the tables


def _early_record(stopped_at: int | None, decision) -> dict:
    if stopped_at is None:
        return {"stopped_at": None, "best": decision.best}
    return {"stopped_at": stopped_at, "best": decision.best, "reason": decision.reason}


def rescore(out: Path, table: Path, result_path: Path, log) -> None:
    """Variant B: pick on the held-out test's prompts at other seeds (1000+), then judge the picks at 0-5."""
    from dbooth_shapes.oracle import Oracle
    from dbooth.training.early_stop import decide, replay
    from dbooth.workspace.folder import Workspace, find_run

    data = json.loads(table.read_text())
    oracle = Oracle.load()
    rows = []
    for r in data["results"]:
        t = time.time()
        ws = Workspace(out / r["subject"])
        run = find_run(ws, r["run"])
        base = held_out(ws, None, None, oracle, r["subject"], **PICK_B)
        scores = {}
        for name, first in r["pick_scores"].items():
            checkpoint = None if name == "final" else run.checkpoints_dir / name
            scores[name] = {"step": first["step"], **held_out(ws, run, checkpoint, oracle, r["subject"], **PICK_B)}
            log(f"{r['subject']} B {name}: {scores[name]}")
        best = decide(scores, base, patience=100, **RULE).best
        early = _early_record(*replay(scores, base, patience=2, **RULE))
        # variant A's early stop, recomputed with the current rule from the recorded scores
        a_early = _early_record(*replay(r["pick_scores"], r["pick_base"], patience=2, **RULE))
        test = dict(r["held_out"])
        for name in (best, early["best"], a_early["best"]):
            if name is not None and name not in test:
                checkpoint = None if name == "final" else run.checkpoints_dir / name
                test[name] = held_out(ws, run, checkpoint, oracle, r["subject"])
        rows.append({"subject": r["subject"], "pick_base": base, "pick_scores": scores, "best": best,
                     "early_stop_patience_2": early, "a_early_stop_patience_2": a_early, "held_out": test, "seconds": round(time.time() - t, 1)})
        result_path.write_text(json.dumps({"results": rows}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--subjects", default="checkered_star,polka_circle,split_square,striped_heart")
    parser.add_argument("--rescore", type=Path, help="variant B: read --json, write this file")
    parser.add_argument("--lr", type=float, help="learning rate (default: the demo's, 1e-4)")
    parser.add_argument("--masks", action="store_true", help="write each photo's subject mask (masked loss)")
    parser.add_argument("--judge-all", action="store_true",
                        help="judge every checkpoint on the held-out test, not only the ones the table reports")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a further manifest override, e.g. train.text_encoder_learning_rate=5e-5 (repeatable)")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    if args.rescore:
        return rescore(args.out, args.json, args.rescore, lambda line: print(line, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    started = time.time()
    for subject in args.subjects.split(","):
        results.append(one_subject(args.out, subject, args.steps, lambda line: print(line, flush=True), args.lr,
                                   extra, args.masks, args.judge_all))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "learning_rate": args.lr, "overrides": extra,
                                         "masks": args.masks,
                                         "wall_seconds": round(time.time() - started, 1)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
