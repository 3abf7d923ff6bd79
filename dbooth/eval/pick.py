"""Which checkpoint to keep: the paper's trade-off between subject fidelity and prompt fidelity as a rule.

Training longer makes samples look more like the subject (DINO rises) until every prompt returns the
training photos (CLIP-T falls, and without the prior the plain class turns into the subject: PRES rises).
The rule: among the checkpoints whose CLIP-T is at least the base model's minus ``prompt_margin`` (and,
with prior preservation on, whose PRES is at most the base model's plus ``pres_margin``), the one with
the highest DINO; ties go to the earlier step. ``keys`` names the three figures for another judge (the
built-in oracle's subject fidelity, prompt fidelity and PRES).
"""

from __future__ import annotations

from dataclasses import dataclass

SUBJECT, PROMPT, DRIFT = "dino", "clip_t", "pres"


@dataclass
class Pick:
    best: str | None  # a candidate's name, or None when none passes the rule
    eligible: list[str]
    rule: str


def pick_best(candidates: dict[str, dict], base: dict, *, prompt_margin: float, pres_margin: float,
              prior: bool, keys: tuple[str, str, str] = (SUBJECT, PROMPT, DRIFT)) -> Pick:
    """``candidates``: name -> metrics, in step order; ``base``: the base model's metrics."""
    subject, prompt, drift = keys
    floor = base[prompt] - prompt_margin
    ceiling = base[drift] + pres_margin if prior else None
    rule = f"highest {subject} with {prompt} >= {floor:.4f} (base {base[prompt]:.4f} - {prompt_margin})"
    if ceiling is not None:
        rule += f" and {drift} <= {ceiling:.4f} (base {base[drift]:.4f} + {pres_margin})"
    eligible = [name for name, m in candidates.items()
                if m[prompt] >= floor and (ceiling is None or m[drift] <= ceiling)]
    best = max(eligible, key=lambda name: candidates[name][subject]) if eligible else None  # first max: earliest
    return Pick(best, eligible, rule)
