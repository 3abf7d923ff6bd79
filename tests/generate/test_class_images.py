"""Class images: only the missing ones are generated, each from its own seed, and stale ones are caught."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dbooth import api
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.util.errors import DboothError
from dbooth.generate.class_images import read_record


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def state(folder) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def no_model_loading(monkeypatch):
    """Make any attempt to load the base model fail loudly."""
    import dbooth.families.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the base model was loaded although nothing had to be generated")

    monkeypatch.setattr(loading, "load_pipeline", refuse)


def test_generates_missing_images_reproducibly_and_detects_stale_ones(make_workspace, tiny_base, monkeypatch):
    ws = make_workspace()  # prior.num_class_images: 4
    user = ws.class_dir / "my-own-dog.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(user)
    user_bytes = user.read_bytes()

    # 1. one of four is the user's: exactly three are generated, indices 0..2
    result = api.prior(ws)
    generated = sorted(p.name for p in ws.class_dir.glob("prior-*.png"))
    assert generated == ["prior-00000.png", "prior-00001.png", "prior-00002.png"]
    assert sorted(p.name for p in ws.class_dir.iterdir()) == ["my-own-dog.png"] + generated
    assert result.present == 4 and result.missing == []
    assert result.user_images == [user]
    assert user.read_bytes() == user_bytes
    # where the time went: the denoising steps and the decode are told apart (the step callback fired)
    times = result.times
    assert times.images == 3 and times.load > 0 and times.denoise > 0 and times.decode > 0 and times.write > 0
    assert times.seconds >= times.denoise + times.decode
    assert "3 images in" in times.describe() and "decode" in times.describe()

    # the images are real, at the training resolution, and not all the same
    first = {name: pixels(ws.class_dir / name) for name in generated}
    assert all(a.shape == (32, 32, 3) for a in first.values())
    assert not np.array_equal(first["prior-00000.png"], first["prior-00001.png"])

    # each PNG says how it was made
    manifest = ws.manifest()
    for i, name in enumerate(generated):
        record = read_record(ws.class_dir / name)
        assert record["prompt"] == "a photo of dog"
        assert record["seed"] == manifest.prior.seed + i
        assert record["index"] == i
        assert record["model"] == str(tiny_base)
        assert record["resolution"] == 32
    assert read_record(user) is None

    # 2. a rerun generates nothing, and does not even load the model
    before = state(ws.class_dir)
    with monkeypatch.context() as m:
        no_model_loading(m)
        again = api.prior(ws)
        fewer = api.prior(ws, {"prior.num_class_images": 2})  # more present than wanted: nothing deleted
    assert again.present == 4 and again.missing == [] and again.times is None
    assert fewer.present == 4
    assert state(ws.class_dir) == before

    # 3. a deleted image is regenerated at the same index with the same pixels; the rest are untouched
    (ws.class_dir / "prior-00001.png").unlink()
    api.prior(ws)
    after = state(ws.class_dir)
    assert sorted(after) == sorted(before)
    for name in before:
        if name != "prior-00001.png":
            assert after[name] == before[name], name
    regenerated = pixels(ws.class_dir / "prior-00001.png")
    # generated alone this time rather than in a batch of three, from the same per-index seed
    assert np.array_equal(regenerated, first["prior-00001.png"])
    assert read_record(ws.class_dir / "prior-00001.png")["seed"] == manifest.prior.seed + 1

    # 4. another class prompt makes the old images stale: refused, then replaced on request
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {"class_prompt": "a photo of a {class} on the beach"}))
    before = state(ws.class_dir)
    with pytest.raises(DboothError, match="--replace") as exc:
        api.prior(ws)
    assert "prior-00000.png" in str(exc.value)
    assert state(ws.class_dir) == before

    replaced = api.prior(ws, replace=True)
    assert replaced.present == 4
    assert sorted(p.name for p in ws.class_dir.iterdir()) == ["my-own-dog.png"] + generated
    for name in generated:
        assert read_record(ws.class_dir / name)["prompt"] == "a photo of a dog on the beach"
    assert user.read_bytes() == user_bytes



def test_a_full_disk_is_refused_before_generating(make_workspace, monkeypatch):
    from collections import namedtuple

    from dbooth.util import diskspace

    ws = make_workspace()
    usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1024))
    with pytest.raises(DboothError) as err:
        api.prior(ws)
    assert "not enough free space for 4 class images" in str(err.value) and str(ws.class_dir) in str(err.value)
    assert list(ws.class_dir.iterdir()) == []


def test_a_write_failing_mid_way_keeps_the_images_before_it(make_workspace, monkeypatch):
    import errno
    import os

    ws = make_workspace()
    real, calls = os.fsync, []

    def fill_up(fd):  # the third PNG's bytes are in its temporary file when the disk fills up
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fill_up)
    with pytest.raises(DboothError) as err:
        api.prior(ws)
    message = str(err.value)
    assert "disk is full" in message and "prior-00002.png" in message and "2 class images" in message
    assert sorted(p.name for p in ws.class_dir.iterdir()) == ["prior-00000.png", "prior-00001.png"]  # no temp file
    for p in ws.class_dir.iterdir():
        assert read_record(p)["index"] in (0, 1)
    monkeypatch.setattr(os, "fsync", real)
    assert len(api.prior(ws).generated) == 4


def _bucketed_photos(ws, sizes=((160, 96), (96, 160), (96, 96))):
    """Wide, tall and square photos: buckets 40x24, 24x40 and 32x32 at the tiny model's 32 px."""
    for photo, size in zip(sorted(ws.instance_dir.iterdir()), sizes):
        Image.open(photo).resize(size).save(photo)


