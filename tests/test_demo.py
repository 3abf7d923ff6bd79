"""The demo's plumbing on the tiny model: workspace, prior, training, oracle report."""

from __future__ import annotations

import json
import re

import pytest

from dbooth.demo import DEFAULT_SUBJECT, DemoSettings, run_demo


@pytest.fixture
def tiny_as_builtin(monkeypatch, tiny_base):
    import dbooth.builtin as builtin

    monkeypatch.setitem(builtin.BUILTIN_MODELS, "builtin:shapes", tiny_base)


def test_demo_writes_report(tmp_path, tiny_as_builtin):
    settings = DemoSettings(steps=2, num_class_images=2, samples_per_prompt=2, class_samples=2)
    result = run_demo(tmp_path / "demo", settings)
    report = json.loads(result.report_json.read_text())
    for block in (report, report["base"]):
        for key in ("subject_fidelity", "prompt_fidelity", "pres", "div"):
            assert 0.0 <= block[key] <= 1.0, (key, block[key])
    assert report["steps"] == 2 and report["method"] == "full" and report["prior_preservation"] is True
    assert report["prompts"]["class"] == "a photo of a heart"  # the default subject, striped_heart
    assert all("sks heart" in p for p in report["prompts"]["subject"])
    html = result.report_html.read_text()
    images = re.findall(r"src='([^']+)'", html)
    assert len(images) >= 11 and all((result.workspace / src).is_file() for src in images)
    # rerunning replaces the demo's own folder instead of failing
    again = run_demo(tmp_path / "demo", settings)
    assert again.workspace == result.workspace


def test_demo_refuses_foreign_folder(tmp_path, tiny_as_builtin):
    from dbooth.errors import DboothError

    (tmp_path / "demo" / f"{DEFAULT_SUBJECT}-full").mkdir(parents=True)
    with pytest.raises(DboothError, match="not made by dbooth demo"):
        run_demo(tmp_path / "demo", DemoSettings(steps=1))


def test_demo_trains_on_each_photos_scene_caption_or_on_one_prompt(tmp_path, tiny_as_builtin):
    from dbooth.builtin.subjects import example_scenes
    from dbooth.workspace import list_runs, open_workspace

    def run_info(captions: bool) -> dict:
        settings = DemoSettings(steps=1, num_class_images=2, samples_per_prompt=2, class_samples=2,
                                captions=captions, evaluate_base=False)
        result = run_demo(tmp_path / str(captions), settings)
        return list_runs(open_workspace(result.workspace))[-1].info()

    captions = run_info(True)["instance_captions"]
    assert sorted(captions.values()) == sorted(f"a photo of a sks heart {s.context}" for s in example_scenes(DEFAULT_SUBJECT))
    one = run_info(False)
    assert "instance_captions" not in one and one["instance_prompt"] == "a photo of a sks heart"
