"""BENCHMARKS.md "Stage (b) on the built-in model": generic builtin:shapes-x4 against one fine-tuned per subject.

    python benchmarks/stage_b_table.py --out /tmp/stageb/bench --json /tmp/stageb/bench.json \\
        --subjects checkered_star,polka_circle

For each example subject: a workspace from ``dbooth init --example`` (its manifest's upscaler settings), stage
(b) trained with ``api.train(..., upscaler=True)`` (``--steps``/``--lr``/``--prior`` override), then
``dbooth_shapes.upscaler_eval`` for bicubic, the base upscaler and the fine-tuned one on the same
rendered 64 px inputs (a perfect stage-(a) stand-in), subject prompts naming the identifier.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def measure(subject: str, out: Path, *, steps: int | None, lr: float | None, prior: bool | None, method: str | None,
            scenes: int, seed: int, reuse: bool = False) -> dict:
    import torch

    from dbooth import api
    from dbooth_shapes.upscaler_eval import BICUBIC, evaluate_upscaler
    from dbooth.generate.sample import load_for_sampling

    ws_path = out / subject
    if reuse:  # measure the workspace's latest upscaler run again (another --seed)
        from dbooth.workspace.folder import find_run, open_workspace

        ws = open_workspace(ws_path)
        run = find_run(ws, stage="upscaler")
        row = {"steps": run.info().get("steps"), "run": run.id}
    else:
        shutil.rmtree(ws_path, ignore_errors=True)
        ws = api.init(ws_path, None, example=subject)
        overrides = {k: v for k, v in {"train.max_steps": steps, "train.learning_rate": lr, "train.method": method,
                                       "prior.enabled": prior}.items() if v is not None}
        if ws.manifest().upscaler.prior if prior is None else prior:
            api.prior(ws)
        result = api.train(ws, overrides, upscaler=True)
        run = result.run
        row = {"steps": result.steps, "train_seconds": round(result.seconds, 1), "run": run.id}
    manifest = ws.manifest()
    for label, which in ((BICUBIC, None), ("base", None), ("finetuned", run)):
        up = BICUBIC if label == BICUBIC else load_for_sampling(manifest.upscaler.base, which)
        if label != BICUBIC:
            up.set_progress_bar_config(disable=True)
        with torch.no_grad():
            found = evaluate_upscaler(up, num_world=0, per_subject=scenes, subjects=[subject],
                                      identifier=manifest.identifier, seed=seed,
                                      noise_level=manifest.upscaler.noise_level)
        row[label] = found["subjects"][subject]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--subjects", default="checkered_star,polka_circle,split_square,striped_heart")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--prior", choices=("on", "off"), default=None)
    p.add_argument("--method", choices=("full", "lora"), default=None)
    p.add_argument("--scenes", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="measure the workspaces' latest upscaler runs, no training")
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {}
    for subject in a.subjects.split(","):
        t = time.time()
        results[subject] = measure(subject, a.out, steps=a.steps, lr=a.lr, method=a.method,
                                   prior=None if a.prior is None else a.prior == "on", scenes=a.scenes, seed=a.seed,
                                   reuse=a.reuse)
        results[subject]["wall_seconds"] = round(time.time() - t, 1)
        print(json.dumps({subject: results[subject]}), flush=True)
    a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
