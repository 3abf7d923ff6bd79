import numpy as np
import pytest
from PIL import Image

from dbooth.builtin.subjects import EXAMPLES, example_scenes, get_example, list_examples, write_example_images
from dbooth.builtin.world import SHAPES
from dbooth.errors import DboothError


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
