from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dbooth_shapes.examples import (
    EXAMPLES,
    example_scenes,
    get_example,
    is_example_look,
    list_examples,
    lookalike_scene,
    write_example_images,
    write_example_masks,
)
from dbooth_shapes.world import SHAPES, object_coverage
from dbooth.util.errors import DboothError


def test_at_least_four_patterned_subjects_of_known_classes():
    assert len(EXAMPLES) >= 4
    for s in EXAMPLES.values():
        assert s.class_noun in SHAPES
        assert s.pattern != "solid"
    assert list_examples() == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_write_example_images_writes_varied_deterministic_pngs(tmp_path, name):
    paths = write_example_images(name, tmp_path / "a")
    again = write_example_images(name, tmp_path / "b")
    assert 4 <= len(paths) <= 5
    assert all(p.suffix == ".png" and p.is_file() for p in paths)
    arrays = [np.asarray(Image.open(p)) for p in paths]
    assert all(a.shape == (64, 64, 3) for a in arrays)
    assert all(np.array_equal(a, np.asarray(Image.open(q))) for a, q in zip(arrays, again))
    scenes = example_scenes(name)
    captions = [p.with_suffix(".txt").read_text().strip() for p in paths]
    assert captions == [f"a photo of a {{identifier}} {{class}} {s.context}" for s in scenes]
    assert len({s.context for s in scenes}) >= 4
    assert len({round(s.x, 3) for s in scenes}) == len(scenes)
    assert max(s.size for s in scenes) - min(s.size for s in scenes) > 0.02


def test_unknown_subject_lists_the_available_ones():
    with pytest.raises(DboothError, match="checkered_star"):
        get_example("corgi")


def test_example_photos_at_256px_show_the_same_scenes_in_finer_detail(tmp_path):
    from PIL import Image

    small = write_example_images("striped_heart", tmp_path / "a", count=2)
    big = write_example_images("striped_heart", tmp_path / "b", count=2, size=256)
    for s, b, scene in zip(small, big, example_scenes("striped_heart", 2)):
        assert Image.open(b).size == (256, 256) and Image.open(s).size == (64, 64)
        shrunk = np.asarray(Image.open(b).resize((64, 64), Image.BOX), float)
        inside = object_coverage(scene, 64)[0] > 0.99  # textures are per pixel; the object is the same
        assert np.abs(shrunk - np.asarray(Image.open(s), float))[inside].mean() < 12
        assert b.with_suffix(".txt").read_text() == s.with_suffix(".txt").read_text()


def test_lookalikes_are_patterned_two_coloured_and_never_an_example_subjects_look():
    rng = np.random.default_rng(0)
    scenes = [lookalike_scene(rng) for _ in range(3000)]
    assert all(s.pattern != "solid" and s.colour2 not in (None, s.colour) for s in scenes)
    assert not any(is_example_look(s) for s in scenes)
    # every example subject's shape and pattern still occur, in other colours
    for subject in EXAMPLES.values():
        assert any((s.shape, s.pattern) == (subject.class_noun, subject.pattern) for s in scenes)
    # the check itself recognises a subject's look either way round and rejects a near miss
    star = EXAMPLES["checkered_star"].scene(1)
    assert is_example_look(star)
    assert is_example_look(replace(star, colour=star.colour2, colour2=star.colour))
    assert not is_example_look(replace(star, colour2="blue"))


@pytest.mark.parametrize("size", [64, 256])
def test_example_masks_cover_each_photos_object_and_little_else(tmp_path, size):
    from dbooth.util.images import list_images, load_mask

    photos = write_example_images("polka_circle", tmp_path, size=size)
    masks = write_example_masks("polka_circle", tmp_path, len(photos), size)
    assert [m.name for m in masks] == [p.stem + ".mask.png" for p in photos]
    assert list_images(tmp_path) == photos  # masks are not taken for photos
    for scene, path in zip(example_scenes("polka_circle"), masks):
        mask = np.asarray(load_mask(path)) / 255
        coverage, _ = object_coverage(scene, size)
        assert mask.shape == (size, size)
        assert (mask[coverage > 0.5] == 1).all()  # the whole object, outline included
        assert mask.sum() > coverage.sum()  # and a margin around it (its edge against the scene)
        assert mask.mean() < 0.5  # but not the scene
