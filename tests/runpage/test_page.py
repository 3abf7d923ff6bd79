"""The run page as a whole: built from the run folder's files alone, every image and link on it resolves, each
section is there exactly when its data is, and writing it again gives the same page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import fake_run
import pytest
from page_refs import assert_everything_resolves

from dbooth.runpage.page import SECTIONS, write_run_page


@pytest.fixture
def ws(tmp_path) -> Path:
    return fake_run.workspace(tmp_path / "ws")


def full_run(ws: Path) -> Path:
    run = fake_run.run_folder(ws, best_checkpoint="step-000020")
    fake_run.history(run)
    fake_run.validation(run)
    fake_run.checkpoint(run, 20)
    fake_run.evaluation(run)
    fake_run.samples(ws)
    fake_run.samples(ws, label=f"{fake_run.RUN_ID}@step-000020", stamp="20260101-000200")
    fake_run.export(run)
    return run


def test_every_image_and_link_of_a_full_run_resolves(ws):
    run = full_run(ws)
    page = write_run_page(run)
    assert page == run / "report.html"
    found = assert_everything_resolves(page)
    assert found.ids == [key for key, _ in SECTIONS]  # every section, in page order
    srcs = [unquote(s) for s in found.imgs]
    assert sum(s.startswith("validation/") for s in srcs) == 4 * 2 * 2  # steps x prompts x seeds
    assert sum(s.startswith("eval/") for s in srcs) == 3 * 3  # base, best, final x (2 prompts + class)
    samples = "../../samples/20260101-000000-lora"
    assert {s for s in srcs if "samples" in s} == {f"{samples}/20260101-000100/grid.png",
                                                   f"{samples}@step-000020/20260101-000200/grid.png"}
    links = {unquote(h) for h in found.links}
    assert {"final/pytorch_lora_weights.safetensors", "checkpoints/step-000020/",
            "export/ws-20260101-000000.safetensors", "config.yaml", "loss.csv", "eval.json"} <= links


def test_the_page_holds_no_large_inline_image(ws):
    page = write_run_page(full_run(ws)).read_text(encoding="utf-8")
    assert "base64" not in page and len(page) < 200_000


# (section id, what makes its data exist)
OPTIONAL = {
    "training": lambda ws, run: fake_run.history(run),
    "validation": lambda ws, run: fake_run.validation(run),
    "evaluation": lambda ws, run: fake_run.evaluation(run),
    "samples": lambda ws, run: fake_run.samples(ws),
}
ALWAYS = ["summary", "settings", "files"]


@pytest.mark.parametrize("present", [[], *([k] for k in OPTIONAL), list(OPTIONAL)], ids=lambda p: "+".join(p) or "none")
def test_each_section_appears_exactly_when_its_data_exists(ws, present):
    run = fake_run.run_folder(ws)
    for key in present:
        OPTIONAL[key](ws, run)
    found = assert_everything_resolves(write_run_page(run))
    expected = set(ALWAYS) | set(present) | ({"metrics"} if {"training", "evaluation"} & set(present) else set())
    assert set(found.ids) == expected
    assert found.ids == [key for key, _ in SECTIONS if key in expected]


def test_another_runs_samples_are_not_this_runs(ws):
    run = fake_run.run_folder(ws)
    fake_run.samples(ws, label=fake_run.RUN_ID + "-2")  # a run that started in the same second
    fake_run.samples(ws, label="base")
    assert 'id="samples"' not in write_run_page(run).read_text()
    fake_run.samples(ws, label=fake_run.RUN_ID + "+base-upscaler")
    assert 'id="samples"' in write_run_page(run).read_text()


def test_exports_are_listed_with_their_format_and_how_to_load_them(ws):
    run = fake_run.run_folder(ws)
    assert "export/" not in write_run_page(run).read_text()
    fake_run.export(run)
    (run / "export" / "ws-20260101-000000-diffusers").mkdir()  # a folder without model_index.json: not an export
    folder = run / "export" / "ws-20260101-000000-merged"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    page = write_run_page(run).read_text()
    assert "LoRA weights, kohya / AUTOMATIC1111 format, fp16" in page and "ComfyUI/models/loras/" in page
    assert "&lt;lora:ws-20260101-000000:1&gt;" in page
    assert "diffusers pipeline folder" in page and "DiffusionPipeline.from_pretrained" in page
    assert "-diffusers/" not in page


def test_the_page_is_rebuilt_whole_each_time(ws):
    run = full_run(ws)
    (run / "report.html").write_text("<html><body><h1>an old page</h1><!-- dbooth:eval --></body></html>")
    first = write_run_page(run).read_text()
    assert "an old page" not in first and first.startswith("<!doctype html>") and first.rstrip().endswith("</html>")
    assert write_run_page(run).read_text() == first  # the same files, the same page
    data = json.loads((run / "eval.json").read_text())
    data["metrics"]["final"]["dino"] = 0.9999
    (run / "eval.json").write_text(json.dumps(data))
    second = write_run_page(run).read_text()
    assert second.count('id="evaluation"') == 1 and "0.9999" in second and "0.6204" not in second
    (run / "eval.json").unlink()
    assert 'id="evaluation"' not in write_run_page(run).read_text()


def test_text_from_the_files_is_escaped(ws):
    run = full_run(ws)
    page = write_run_page(run).read_text()
    assert "a sks dog &lt;on&gt; the &quot;beach&quot; &amp; more" in page
    assert "<on>" not in page


def test_a_run_outside_a_workspace_still_gets_a_page(tmp_path):
    ws = fake_run.workspace(tmp_path / "ws")
    run = fake_run.run_folder(ws)
    fake_run.history(run)
    moved = tmp_path / "elsewhere" / run.name
    moved.parent.mkdir()
    run.rename(moved)
    page = assert_everything_resolves(write_run_page(moved))
    assert "training" in page.ids and "dbooth sample" not in (moved / "report.html").read_text()


def test_a_failed_page_write_never_fails_the_verb(tmp_path):
    from dbooth.runpage.page import refresh_run_page
    from dbooth.util.reporting import Reporter

    warnings = []

    class Recording(Reporter):
        def warn(self, message: str) -> None:
            warnings.append(message)

    assert refresh_run_page(tmp_path / "no-run", Recording()) is None  # no run.json: nothing to show
    assert len(warnings) == 1 and "report.html" in warnings[0]
    with pytest.raises(Exception):
        write_run_page(tmp_path / "no-run")


def test_the_run_page_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys; import dbooth.runpage.page; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_section_titles_and_nav_agree(ws):
    page = write_run_page(full_run(ws)).read_text()
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S).group(1)
    assert re.findall(r'href="#([a-z]+)"', nav) == [key for key, _ in SECTIONS]


def test_scores_taken_during_training_are_drawn_against_the_step(ws):
    scores = {"step-000020": {"step": 20, "subject_fidelity": 0.5, "prompt_fidelity": 1.0, "pres": 0.0},
              "step-000040": {"step": 40, "subject_fidelity": 0.4, "prompt_fidelity": 1.0, "pres": 0.0}}
    run = fake_run.run_folder(ws, best_checkpoint="step-000020", stop_when={
        "base": {"subject_fidelity": 0.0, "prompt_fidelity": 1.0, "pres": 0.0}, "scores": scores,
        "best": "step-000020", "stopped": {"step": 40, "reason": "2 checkpoints without a better pick"}})
    fake_run.history(run)
    page = write_run_page(run).read_text()
    assert "Scored during training" in page and "It stopped at step 40: 2 checkpoints without a better pick" in page
    points = re.findall(r'<circle class="point (\w+)"[^>]*data-name="([^"]+)" data-step="(\d+)"', page)
    assert set(points) == {("base", "base", "0"), ("best", "step-000020", "20"), ("step", "step-000040", "40")}
    assert "train.stop_when stopped it at step 40" in page  # the verdict says so too
