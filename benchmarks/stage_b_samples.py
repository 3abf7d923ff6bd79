"""BENCHMARKS.md "Stage (b) on real stage-(a) samples": the demo's stage (a) + each upscaler, judged by the oracle.

    OMP_NUM_THREADS=1 python benchmarks/stage_b_samples.py --out /tmp/stageb-samples --json samples.json \\
        --subjects checkered_star,polka_circle

For each example subject, ``dbooth demo --upscale`` (``run_demo`` with ``upscale=True``, the demo's defaults):
stage (a) trained and sampled on the four held-out contexts (6 samples each) and the class prompt (12), then
stage (b) fine-tuned; the oracle judges the stage-(a) samples as they are and enlarged by bicubic, the base
upscaler and the fine-tuned one (subject fidelity, PRES). The rendered-stand-in measures (detail recovery,
PSNR, class detail error) come along from the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COLUMNS = ("stage_a", "bicubic", "base", "finetuned")


def measure(subject: str, out: Path, seed: int) -> dict:
    from dbooth_shapes.demo import DemoSettings, run_demo

    result = run_demo(out / subject, DemoSettings(subject=subject, upscale=True, evaluate_base=False, seed=seed))
    m = result.metrics
    return {"stage_a": {k: m[k] for k in ("subject_fidelity", "prompt_fidelity", "pres")}, "stage_b": m["stage_b"]}


def table(results: dict[str, dict]) -> str:
    lines = ["| subject | stage (a), 64 px | + bicubic | + base upscaler | + fine-tuned upscaler |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        o = r["stage_b"]["oracle"]
        lines.append(f"| {name} | " + " | ".join(f"{o[c]['subject_fidelity']:.2f} / {o[c]['pres']:.2f}"
                                                for c in COLUMNS) + " |")
    means = {c: [sum(r["stage_b"]["oracle"][c][k] for r in results.values()) / len(results)
                 for k in ("subject_fidelity", "pres")] for c in COLUMNS}
    lines.append("| mean | " + " | ".join(f"{means[c][0]:.3f} / {means[c][1]:.3f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--subjects", default="checkered_star,polka_circle,split_square,striped_heart")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {}
    for subject in a.subjects.split(","):
        t = time.time()
        results[subject] = measure(subject, a.out, a.seed)
        results[subject]["wall_seconds"] = round(time.time() - t, 1)
        print(json.dumps({subject: results[subject]["stage_b"]["oracle"]}), flush=True)
    a.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
