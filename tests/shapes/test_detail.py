"""The high-resolution detail measure, checked on rendered subjects and their degraded versions."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dbooth_shapes.detail import (
    detail_band,
    detail_error,
    detail_recovery,
    pattern_mask,
    psnr,
)
from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.world import Scene, object_coverage, random_scene, render, replace

OTHER = {"checkered": "striped", "striped": "polka", "polka": "checkered", "split": "striped"}


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def subject_scene(request):
    return EXAMPLES[request.param].scene(np.random.default_rng(7))


def bicubic_of_64px(scene: Scene) -> Image.Image:
    return render(scene, 256).resize((64, 64), Image.BOX).resize((256, 256), Image.BICUBIC)


def test_band_is_zero_for_a_smooth_upscale_and_holds_the_edges_of_a_render():
    flat = np.full((256, 256, 3), 0.4, np.float32)
    assert np.abs(detail_band(flat)).max() < 1e-5
    band = detail_band(render(EXAMPLES["striped_heart"].scene(0), 256))
    assert band.shape == (256, 256, 3) and np.abs(band).max() > 0.2
    with pytest.raises(ValueError, match="multiple of 4"):
        detail_band(np.zeros((30, 30, 3), np.float32))


def test_pattern_mask_is_inside_the_object():
    scene = EXAMPLES["polka_circle"].scene(3)
    mask = pattern_mask(scene, 256)
    coverage, outline = object_coverage(scene, 256)
    assert mask.sum() > 2000
    assert (coverage[mask] > 0.5).all() and not mask[coverage == 0].any()
    assert outline[mask].max() < 0.5


def test_the_render_scores_one_and_degraded_versions_score_low(subject_scene):
    ref = render(subject_scene, 256)
    assert detail_recovery(ref, subject_scene) == pytest.approx(1.0)
    assert detail_recovery(np.asarray(ref), subject_scene) == pytest.approx(1.0)  # uint8 arrays too
    bicubic = detail_recovery(bicubic_of_64px(subject_scene), subject_scene)
    from_64px_render = detail_recovery(render(subject_scene, 64).resize((256, 256), Image.BICUBIC), subject_scene)
    blurred = detail_recovery(ref.filter(ImageFilter.GaussianBlur(2)), subject_scene)
    other = detail_recovery(render(replace(subject_scene, pattern=OTHER[subject_scene.pattern]), 256), subject_scene)
    assert -0.1 < bicubic < 0.2 and -0.1 < from_64px_render < 0.2
    assert blurred < 0.35
    assert other < 0
    noisy = np.clip(np.asarray(ref) / 255 + np.random.default_rng(0).normal(0, 0.02, (256, 256, 3)), 0, 1)
    assert 0.6 < detail_recovery(noisy.astype(np.float32), subject_scene) < 1  # mild noise costs a little


def test_sharpening_only_part_of_the_way_scores_between():
    scene = EXAMPLES["checkered_star"].scene(11)
    ref = np.asarray(render(scene, 256), np.float32) / 255
    soft = np.asarray(bicubic_of_64px(scene), np.float32) / 255
    half = detail_recovery(0.5 * ref + 0.5 * soft, scene)
    assert detail_recovery(soft, scene) < half < detail_recovery(ref, scene)
    assert half == pytest.approx(0.75, abs=0.1)  # half the missing band back: 1 - 0.5^2


def test_solid_objects_have_no_pattern_to_judge():
    with pytest.raises(ValueError, match="no pattern"):
        detail_recovery(render(random_scene(0), 256), random_scene(0))


def test_psnr_matches_a_direct_computation():
    a = np.zeros((8, 8, 3), np.float32)
    b = np.full((8, 8, 3), 0.1, np.float32)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)


def test_detail_error_sees_a_pattern_painted_on_a_solid_object():
    solid = replace(EXAMPLES["striped_heart"].scene(5), pattern="solid", colour2=None)
    ref = render(solid, 256)
    assert detail_error(ref, solid) == 0
    assert detail_error(bicubic_of_64px(solid), solid) < 0.005  # a flat fill has nothing to miss
    painted = render(replace(solid, pattern="striped", colour2="yellow"), 256)
    assert detail_error(painted, solid) > 0.04


def test_detail_error_is_the_rms_of_the_band_difference_in_the_mask():
    scene = EXAMPLES["polka_circle"].scene(2)
    soft = bicubic_of_64px(scene)
    mask = pattern_mask(scene, 256)
    diff = detail_band(soft)[mask] - detail_band(render(scene, 256))[mask]
    assert detail_error(soft, scene) == pytest.approx(float(np.sqrt((diff**2).mean())), rel=1e-5)
    ratio = 1 - (diff**2).sum() / (detail_band(render(scene, 256))[mask] ** 2).sum()
    assert detail_recovery(soft, scene) == pytest.approx(float(ratio), rel=1e-4)
