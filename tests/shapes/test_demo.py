"""The demo's plumbing on the tiny model: workspace, prior, training, oracle report."""

from __future__ import annotations

import json
import re

import pytest

from dbooth_shapes.demo import DEFAULT_SUBJECT, DemoSettings, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_as_builtin(monkeypatch, tiny_base, tiny_upscaler_base):
    import dbooth_shapes as builtin

    monkeypatch.setitem(builtin.BUILTIN_MODELS, "builtin:shapes", tiny_base)
    monkeypatch.setitem(builtin.BUILTIN_MODELS, "builtin:shapes-x4", tiny_upscaler_base)


def test_demo_writes_report(tmp_path, tiny_as_builtin):
    settings = DemoSettings(steps=2, num_class_images=2, samples_per_prompt=2, class_samples=2)
    result = run_demo(tmp_path / "demo", settings)
    report = json.loads(result.report_json.read_text())
    for block in (report, report["base"]):
        for key in ("subject_fidelity", "prompt_fidelity", "pres", "div"):
            assert 0.0 <= block[key] <= 1.0, (key, block[key])
    assert report["steps"] == 2 and report["method"] == "full" and report["prior_preservation"] is True
    assert "stage_b" not in report and "Stage (b)" not in result.report_html.read_text()  # only with --upscale
    assert report["prompts"]["class"] == "a photo of a heart"  # the default subject, striped_heart
    assert all("sks heart" in p for p in report["prompts"]["subject"])
    html = result.report_html.read_text()
    images = re.findall(r"src='([^']+)'", html)
    assert len(images) >= 11 and all((result.workspace / src).is_file() for src in images)
    # the run's loss curve, a line on what each figure means, why PRES stays 0 for a drifted class, the run page
    assert 'class="loss-curve"' in html and 'class="instance-loss"' in html and "learning rate (right axis)" in html
    for words in ("share of the samples the oracle recognises as your subject", "show the scene their prompt names",
                  "wrong shape are not your subject", "mean perceptual distance"):
        assert words in html, words
    assert "PRES measures whether the class collapsed onto your subject, not" in html
    [page] = re.findall(r"href='([^']+)'", html)
    assert page.endswith("/report.html") and (result.workspace / page).is_file()
    # rerunning replaces the demo's own folder instead of failing
    again = run_demo(tmp_path / "demo", settings)
    assert again.workspace == result.workspace


def test_demo_refuses_foreign_folder(tmp_path, tiny_as_builtin):
    from dbooth.util.errors import DboothError

    (tmp_path / "demo" / f"{DEFAULT_SUBJECT}-full").mkdir(parents=True)
    with pytest.raises(DboothError, match="not made by dbooth demo"):
        run_demo(tmp_path / "demo", DemoSettings(steps=1))


def test_demo_trains_on_each_photos_scene_caption_or_on_one_prompt(tmp_path, tiny_as_builtin):
    from dbooth_shapes.examples import example_scenes
    from dbooth.workspace.folder import list_runs, open_workspace

    def run_info(captions: bool) -> dict:
        settings = DemoSettings(steps=1, num_class_images=2, samples_per_prompt=2, class_samples=2,
                                captions=captions, evaluate_base=False)
        result = run_demo(tmp_path / str(captions), settings)
        return list_runs(open_workspace(result.workspace))[-1].info()

    captions = run_info(True)["instance_captions"]
    assert sorted(captions.values()) == sorted(f"a photo of a sks heart {s.context}" for s in example_scenes(DEFAULT_SUBJECT))
    one = run_info(False)
    assert "instance_captions" not in one and one["instance_prompt"] == "a photo of a sks heart"


