"""Stage (a) with the demo's defaults for each example subject, judged by the oracle (BENCHMARKS.md).

    OMP_NUM_THREADS=1 python benchmarks/stage_a_table.py --out /tmp/stage-a --json stage-a.json

``run_demo`` per subject (prior on, full fine-tune, 600 steps, the demo's held-out test: four contexts x 6
samples, 12 class samples), without re-scoring the base model. The built-in model is whichever
``builtin:shapes`` the imported dbooth ships, so a candidate model is measured by running this from a
checkout whose dbooth_shapes/shapes holds it (PYTHONPATH=that checkout).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SUBJECTS = "checkered_star,polka_circle,split_square,striped_heart"
KEYS = ("subject_fidelity", "prompt_fidelity", "pres", "div")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--subjects", default=SUBJECTS)
    a = p.parse_args()
    import torch

    from dbooth_shapes.demo import DemoSettings, run_demo

    torch.set_num_threads(1)
    results = {}
    for subject in a.subjects.split(","):
        t = time.time()
        m = run_demo(a.out / subject, DemoSettings(subject=subject, evaluate_base=False)).metrics
        results[subject] = {**{k: m[k] for k in KEYS}, "wall_seconds": round(time.time() - t, 1)}
        print(subject, results[subject], flush=True)
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    for k in KEYS:
        print(k, round(sum(r[k] for r in results.values()) / len(results), 3))


if __name__ == "__main__":
    main()
