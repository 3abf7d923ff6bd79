"""Latent caching encodes fewer images per VAE call as the resolution grows."""

from __future__ import annotations

import pytest
import torch

from dbooth.training.data import encode_batch_for


def test_encode_batch_shrinks_with_resolution():
    assert [encode_batch_for(r) for r in (32, 256, 512, 768, 1024, 2048)] == [8, 8, 8, 3, 2, 1]


class _PoolVae:
    """A stand-in VAE whose latent is the red channel averaged over 8x8 cells, exactly and without noise."""

    class config:
        scaling_factor = 1.0
        shift_factor = 0.0

    def encode(self, pixels):
        from types import SimpleNamespace

        import torch.nn.functional as F

        mean = F.avg_pool2d(pixels[:, :1].float(), 8)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean, std=torch.zeros_like(mean),
                                                           sample=lambda: mean))


def _photo_and_mask(folder, name, size, box):
    """A photo whose subject (white box on black) is exactly its mask, so any misalignment shows."""
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(photo).rectangle(box, fill=(255, 255, 255))
    path = folder / f"{name}.png"
    photo.save(path)
    photo.convert("L").save(folder / f"{name}.mask.png")
    return path


@pytest.mark.parametrize("cache", [True, False])
def test_mask_follows_its_photo_through_random_crop_and_flip(tmp_path, cache):
    from PIL import Image

    from dbooth.util.images import mask_file
    from dbooth.training.data import LatentBank

    # 64x32 at resolution 32: no resize, so the crop offset and flip alone move the subject
    wide = _photo_and_mask(tmp_path, "wide", (64, 32), (8, 0, 23, 31))
    tall = _photo_and_mask(tmp_path, "tall", (32, 64), (0, 40, 15, 63))
    plain = tmp_path / "plain.png"
    Image.new("RGB", (32, 32), (255, 255, 255)).save(plain)
    paths = [wide, tall, plain]
    masks = [mask_file(p) if mask_file(p).exists() else None for p in paths]
    bank = LatentBank(paths, _PoolVae(), resolution=32, crop="random", flip=True, cache=cache, seed=3,
                      device=torch.device("cpu"), dtype=torch.float32, masks=masks)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        latents, geometry, mask = bank.sample(torch.tensor([0, 1, 2]))
        assert mask.shape == (3, 1, 4, 4)
        torch.testing.assert_close(latents, 2 * mask - 1)  # white subject <=> mask 1, black <=> 0
        torch.testing.assert_close(mask[2], torch.ones(1, 4, 4))  # no mask file: counts fully
        seen.add((int(geometry[0, 3]), tuple(mask[0, 0, 0].tolist())))
    assert len(seen) > 2  # crops and flips really varied


def test_mask_follows_a_resized_photo(tmp_path):
    import random

    from dbooth.util.images import (
        crop_like,
        load_mask,
        load_rgb,
        resize_and_crop_with_geometry,
    )

    path = _photo_and_mask(tmp_path, "big", (192, 96), (32, 16, 95, 79))
    photo, mask = load_rgb(path), load_mask(tmp_path / "big.mask.png")
    for seed in range(5):
        view, geometry = resize_and_crop_with_geometry(photo, 32, crop="random", rng=random.Random(seed), flip=seed % 2 == 1)
        cut = crop_like(mask, geometry, flip=seed % 2 == 1)
        assert cut.size == view.size
        diff = torch.tensor(list(cut.getdata()), dtype=torch.float) - torch.tensor(list(view.convert("L").getdata()), dtype=torch.float)
        assert diff.abs().mean() < 8  # same place; only the resampling filters differ at the edges


@pytest.mark.parametrize("cache", [True, False])
def test_buckets_shape_the_latents_and_sdxl_time_ids(tmp_path, cache):
    from PIL import Image

    from dbooth.training.buckets import bucket_sizes
    from dbooth.families import get_family
    from dbooth.families.base import Conditioning
    from dbooth.training.data import LatentBank

    sizes = {"square": (64, 64), "wide": (80, 48), "tall": (48, 80), "wide2": (160, 96)}
    paths = []
    for name, size in sizes.items():
        Image.new("RGB", size, (255, 255, 255)).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    bank = LatentBank(paths, _PoolVae(), resolution=32, crop="random", flip=True, cache=cache, seed=0,
                      device=torch.device("cpu"), dtype=torch.float32, buckets=bucket_sizes(32))
    assert bank.targets == [(32, 32), (40, 24), (24, 40), (40, 24)]
    assert bank.groups() == [[0], [1, 3], [2]]
    latents, geometry, _ = bank.sample(torch.tensor([1, 3]))
    assert latents.shape == (2, 1, 3, 5)  # 40x24 px through the 8x pooling stand-in
    # the wide photos fit their bucket exactly: original size, no crop, the bucket as target (h, w)
    assert geometry.tolist() == [[48, 80, 0, 0, 24, 40], [96, 160, 0, 0, 24, 40]]
    cond = Conditioning(torch.zeros(2, 4, 8), torch.zeros(2, 8))
    time_ids = get_family("sdxl").unet_kwargs(cond, geometry)["added_cond_kwargs"]["time_ids"]
    assert time_ids[:, 4:].tolist() == [[24, 40], [24, 40]]
