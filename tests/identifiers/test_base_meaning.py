"""An identifier's prior: samples of "a photo of [V]" judged by the oracle (built-in model) or CLIP zero-shot."""

from __future__ import annotations

import pytest
import torch

from dbooth.util.errors import DboothError
from dbooth_shapes.judge import ORACLE_CONFIDENT, OracleJudge
from dbooth.identifiers.base_meaning import (
    CLIP_CONFIDENT,
    ClipJudge,
    IdentifierPrior,
    identifier_priors,
    measure_priors,
    prior_prompt,
)


def test_share_is_the_most_common_confident_answer_over_all_samples():
    p = IdentifierPrior("sks", "a photo of sks", "oracle", 8, {"ring": 3, "heart": 3, "star": 1})
    assert p.looks_like == "heart" and p.share == 3 / 8  # ties go to the alphabetically first
    none = IdentifierPrior("zwx", "a photo of zwx", "oracle", 8, {})
    assert none.looks_like is None and none.share == 0.0
    assert p.to_dict()["share"] == 0.375


def test_the_prompt_is_the_caption_without_its_class():
    assert prior_prompt("a photo of {identifier} {class}") == "a photo of {identifier}"  # the paper's
    assert prior_prompt("a photo of a {identifier} {class} on a sofa") == "a photo of a {identifier} on a sofa"
    assert prior_prompt(None) == "a photo of a {identifier}"


@pytest.fixture(scope="module")
def shapes_pipe():
    from dbooth.families.loading import load_pipeline

    return load_pipeline("builtin:shapes")


@pytest.mark.slow
def test_oracle_priors_count_what_the_oracle_says_of_each_sample(shapes_pipe):
    judge = OracleJudge.load()
    [circle, sks] = measure_priors(shapes_pipe, ["circle", "sks"], judge, samples=3, seed=5, steps=8,
                                   guidance_scale=5.0, resolution=64)
    for result, word in ((circle, "circle"), (sks, "sks")):
        images = shapes_pipe([f"a photo of a {word}"] * 3, num_inference_steps=8, guidance_scale=5.0, height=64,
                             width=64, generator=[torch.Generator("cpu").manual_seed(5 + k) for k in range(3)]).images
        expected: dict[str, int] = {}
        for p in judge.oracle.predict(images):
            if p["shape_prob"] >= ORACLE_CONFIDENT:
                expected[p["shape"]] = expected.get(p["shape"], 0) + 1
        assert result.labels == expected and result.prompt == f"a photo of a {word}" and result.samples == 3
    assert circle.share == 1.0 and sks.share < circle.share  # a caption word draws itself; the rare token does not


def test_clip_judge_is_zero_shot_softmax_at_clips_scale(tmp_path):
    from PIL import Image

    from dbooth.eval.encoders import load_clip
    from tiny_encoders import save_tiny_clip

    clip = load_clip(str(save_tiny_clip(tmp_path / "clip")))
    judge = ClipJudge(clip, ["dog", "cat", "dog"])
    assert judge.classes == ["dog", "cat"]
    images = [Image.new("RGB", (40, 40), c) for c in ((250, 10, 10), (10, 10, 250), (128, 128, 128))]
    img = clip.embed_images(images)
    txt = clip.embed_texts(["a photo of a dog", "a photo of a cat"])
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    expected = (clip.model.logit_scale.exp() * img @ txt.T).softmax(-1)
    assert torch.allclose(judge.probabilities(images), expected, atol=1e-5)
    p, j = expected.max(-1)
    assert judge.labels(images) == [judge.classes[int(k)] if q >= CLIP_CONFIDENT else None for q, k in zip(p, j)]


def test_without_a_clip_judge_a_real_model_stops_before_loading(tiny_base, tmp_path, monkeypatch):
    import dbooth.families.loading as loading

    def never(*args, **kwargs):
        raise AssertionError("the base model must not be loaded without a judge")

    monkeypatch.setattr(loading, "load_pipeline", never)
    from dbooth import api

    manifest = api.init(tmp_path / "ws", "dog", base_model=str(tiny_base)).manifest()
    manifest.eval.clip = "some-org/clip-not-downloaded"
    with pytest.raises(DboothError, match="huggingface-cli download some-org/clip-not-downloaded"):
        identifier_priors(str(tiny_base), ["sks"], manifest)


def test_a_real_model_prior_runs_with_a_local_clip_judge(tiny_base, tmp_path):
    from dbooth import api
    from dbooth.workspace.config import apply_overrides, write_manifest
    from tiny_encoders import save_tiny_clip

    ws = api.init(tmp_path / "ws", "dog", base_model=str(tiny_base))
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {
        "eval.clip": str(save_tiny_clip(tmp_path / "clip")), "sample.steps": 2}))
    result = api.identifiers(ws, prior=True, samples=2)
    [prior] = result.priors
    assert prior.identifier == "sks" and prior.prompt == "a photo of sks" and prior.samples == 2
    assert prior.judge.startswith("clip ") and sum(prior.labels.values()) <= 2


def test_the_clip_judge_can_name_what_rare_tokens_draw_on_sd1(tmp_path, monkeypatch):
    """The paper's example: "sks" draws rifles on SD 1.x, so the label list must be able to say so."""
    from dbooth.eval import encoders
    from tiny_encoders import save_tiny_clip
    from dbooth.identifiers import base_meaning as P

    clip = encoders.load_clip(str(save_tiny_clip(tmp_path / "clip")))
    monkeypatch.setattr(encoders, "load_clip", lambda name: clip)
    judge = P.judge_for("some/real-model", "any", ["corgi"])
    assert {"rifle", "gun", "person", "car"} <= set(judge.classes)
    assert judge.classes[: len(P.DREAMBENCH_CLASSES)] == list(P.DREAMBENCH_CLASSES) and judge.classes[-1] == "corgi"
    assert len(judge.classes) == len(set(judge.classes)) and judge.texts.shape[0] == len(judge.classes)