def test_class_shapes_follow_the_photos_buckets():
    from dbooth.generate.class_images import class_shapes
    from dbooth.workspace.schema import Manifest

    m = apply_overrides(Manifest(class_noun="dog"), {"train.resolution": 512, "prior.num_class_images": 200})
    photos = [(1200, 900)] * 6 + [(1000, 1000)] * 3 + [(900, 1600)]
    assert class_shapes(m, photos) == [((512, 512), 200)]  # buckets off: all square, as before
    on = apply_overrides(m, {"train.buckets": True})
    # one each, the other 197 as 3:6:1 (59.1, 118.2, 19.7 -> 59, 118, 20): square first, as bucket_sizes orders
    assert class_shapes(on, photos) == [((512, 512), 60), ((576, 448), 119), ((384, 640), 21)]
    assert class_shapes(on, []) == [((512, 512), 200)]  # no photos yet: squares
    few = apply_overrides(on, {"prior.num_class_images": 2})
    assert class_shapes(few, photos) == [((512, 512), 1), ((576, 448), 1), ((384, 640), 1)]  # one per used bucket


def test_prior_makes_class_images_at_the_photos_buckets(make_workspace, monkeypatch):
    from dbooth.workspace.status import workspace_status

    ws = make_workspace(**{"train.buckets": True})
    _bucketed_photos(ws)
    result = api.prior(ws)
    # 4 images over three buckets with one photo each: one each, the spare one to the first (square)
    sizes = {p.name: Image.open(p).size for p in sorted(ws.class_dir.iterdir())}
    assert sizes == {"prior-00000.png": (32, 32), "prior-00001.png": (32, 32), "prior-00002.png": (40, 24),
                     "prior-00003.png": (24, 40)}
    assert result.shapes == [((32, 32), 2), ((40, 24), 1), ((24, 40), 1)] and result.missing == []
    for name, size in sizes.items():
        record = read_record(ws.class_dir / name)
        assert record["size"] == list(size) and record["resolution"] == 32
    status = workspace_status(ws)
    assert (status.class_images, status.class_images_wanted, status.class_images_stale) == (4, 4, 0)

    # resumable as before: a deleted image comes back at its index and size, with the same pixels
    wide = pixels(ws.class_dir / "prior-00002.png")
    (ws.class_dir / "prior-00002.png").unlink()
    api.prior(ws)
    assert np.array_equal(pixels(ws.class_dir / "prior-00002.png"), wide)
    with monkeypatch.context() as m:
        no_model_loading(m)
        assert api.prior(ws).missing == []

    # buckets off: the wide and tall images are made with other settings, for status and prior alike
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {"train.buckets": False}))
    assert workspace_status(ws).class_images_stale == 2
    with pytest.raises(DboothError, match="sizes the photos' aspect buckets do not use.*--replace"):
        api.prior(ws)
    api.prior(ws, replace=True)
    assert [Image.open(p).size for p in sorted(ws.class_dir.iterdir())] == [(32, 32)] * 4
    assert workspace_status(ws).class_images_stale == 0


