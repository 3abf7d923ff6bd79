import itertools

import numpy as np
import pytest

from dbooth_shapes.world import (
    CONTEXTS, SHAPES, Scene, caption, pretraining_caption, random_scene, render, world_words,
)


def test_random_scene_and_render_are_deterministic_under_seed():
    a, b = random_scene(7), random_scene(7)
    assert a == b
    assert np.array_equal(np.asarray(render(a)), np.asarray(render(b)))
    assert random_scene(8) != a


def test_render_size_and_mode():
    img = render(random_scene(0), size=64)
    assert img.size == (64, 64) and img.mode == "RGB"


def _object_only_diff(a: Scene, b: Scene) -> float:
    return float(np.abs(np.asarray(render(a), float) - np.asarray(render(b), float)).mean())


def test_every_shape_renders_distinctly():
    base = dict(colour="red", context="on top of pink fabric", x=0.5, y=0.5, size=0.25, rotation=0.1, texture_seed=3)
    imgs = {s: np.asarray(render(Scene(shape=s, **base)), float) for s in SHAPES}
    for s1, s2 in itertools.combinations(SHAPES, 2):
        # Shapes of equal size differ on at least ~1.5% of the image's total intensity range.
        assert np.abs(imgs[s1] - imgs[s2]).mean() > 2.0, (s1, s2)


def test_every_context_renders_distinctly():
    imgs = {c: np.asarray(render(Scene("star", "red", c, texture_seed=1)), float) for c in CONTEXTS}
    for c1, c2 in itertools.combinations(CONTEXTS, 2):
        assert np.abs(imgs[c1] - imgs[c2]).mean() > 10.0, (c1, c2)


def test_texture_seed_varies_the_background_but_not_the_context_kind():
    a = np.asarray(render(Scene("star", "red", "on the beach", texture_seed=1)), float)
    b = np.asarray(render(Scene("star", "red", "on the beach", texture_seed=2)), float)
    c = np.asarray(render(Scene("star", "red", "in the jungle", texture_seed=1)), float)
    assert 0 < np.abs(a - b).mean() < np.abs(a - c).mean()


def test_caption_matches_the_papers_style():
    s = Scene("star", "blue", "on the beach")
    assert caption(s) == "a photo of a blue star on the beach"
    assert caption(s, colour=False, context=False) == "a photo of a star"
    assert caption(Scene("ring", "orange", "in the snow"), context=False) == "a photo of an orange ring"


def test_pretraining_captions_include_partial_variants():
    rng = np.random.default_rng(0)
    s = Scene("star", "blue", "on the beach")
    seen = {pretraining_caption(s, rng) for _ in range(300)}
    for want in ("a photo of a blue star on the beach", "a photo of a star", "a photo of a blue star",
                 "a star on the beach", "a photo of a star on the beach"):
        assert want in seen


def test_pretraining_scenes_are_solid_coloured():
    rng = np.random.default_rng(1)
    assert {random_scene(rng).pattern for _ in range(200)} == {"solid"}


def test_invalid_scene_is_rejected():
    with pytest.raises(ValueError, match="unknown shape"):
        Scene("dog", "red", CONTEXTS[0])
    with pytest.raises(ValueError, match="unknown context"):
        Scene("star", "red", "on the moon")


def test_world_words_cover_captions():
    words = set(world_words())
    rng = np.random.default_rng(2)
    for _ in range(200):
        assert set(pretraining_caption(random_scene(rng), rng).split()) <= words
