"""The oracle judge's prompt fidelity: the share of samples showing the scene their prompt names."""

import pytest
from PIL import Image

from dbooth import api
from dbooth.plugins import judge_for
from dbooth_shapes.judge import scene_of
from dbooth.workspace.prompts import caption_file


def test_scene_of_names_the_world_scene_in_a_prompt():
    assert scene_of("a photo of a sks star in the jungle") == "in the jungle"
    assert scene_of("a sks heart floating on top of water") == "floating on top of water"
    assert scene_of("a photo of a sks star") is None


def test_prompt_fidelity_counts_the_samples_in_their_prompts_scene(tmp_path):
    ws = api.init(tmp_path / "heart", None, example="striped_heart")
    paths = sorted(ws.instance_dir.glob("*.png"))
    photos = {p: Image.open(p).convert("RGB") for p in paths}
    judge = judge_for(ws.manifest().base_model, list(photos.values()))
    by_caption = {caption_file(p).read_text().strip(): [im] for p, im in photos.items()}  # each names its scene
    right = judge.score(by_caption, [])
    truth = judge.oracle.prompt_fidelity(list(photos.values()), [scene_of(c) for c in by_caption])
    assert right["prompt_fidelity"] == pytest.approx(truth) and truth >= 0.8
    # the same photos asked for another scene: prompt fidelity falls; a prompt without a scene does not count
    wrong = {f"a photo of a sks heart in the jungle {i}": [im] for i, im in enumerate(photos.values())}
    assert judge.score(wrong, [])["prompt_fidelity"] == 0.0
    assert judge.score({"a photo of a sks heart": list(photos.values())}, [])["prompt_fidelity"] is None
    assert judge.score(by_caption, [])["pres"] is None  # no class samples: no PRES
