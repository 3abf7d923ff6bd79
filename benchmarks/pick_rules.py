"""Picking rules scored against a whole held-out curve (BENCHMARKS.md, "Every checkpoint judged").

Reads ``benchmarks/pick_table.py --judge-all`` output (every checkpoint judged on the held-out test) and, if
given, its ``--rescore`` file (variant B's picking scores), and reports for each subject where each rule's pick
lands on the held-out test:

- ``A`` / ``B``: dbooth's rule (``dbooth.eval.pick``: highest subject fidelity whose prompt fidelity and PRES stay
  within the margins of the base model's) on variant A's or B's picking scores;
- ``A smoothed`` / ``B smoothed``: the same rule on scores averaged with the neighbouring checkpoints' (a window
  of three), which a 12-sample picker might need;
- ``ceiling``: the best checkpoint on the held-out test itself among those with held-out prompt fidelity >= 0.7
  (what a perfect picker could reach on this run; no rule sees these samples).

    python benchmarks/pick_rules.py A-half1.json A-half2.json --rescored B-half1.json B-half2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pick_table import KEYS, RULE  # the tables' rule and margins (this folder is on the path when run as a script)

PROMPT_FLOOR = 0.7  # issue 12's line for prompt fidelity


def smoothed(scores: dict[str, dict], width: int = 1) -> dict[str, dict]:
    """Each checkpoint's scores averaged with up to ``width`` neighbours on each side."""
    names = list(scores)
    out = {}
    for i, name in enumerate(names):
        window = names[max(0, i - width):i + width + 1]
        out[name] = {"step": scores[name]["step"],
                     **{k: sum(scores[n][k] for n in window) / len(window) for k in KEYS}}
    return out


def pick(scores: dict[str, dict], base: dict) -> str | None:
    from dbooth.eval.pick import pick_best

    return pick_best(scores, base, **RULE).best


def ceiling(test: dict[str, dict]) -> str | None:
    """The earliest of the checkpoints with the highest held-out subject fidelity at prompt fidelity >= 0.7."""
    allowed = [n for n in test if test[n]["prompt_fidelity"] >= PROMPT_FLOOR]
    return max(allowed, key=lambda n: (test[n]["subject_fidelity"], -list(test).index(n)), default=None)


def rows(judged: list[Path], rescored: list[Path]) -> list[dict]:
    b_rows = {r["subject"]: r for f in rescored for r in json.loads(f.read_text())["results"]}
    out = []
    for f in judged:
        for r in json.loads(f.read_text())["results"]:
            names = list(r["pick_scores"])
            missing = [n for n in names if n not in r["held_out"]]
            if missing:
                raise SystemExit(f"{f}: {r['subject']} has checkpoints not judged on the test ({missing[0]}, ...); "
                                 "run pick_table.py with --judge-all")
            test = {n: r["held_out"][n] for n in names}
            picks = {"A": pick(r["pick_scores"], r["pick_base"]),
                     "A smoothed": pick(smoothed(r["pick_scores"]), r["pick_base"])}
            if r["subject"] in b_rows:
                b = b_rows[r["subject"]]
                picks |= {"B": pick(b["pick_scores"], b["pick_base"]),
                          "B smoothed": pick(smoothed(b["pick_scores"]), b["pick_base"])}
            picks |= {"fixed 600": "step-000600", "final": "final", "ceiling": ceiling(test)}
            out.append({"subject": r["subject"], "picks": picks,
                        "test": {k: test[n] if n else None for k, n in picks.items()},
                        "curve": {n: [test[n]["subject_fidelity"], test[n]["prompt_fidelity"]] for n in names}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("judged", nargs="+", type=Path, help="pick_table.py --judge-all JSON files")
    parser.add_argument("--rescored", nargs="*", type=Path, default=[], help="their --rescore JSON files")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    table = rows(args.judged, args.rescored)
    rules = list(table[0]["picks"])
    print("| subject | " + " | ".join(rules) + " |")
    print("|---|" + "---|" * len(rules))
    for r in table:
        cells = []
        for rule in rules:
            name, t = r["picks"][rule], r["test"][rule]
            cells.append("-" if t is None else
                         f"{name.replace('step-000', '').replace('step-00', '')}: {t['subject_fidelity']:.2f} / "
                         f"{t['prompt_fidelity']:.2f}")
        print(f"| {r['subject']} | " + " | ".join(cells) + " |")
    means = []
    for rule in rules:
        got = [r["test"][rule]["subject_fidelity"] for r in table if r["test"][rule] is not None]
        means.append(f"{sum(got) / len(got):.3f}" if len(got) == len(table) else "-")
    print("| mean | " + " | ".join(means) + " |")
    for r in table:
        print(f"{r['subject']} held-out curve (subject / prompt by checkpoint): "
              + " ".join(f"{s:.2f}/{p:.2f}" for s, p in r["curve"].values()))
    if args.json:
        args.json.write_text(json.dumps({"rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
