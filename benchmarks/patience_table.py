"""How long ``train.stop_when`` should wait: early stopping at each patience, recomputed from recorded scores.

Reads the picking tables' raw JSON (``benchmarks/pick_table.py``: every checkpoint of a 1,000-step run scored
by the picker, and the held-out test of the checkpoints those tables report) and applies the stopping rule
(``dbooth.training.early_stop.decide``, the margins the tables used) at patience 1..N as if training had stopped
there. For each patience: how often the early-stop pick is the pick over the whole run, the mean held-out
subject fidelity of the picks, and the steps saved. Nothing is trained or sampled, so it runs in seconds.

    python benchmarks/patience_table.py --json patience-table.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pick_table import RULE  # the tables' rule and margins (this folder is on the path when run as a script)

HERE = Path(__file__).parent
TABLES = {  # the picking runs with a checkpoint every 100 steps and all checkpoints scored
    "lr 1e-4, 64 px photos, variant A": ["cpu-2026-12-01/pick-table-a.json"],
    "lr 1e-4, 64 px photos, variant B": ["cpu-2026-12-01/pick-table-b.json"],
    "lr 1e-4, 256 px photos, variant A": ["cpu-2026-12-01/pick-table-256px-a1.json",
                                          "cpu-2026-12-01/pick-table-256px-a2.json"],
    "lr 2e-4, variant A": ["cpu-2026-12-02/pick-table-lr2e-4-a.json", "cpu-2026-12-02/pick-table-lr2e-4-b.json"],
    "lr 2e-4, variant B": ["cpu-2026-12-02/pick-table-lr2e-4-a-B.json", "cpu-2026-12-02/pick-table-lr2e-4-b-B.json"],
}


def early_stop(scores: dict[str, dict], base: dict, patience: int) -> tuple[int | None, str | None]:
    """(the step training stops at, or None when it runs to the end; the pick at that point)."""
    from dbooth.training.early_stop import replay

    stopped_at, decision = replay(scores, base, patience=patience, **RULE)
    return stopped_at, decision.best


def run_rows(tables: dict[str, list[str]]) -> list[dict]:
    rows = []
    for label, files in tables.items():
        for name in files:
            for r in json.loads((HERE / name).read_text())["results"]:
                scores, base = r["pick_scores"], r["pick_base"]
                last = scores[list(scores)[-1]]["step"]
                end = early_stop(scores, base, patience=len(scores) + 1)[1]
                rows.append({"table": label, "subject": r["subject"], "steps": last, "end_pick": end,
                             "held_out": {k: v["subject_fidelity"] for k, v in r["held_out"].items()},
                             "by_patience": {}})
                for p in range(1, len(scores) + 1):
                    stop, pick = early_stop(scores, base, p)
                    rows[-1]["by_patience"][p] = {"stopped_at": stop, "pick": pick}
    return rows


def summary(rows: list[dict], max_patience: int) -> list[dict]:
    out = []
    for p in range(1, max_patience + 1):
        picks = [(r, r["by_patience"][p]) for r in rows]
        known = [r["held_out"][e["pick"]] for r, e in picks if e["pick"] in r["held_out"]]
        saved = [r["steps"] - (e["stopped_at"] or r["steps"]) for r, e in picks]
        same = sum(e["pick"] == r["end_pick"] for r, e in picks)
        out.append({"patience": p, "runs": len(picks), "same_pick_as_whole_run": same,
                    "held_out_known": len(known), "held_out_subject_fidelity": sum(known) / max(len(known), 1),
                    "mean_steps_saved": sum(saved) / len(saved),
                    "mean_steps": sum(r["steps"] for r in rows) / len(rows)})
    whole = [r["held_out"][r["end_pick"]] for r in rows]
    out.append({"patience": "whole run", "runs": len(rows), "same_pick_as_whole_run": len(rows),
                "held_out_known": len(whole), "held_out_subject_fidelity": sum(whole) / len(whole),
                "mean_steps_saved": 0.0, "mean_steps": sum(r["steps"] for r in rows) / len(rows)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-patience", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = run_rows(TABLES)
    table = summary(rows, args.max_patience)
    print("| patience | same pick as over the whole run | held-out subject fidelity of the picks (known) "
          "| steps saved (of ~1,000) |")
    print("|---|---|---|---|")
    for t in table:
        print(f"| {t['patience']} | {t['same_pick_as_whole_run']}/{t['runs']} | {t['held_out_subject_fidelity']:.3f} "
              f"({t['held_out_known']}/{t['runs']}) | {t['mean_steps_saved']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"summary": table, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
