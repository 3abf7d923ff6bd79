"""The run page's evaluation section: every figure of eval.json, the best checkpoint marked, each figure against
the step, and the grids of base, best and final (only those that exist) linked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import fake_run
import pytest

from dbooth.runpage import eval_view
from dbooth.runpage.run_folder import read_run_folder

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def run(tmp_path):
    ws = fake_run.workspace(tmp_path / "ws")
    return fake_run.run_folder(ws)


def _section(run, data) -> str:
    fake_run.evaluation(run, data)
    return eval_view.eval_section(read_run_folder(run))


def test_the_section_holds_every_figure_of_eval_json_and_marks_the_best(run):
    data = fake_run.eval_data()
    section = _section(run, data)
    values = [v for m in data["metrics"].values() for v in m.values()]
    values += [v for m in data["oracle"]["metrics"].values() for v in m.values()]
    for v in values:
        assert (f"{v:.4f}" if v is not None else "<td>-</td>") in section
    assert "<th class=best>step-000020 (best)</th>" in section and "highest dino with clip_t &gt;= 0.2904" in section
    assert "oracle subject_fidelity" in section and "<svg" in section


def test_without_a_pick_nothing_is_called_best(run):
    plain = _section(run, fake_run.eval_data(best=False, oracle=False))
    assert "(best)" not in plain and "oracle" not in plain and "Best checkpoint" not in plain
    assert "none passes the rule" in _section(run, fake_run.eval_data(best=None))


def test_each_figure_is_drawn_against_the_step(run):
    data = fake_run.eval_data()
    section = _section(run, data)
    panels = re.findall(r"<svg.*?</svg>", section, re.S)
    titles = [ET.fromstring(p).find(SVG + "text").text for p in panels]
    assert titles == ["DINO: subject fidelity", "CLIP-I: subject fidelity", "CLIP-T: prompt fidelity",
                      "PRES: class drift (lower is better)"]
    for panel in panels:
        steps = {c.get("data-name"): int(c.get("data-step")) for c in ET.fromstring(panel).iter(SVG + "circle")}
        assert steps == {"base": 0, "step-000020": 20, "final": 40}  # final: run.json's steps
    dino = {c.get("data-name"): float(c.get("data-value")) for c in ET.fromstring(panels[0]).iter(SVG + "circle")}
    assert dino == {n: m["dino"] for n, m in data["metrics"].items()}
    assert eval_view.model_steps(["base", "step-000100", "final", "odd"], None) == {"base": 0, "step-000100": 100}


def test_the_grids_of_base_best_and_final_are_linked_and_a_missing_one_is_not(run):
    data = fake_run.eval_data()
    section = _section(run, data)
    srcs = [unquote(s) for s in re.findall(r'<img src="([^"]+)"', section)]
    assert len(srcs) == 3 * (len(data["prompt_list"]) + 1)
    assert all((run / s).is_file() for s in srcs)
    assert {re.fullmatch(r"eval/grid-[^-]+-(.+)\.png", s).group(1) for s in srcs} == {"base", "step-000020", "final"}
    (run / "eval" / "grid-class-final.png").unlink()
    section = eval_view.eval_section(read_run_folder(run))
    assert "eval/grid-class-final.png" not in section and "eval/grid-class-base.png" in section
    assert '<td>a sks dog &lt;on&gt; the &quot;beach&quot; &amp; more</td>' in section  # prompts are escaped


def test_oracle_judged_evals_get_their_own_panels_and_glossary(run):
    from dbooth.runpage.files_view import glossary_section

    metrics = {n: {"subject_fidelity": s, "prompt_fidelity": 1.0, "pres": 0.0, "div": 0.25}
               for n, s in (("base", 0.0), ("step-000020", 0.4), ("final", 0.6))}
    data = dict(fake_run.eval_data(oracle=False), metrics=metrics, encoders=None, judge="oracle")
    section = _section(run, data)
    titles = [ET.fromstring(p).find(SVG + "text").text for p in re.findall(r"<svg.*?</svg>", section, re.S)]
    assert titles == ["subject fidelity", "prompt fidelity", "PRES: class drift (lower is better)"]
    words = glossary_section(read_run_folder(run))
    assert "recognises as your subject" in words and "wrong shape" in words and "DINO ViT" not in words