def test_square_class_images_from_before_buckets_still_count(make_workspace, monkeypatch):
    """Switching buckets on keeps square images that a square photo's bucket can use; only new shapes are made,
    and images without a recorded size (older dbooth) count as squares."""
    import json

    from PIL.PngImagePlugin import PngInfo

    from dbooth.util.pngmeta import META_KEY

    ws = make_workspace()
    _bucketed_photos(ws, [(160, 96), (96, 96), (96, 96)])
    api.prior(ws)
    first = ws.class_dir / "prior-00000.png"
    record = read_record(first)
    del record["size"]
    info = PngInfo()
    info.add_text(META_KEY, json.dumps(record))
    Image.open(first).save(first, pnginfo=info)
    assert "size" not in read_record(first)
    result = api.prior(ws, {"train.buckets": True})
    # one each, the two spare as 2:1 (1.33, 0.67 -> 1, 1): squares 2 (four present), 40x24 2, made at 4 and 5
    assert result.shapes == [((32, 32), 2), ((40, 24), 2)] and not result.stale
    assert sorted(p.name for p in ws.class_dir.iterdir())[-2:] == ["prior-00004.png", "prior-00005.png"]
    assert Image.open(ws.class_dir / "prior-00005.png").size == (40, 24)


def test_training_picks_class_images_by_bucket():
    from dbooth.generate.class_images import pick_class_images
    from dbooth.workspace.schema import Manifest

    m = apply_overrides(Manifest(class_noun="dog"), {"train.resolution": 32, "prior.num_class_images": 3})
    paths = [f"c{i}.png" for i in range(6)]
    sizes = [(32, 32), (32, 32), (32, 32), (40, 24), (64, 64), (41, 24)]
    assert pick_class_images(paths, sizes, m, [(40, 24)]) == ["c0.png", "c1.png", "c2.png"]  # no buckets: first N
    on = apply_overrides(m, {"train.buckets": True})
    # photos: two wide, one square -> one each and the spare one to the wide bucket (2 of 3 photos)
    assert pick_class_images(paths, sizes, on, [(80, 48), (80, 48), (32, 32)]) == ["c0.png", "c3.png", "c5.png"]
    # no wide class image at all: the bucket borrows others (trained apart), the total stays
    assert pick_class_images(paths[:3], sizes[:3], on, [(80, 48), (80, 48), (32, 32)]) == paths[:3]


def test_prior_buckets_option_on_the_command_line(make_workspace):
    from typer.testing import CliRunner

    from dbooth.cli.app import app

    ws = make_workspace()
    _bucketed_photos(ws, [(160, 96), (160, 96), (96, 160)])
    result = CliRunner().invoke(app, ["prior", "-w", str(ws.root), "--buckets"])
    assert result.exit_code == 0, result.output
    assert "made: 4 images in" in result.output and "denoise" in result.output  # the time split, one line
    # one each, the spare two as 2:1 (1.33, 0.67 -> 1 and, by the larger remainder, 1): two of each
    sizes = [Image.open(p).size for p in sorted(ws.class_dir.iterdir())]
    assert sizes == [(40, 24), (40, 24), (24, 40), (24, 40)]
    assert ws.manifest().train.buckets is False  # a per-command choice, like train's options
