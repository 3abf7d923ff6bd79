"""The oracle must itself be right before its numbers mean anything."""

import numpy as np
import pytest
import torch

from dbooth_shapes.oracle import SUBJECT_LABELS, Oracle
from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.world import CONTEXTS, SHAPES, Scene, random_scene, render, render_batch
from tools.shapes.train_oracle import augment, validate

pytestmark = pytest.mark.quality

N = 300


@pytest.fixture(scope="module")
def oracle():
    return Oracle.load()


def test_accurate_on_fresh_renders(oracle):
    scores = validate(oracle, count=N, seed=987_654)  # training used seed 0
    assert scores["shape"] >= 0.95, scores
    assert scores["context"] >= 0.95, scores
    assert scores["subject"] >= 0.95, scores


def test_accurate_on_fresh_renders_made_to_look_generated(oracle):
    rng = np.random.default_rng(55)
    scenes = [random_scene(rng) for _ in range(200)]
    x = torch.from_numpy(render_batch(scenes)).permute(0, 3, 1, 2).float() / 255
    x = augment(x, torch.Generator().manual_seed(1))
    images = list((x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    assert oracle.shape_accuracy(images, [s.shape for s in scenes]) >= 0.9
    assert oracle.prompt_fidelity(images, [s.context for s in scenes]) >= 0.9


def _chance_band(p: float, n: int) -> tuple[float, float]:
    sd = (p * (1 - p) / n) ** 0.5
    return p - 4 * sd, p + 4 * sd


def test_noise_is_judged_at_chance(oracle):
    rng = np.random.default_rng(3)
    noise = list(rng.integers(0, 256, (N, 64, 64, 3), dtype=np.uint8))
    shapes = list(rng.choice(SHAPES, N))
    contexts = list(rng.choice(CONTEXTS, N))
    lo, hi = _chance_band(1 / len(SHAPES), N)
    assert lo <= oracle.shape_accuracy(noise, shapes) <= hi
    lo, hi = _chance_band(1 / len(CONTEXTS), N)
    assert lo <= oracle.prompt_fidelity(noise, contexts) <= hi
    # The probability given to the (random) true label is chance on average, not confident.
    probs = oracle.probabilities(noise)["shape"]
    p_true = probs[torch.arange(N), torch.tensor([SHAPES.index(s) for s in shapes])]
    assert abs(float(p_true.mean()) - 1 / len(SHAPES)) < 0.08


def test_shape_comes_from_the_outline_not_the_colours(oracle):
    """Shuffling pixels keeps every colour but destroys the shape: accuracy must fall to ~chance."""
    rng = np.random.default_rng(4)
    scenes = [random_scene(rng) for _ in range(N)]
    images = render_batch(scenes)
    intact = oracle.shape_accuracy(list(images), [s.shape for s in scenes])
    flat = images.reshape(N, -1, 3)
    shuffled = [f[rng.permutation(len(f))].reshape(64, 64, 3) for f in flat]
    assert oracle.shape_accuracy(shuffled, [s.shape for s in scenes]) < 0.4 < intact


def test_subject_metrics(oracle):
    name = sorted(EXAMPLES)[0]
    subject = EXAMPLES[name]
    rng = np.random.default_rng(6)
    subject_imgs = [render(subject.scene(rng)) for _ in range(40)]
    plain = [render(random_scene(rng, shapes=(subject.class_noun,))) for _ in range(40)]
    assert oracle.subject_fidelity(subject_imgs, name) >= 0.95
    assert oracle.pres(plain, name) <= 0.05
    assert oracle.pres(subject_imgs, name) >= 0.95  # PRES counts subject look-alikes among class samples
    assert set(p["subject"] for p in oracle.predict(plain)) <= set(SUBJECT_LABELS)


def test_predict_returns_labels_with_probabilities(oracle):
    s = Scene("heart", "green", "on the beach", size=0.25)
    (p,) = oracle.predict([render(s, size=128)])  # any size is resized to 64
    assert (p["shape"], p["context"], p["subject"]) == ("heart", "on the beach", "none")
    assert 0.5 < p["shape_prob"] <= 1.0


def test_div_is_zero_for_copies_and_grows_with_variety(oracle):
    rng = np.random.default_rng(8)
    same = [render(Scene("star", "red", "in the snow"))] * 4
    similar = [render(random_scene(rng, shapes=("star",), colours=("red",), contexts=("in the snow",))) for _ in range(6)]
    varied = [render(random_scene(rng)) for _ in range(6)]
    d_same = oracle.div({"p": same})
    d_similar = oracle.div({"p": similar})
    d_varied = oracle.div({"p": varied, "q": varied[::-1]})
    assert d_same < 1e-6
    assert 0 < d_similar < d_varied <= 1.0