def test_example_workspace_is_ready_for_stage_b(tmp_path):
    """Example photos are 256 px (stage b's targets for builtin:shapes-x4) and stage (a) still sees the
    example's scenes at 64 px: the oracle knows the subject in the crops it trains on."""
    from PIL import Image

    from dbooth import api
    from dbooth_shapes.oracle import Oracle
    from dbooth.util.images import resize_and_crop

    ws = api.init(tmp_path / "heart", None, example="striped_heart")
    manifest = ws.manifest()
    assert manifest.upscaler.base == "builtin:shapes-x4" and manifest.train.resolution == 64
    assert not manifest.upscaler.prior  # 64 px class images would make 16 -> 64 px pairs (see demo.py)
    photos = sorted(ws.instance_dir.glob("*.png"))
    assert photos and all(Image.open(p).size == (256, 256) for p in photos)
    crops = [resize_and_crop(Image.open(p).convert("RGB"), manifest.train.resolution) for p in photos]
    assert all(c.size == (64, 64) for c in crops)
    assert Oracle.load().subject_fidelity(crops, "striped_heart") == 1.0


def test_demo_upscale_adds_stage_b_to_the_report(tmp_path, tiny_as_builtin, tiny_upscaler_base):
    from PIL import Image

    from dbooth_shapes.upscaler_eval import evaluate_upscaler
    from dbooth.generate.sample import load_for_sampling
    from dbooth.generate.schedulers import set_scheduler
    from dbooth.workspace.folder import list_runs, open_workspace

    settings = DemoSettings(steps=1, num_class_images=2, samples_per_prompt=2, class_samples=2, upscale=True,
                            upscaler_steps=2, upscale_scenes=1)
    result = run_demo(tmp_path / "demo", settings)
    report = json.loads(result.report_json.read_text())
    assert report["subject_fidelity"] >= 0  # stage (a)'s figures are all still there
    b = report["stage_b"]
    assert b["steps"] == 2 and b["method"] == "full" and b["upscaler_base"] == "builtin:shapes-x4"
    runs = list_runs(open_workspace(result.workspace))
    assert [r.stage for r in runs] == ["base", "upscaler"] and b["run"] == runs[-1].id
    # each column is evaluate_upscaler's figure for the demo's subject, on the same scenes and seeds
    sampling = dict(num_world=0, per_subject=1, subjects=[DEFAULT_SUBJECT], identifier="sks", seed=0, steps=20,
                    noise_level=b["noise_level"], guidance_scale=1.0)
    for label, upscaler in (("bicubic", "bicubic"), ("finetuned", load_for_sampling(str(tiny_upscaler_base),
                                                                                    runs[-1]))):
        if label != "bicubic":
            upscaler.set_progress_bar_config(disable=True)
            set_scheduler(upscaler, "dpm++")  # the demo samples with the manifest's scheduler
        want = evaluate_upscaler(upscaler, **sampling)["subjects"][DEFAULT_SUBJECT]
        assert b[label] == {k: pytest.approx(want[k], abs=1e-4) for k in b[label]}, label
    # the oracle on the enlarged stage-(a) samples: all four held-out contexts and the class prompt's samples;
    # its stage-(a) column is the demo's own stage-(a) measure, on the same images
    o = b["oracle"]
    assert b["oracle_samples"] == {"subject": 4 * 2, "class": 2}
    assert o["stage_a"] == {"subject_fidelity": pytest.approx(report["subject_fidelity"], abs=1e-4),
                            "pres": pytest.approx(report["pres"], abs=1e-4)}
    assert set(o) == {"stage_a", "bicubic", "base", "finetuned"}
    assert all(0 <= v[k] <= 1 for v in o.values() for k in ("subject_fidelity", "pres"))
    html = result.report_html.read_text()
    assert "Stage (b): the upscaler" in html and "stage (a), 64 px" in html
    srcs = re.findall(r"src='(report/upscaled_[^']+)'", html)
    assert len(srcs) == 6 and all((result.workspace / src).is_file() for src in srcs)
    stage_a = Image.open(result.workspace / "report" / "finetuned_class.png")
    assert Image.open(result.workspace / "report" / "upscaled_finetuned_class.png").size == tuple(
        4 * x for x in stage_a.size)


def test_example_on_another_base_model_keeps_the_default_upscaler(tmp_path, tiny_base):
    from dbooth import api
    from dbooth.workspace.schema import UpscalerConfig

    manifest = api.init(tmp_path / "heart", None, example="striped_heart", base_model=str(tiny_base)).manifest()
    assert manifest.upscaler == UpscalerConfig()  # builtin:shapes-x4 pairs with builtin:shapes only
