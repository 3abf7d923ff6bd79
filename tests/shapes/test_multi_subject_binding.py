"""Two example subjects trained into one built-in model: each identifier draws its own subject (judged by
the oracle), never the other one, and the bare class prompts stay the classes (prior per class).

About two minutes on a 2-core CPU: class images for two classes, 1200 steps at batch 2 + 2, 64 samples.
"""

from __future__ import annotations

import pytest
import torch

from dbooth import api
from dbooth_shapes.oracle import Oracle
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth_shapes.demo import HELD_OUT_CONTEXTS
from dbooth.generate.sample import load_for_sampling
from dbooth.generate.schedulers import set_scheduler

pytestmark = pytest.mark.quality

SUBJECTS = {"sks": ("striped_heart", "heart"), "zwx": ("checkered_star", "star")}


@pytest.fixture(scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thresholds below were measured so; results then repeat exactly
    yield
    torch.set_num_threads(threads)


def _subject_shares(oracle: Oracle, images) -> dict[str, float]:
    labels = [p["subject"] for p in oracle.predict(images)]
    return {name: labels.count(name) / len(labels) for name, _ in SUBJECTS.values()}


def test_each_identifier_draws_its_own_subject(tmp_path, single_thread):
    ws = api.init(tmp_path / "two", None, example="striped_heart")  # identifier sks
    api.add_subject(ws, "checkered_star", None, identifier="zwx", example="checkered_star")
    # the demo's settings (lr 1e-4, text encoder trained) with twice its steps: two subjects share them
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {
        "train.max_steps": 1200, "train.learning_rate": 1e-4, "train.checkpoint_every": 0}))
    api.prior(ws)
    run = api.train(ws).run
    m = ws.manifest()
    pipe = load_for_sampling(m.base_model, run)
    set_scheduler(pipe, m.sample.scheduler)

    def sample(prompts: list[str]) -> list:
        return pipe(prompts, num_inference_steps=m.sample.steps, guidance_scale=m.sample.guidance_scale,
                    height=m.train.resolution, width=m.train.resolution,
                    generator=[torch.Generator("cpu").manual_seed(k) for k in range(len(prompts))]).images

    oracle = Oracle.load()
    for identifier, (own, noun) in SUBJECTS.items():
        other = next(name for name, _ in SUBJECTS.values() if name != own)
        prompts = [f"a photo of a {identifier} {noun} {ctx}" for ctx in HELD_OUT_CONTEXTS for _ in range(4)]
        shares = _subject_shares(oracle, sample(prompts))
        # measured: sks 0.81 striped_heart, zwx 0.31 checkered_star, 0.00 of the other subject each (base: 0.00)
        assert shares[own] >= 0.15 and shares[own] >= 3 * shares[other], (identifier, shares)
        assert shares[other] <= 0.0625, (identifier, shares)  # at most 1 in 16 shows the other subject
        classes = _subject_shares(oracle, sample([f"a photo of a {noun}"] * 8))
        assert max(classes.values()) <= 0.25, (noun, classes)  # the class itself did not become a subject
    assert _subject_shares(oracle, sample(["a photo of a sks heart"] * 8))["striped_heart"] >= 0.5
