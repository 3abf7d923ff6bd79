"""Aspect-ratio buckets: the shapes, which photo goes where, and that a wide photo keeps its width."""

from __future__ import annotations

import math
import random

import pytest
import torch
from PIL import Image

from dbooth.training.buckets import bucket_counts, bucket_sizes, bucket_step, nearest_bucket
from dbooth.util.images import resize_and_crop_with_geometry


def test_sd_buckets_at_512_are_the_documented_list():
    assert bucket_sizes(512) == [(512, 512), (576, 448), (448, 576), (640, 384), (384, 640)]


@pytest.mark.parametrize("resolution", [32, 512, 768, 1024])
def test_buckets_keep_the_pixel_count_and_the_step(resolution):
    step = bucket_step(resolution)
    for w, h in bucket_sizes(resolution):
        assert w % step == 0 and h % step == 0
        assert 0.8 * resolution**2 <= w * h <= resolution**2  # about the model's pixel count, never more
        assert max(w, h) / min(w, h) <= 2.0


@pytest.mark.parametrize("size, bucket", [
    ((1000, 1000), (512, 512)), ((1200, 900), (576, 448)), ((900, 1200), (448, 576)),
    ((1600, 900), (640, 384)), ((900, 1600), (384, 640)), ((3000, 1000), (640, 384)), ((1030, 1000), (512, 512)),
])
def test_each_photo_goes_to_the_bucket_nearest_its_aspect_ratio(size, bucket):
    buckets = bucket_sizes(512)
    assert nearest_bucket(*size, buckets) == bucket
    ratio = size[0] / size[1]
    best = min(abs(math.log(ratio / (w / h))) for w, h in buckets)
    assert abs(math.log(ratio / (bucket[0] / bucket[1]))) == pytest.approx(best)


def test_a_wide_photo_keeps_its_full_width():
    photo = Image.new("RGB", (1280, 768))
    photo.putpixel((0, 0), (255, 0, 0))
    photo.putpixel((1279, 767), (0, 255, 0))
    bucket = nearest_bucket(*photo.size, bucket_sizes(512))
    view, geometry = resize_and_crop_with_geometry(photo, 512, crop="random", rng=random.Random(0), target=bucket)
    assert view.size == (640, 384) and geometry == (768, 1280, 0, 0, 384, 640)
    square, _ = resize_and_crop_with_geometry(photo, 512, crop="center")
    assert square.size == (512, 512)  # without buckets the sides are cut off


def test_bucket_counts_widest_first():
    assert bucket_counts([(32, 32), (24, 40), (40, 24), (32, 32)]) == [((40, 24), 1), ((32, 32), 2), ((24, 40), 1)]


def test_a_batch_comes_from_one_bucket():
    from dbooth.training.step import draw_indices

    groups = [[0, 2, 5], [1, 3], [4]]
    torch.manual_seed(0)
    seen = []
    for _ in range(200):
        ii = draw_indices(groups, 3).tolist()
        home = next(g for g in groups if ii[0] in g)
        assert all(i in home for i in ii)
        seen.append(groups.index(home))
    # a bucket is drawn as often as it holds photos: 3/6, 2/6, 1/6
    assert [round(seen.count(k) / 200, 1) for k in range(3)] == pytest.approx([0.5, 0.3, 0.2], abs=0.11)
    torch.manual_seed(1)
    single = draw_indices([[0, 1, 2]], 4)
    torch.manual_seed(1)
    assert torch.equal(single, torch.randint(0, 3, (4,)))  # one bucket: the plain draw, as before buckets


def test_share_out_gives_each_used_bucket_one_and_the_rest_by_photos():
    from dbooth.training.buckets import share_out

    a, b, c = (32, 32), (40, 24), (24, 40)
    assert share_out(10, [(a, 2), (b, 2), (c, 0)]) == [(a, 5), (b, 5)]  # unused buckets get none
    assert share_out(10, [(a, 1), (b, 3)]) == [(a, 3), (b, 7)]  # 1 + 8/4 = 3, 1 + 24/4 = 7
    assert share_out(4, [(a, 1), (b, 1), (c, 1)]) == [(a, 2), (b, 1), (c, 1)]  # a tie: the earlier bucket
    assert share_out(2, [(a, 5), (b, 1), (c, 1)]) == [(a, 1), (b, 1), (c, 1)]  # at least one each
    for total in range(1, 60):
        shares = share_out(total, [(a, 7), (b, 3), (c, 1)])
        assert sum(n for _, n in shares) == max(total, 3)
        rest = max(total, 3) - 3
        for (_, n), photos in zip(shares, (7, 3, 1)):
            assert abs((n - 1) - rest * photos / 11) < 1  # within one of the exact proportion
    assert share_out(5, []) == []
