"""Every kind of photo people drop into a workspace, built in code, plus the real DreamBench photos."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dbooth.util.errors import DboothError
from dbooth.util.images import IMAGE_SUFFIXES, ImageFolder, load_rgb, prepare, resize_and_crop, scan_folder, to_tensor

DREAMBENCH = Path(__file__).resolve().parents[3] / "shared" / "dreambench" / "images"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def halves(size=(40, 20), left=RED, right=BLUE) -> Image.Image:
    """A picture whose orientation can be read back: left half one colour, right half another."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def mode_of(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def close(pixel, expected, tol=12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def write_png16_rgb(path: Path, value: int, size=(8, 8)) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    width, height = size
    row = b"\x00" + struct.pack(">HHH", value, value, value) * width
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)),
        (b"IDAT", zlib.compress(row * height)),
        (b"IEND", b""),
    ]
    data = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )
    path.write_bytes(data)


def test_suffixes_are_lower_case_with_dot():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"} <= IMAGE_SUFFIXES
    assert all(s.startswith(".") and s == s.lower() for s in IMAGE_SUFFIXES)


# --- scan_folder ---------------------------------------------------------------------------------


def test_scan_finds_every_format_in_any_case_and_skips_the_rest(tmp_path):
    names = ["a.jpg", "b.JPEG", "c.Png", "d.webp", "e.BMP", "f.tif", "g.TIFF"]
    for name in names:
        halves((64, 48)).save(tmp_path / name)
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "notes.txt").write_text("corgi photos from the park")
    (tmp_path / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 apple double")  # macOS resource fork
    (tmp_path / "more").mkdir()
    halves().save(tmp_path / "more" / "nested.jpg")

    found = scan_folder(tmp_path, what="instance images", min_side=32)

    assert [p.name for p in found.paths] == names
    assert sorted(p.name for p in found.skipped) == sorted([".DS_Store", "notes.txt", "._a.jpg", "more"])
    assert found.small == []


def test_scan_reports_small_images_without_failing(tmp_path):
    halves((200, 150)).save(tmp_path / "tiny.png")
    halves((600, 512)).save(tmp_path / "fine.png")
    found = scan_folder(tmp_path, what="instance images", min_side=512)
    assert [p.name for p in found.paths] == ["fine.png", "tiny.png"]
    assert [p.name for p in found.small] == ["tiny.png"]


def test_scan_missing_folder(tmp_path):
    with pytest.raises(DboothError, match=r"instance images: folder .*corgi/instance does not exist; create it"):
        scan_folder(tmp_path / "corgi" / "instance", what="instance images", min_side=64)


def test_scan_empty_folder_lists_what_it_found(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DboothError) as err:
        scan_folder(tmp_path, what="instance images", min_side=64)
    message = str(err.value)
    assert message.startswith("no instance images in ")
    assert "(found: .DS_Store, notes.txt); add jpg/png/webp photos" in message
    assert "\n" not in message


def test_scan_empty_folder_allowed(tmp_path):
    assert scan_folder(tmp_path, what="class images", min_side=64, allow_empty=True) == ImageFolder()
    with pytest.raises(DboothError, match=r"\(folder is empty\)"):
        scan_folder(tmp_path, what="class images", min_side=64)


def test_scan_lists_all_unreadable_files_in_one_error(tmp_path):
    halves((64, 64)).save(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_text("this is not a jpeg")
    for name, fmt in [("half.jpg", "JPEG"), ("half.png", "PNG")]:
        halves((256, 256)).save(tmp_path / name, format=fmt)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])

    with pytest.raises(DboothError) as err:
        scan_folder(tmp_path, what="instance images", min_side=32)
    message = str(err.value)
    assert message.startswith("3 unreadable instance images in ")
    assert "broken.jpg (cannot identify image file)" in message
    assert "half.jpg (truncated)" in message
    assert "half.png (" in message
    assert "good.jpg" not in message
    assert str(tmp_path / "broken.jpg") not in message  # names only, not the decoder's full path
    assert message.endswith("; fix or remove them")


def test_load_rgb_names_an_unreadable_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DboothError, match=r"cannot read image .*broken\.png"):
        load_rgb(tmp_path / "broken.png")


# --- load_rgb: orientation and colour ------------------------------------------------------------


@pytest.mark.parametrize("orientation, top, bottom", [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_rotation_is_applied(tmp_path, orientation, top, bottom):
    img = halves((40, 20))
    exif = img.getexif()
    exif[0x0112] = orientation  # 6: display rotated 90° clockwise, 8: counter-clockwise
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)

    out = load_rgb(tmp_path / "phone.jpg")
    assert out.mode == "RGB"
    assert out.size == (20, 40)  # the wide picture now stands tall
    assert close(out.getpixel((10, 2)), top)
    assert close(out.getpixel((10, 37)), bottom)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_becomes_white(tmp_path, mode):
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (0, 0, 4, 8))  # left half opaque black, right half clear
    img.convert(mode).save(tmp_path / "cutout.png")

    out = load_rgb(tmp_path / "cutout.png")
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (0, 0, 0)
    assert out.getpixel((6, 1)) == WHITE


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    img.paste(1, (0, 0, 4, 8))
    img.save(tmp_path / "sticker.png", transparency=0)

    out = load_rgb(tmp_path / "sticker.png")
    assert out.getpixel((1, 1)) == RED
    assert out.getpixel((6, 1)) == WHITE


def test_16bit_greyscale_png_keeps_mid_grey(tmp_path):
    Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16)).save(tmp_path / "scan.png")
    assert mode_of(tmp_path / "scan.png") == "I;16"
    assert close(load_rgb(tmp_path / "scan.png").getpixel((3, 3)), (128, 128, 128), tol=1)


def test_32bit_int_tiff_with_16bit_values_keeps_mid_grey(tmp_path):
    Image.fromarray(np.full((16, 16), 32768, dtype=np.int32)).save(tmp_path / "scan.tif")
    assert mode_of(tmp_path / "scan.tif") == "I"
    assert close(load_rgb(tmp_path / "scan.tif").getpixel((3, 3)), (128, 128, 128), tol=1)


def test_big_endian_16bit_grey_image_keeps_mid_grey():
    img = Image.frombytes("I;16B", (4, 4), np.full((4, 4), 32768, dtype=">u2").tobytes())
    tensor = prepare(img, 4)
    assert torch.allclose(tensor, torch.zeros_like(tensor), atol=2 / 255)


def test_16bit_rgb_png_keeps_its_colour(tmp_path):
    write_png16_rgb(tmp_path / "deep.png", 32768)
    assert close(load_rgb(tmp_path / "deep.png").getpixel((2, 2)), (128, 128, 128), tol=1)


def test_8bit_greyscale_becomes_rgb(tmp_path):
    Image.new("L", (8, 8), 77).save(tmp_path / "grey.jpg")
    out = load_rgb(tmp_path / "grey.jpg")
    assert out.mode == "RGB" and close(out.getpixel((2, 2)), (77, 77, 77), tol=2)


def test_cmyk_jpeg_converts_to_roughly_the_right_colour(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "print.jpg", quality=95)  # pure cyan
    assert mode_of(tmp_path / "print.jpg") == "CMYK"
    assert close(load_rgb(tmp_path / "print.jpg").getpixel((8, 8)), (0, 255, 255), tol=20)


# --- resize_and_crop, to_tensor, prepare ---------------------------------------------------------


def gradient(size=(120, 40)) -> Image.Image:
    """Every column a different colour, so any two crops of different positions differ."""
    width, height = size
    columns = np.linspace(0, 255, width).astype(np.uint8)
    array = np.stack([np.tile(columns, (height, 1))] * 3, axis=-1)
    array[..., 2] = 255 - array[..., 2]
    return Image.fromarray(array)


@pytest.mark.parametrize("size", [(4000, 3000), (200, 300), (17, 9)])
def test_resize_and_crop_gives_a_square_of_the_resolution(size):
    assert resize_and_crop(Image.new("RGB", size), 64).size == (64, 64)


def test_center_crop_takes_the_middle():
    img = halves((300, 100), left=RED, right=BLUE)
    img.paste((0, 255, 0), (100, 0, 200, 100))  # the middle third is green
    out = resize_and_crop(img, 50)
    assert out.size == (50, 50)
    assert all(close(out.getpixel((x, 25)), (0, 255, 0)) for x in (3, 25, 46))


def test_random_crop_is_seeded_and_moves():
    img = gradient()
    center = np.asarray(resize_and_crop(img, 32))
    first = [np.asarray(resize_and_crop(img, 32, crop="random", rng=random.Random(seed))) for seed in range(6)]
    again = [np.asarray(resize_and_crop(img, 32, crop="random", rng=random.Random(seed))) for seed in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert any(not np.array_equal(a, center) for a in first)
    assert len({a.tobytes() for a in first}) > 1


def test_flip_mirrors_horizontally():
    img = gradient()
    plain = np.asarray(resize_and_crop(img, 32))
    flipped = np.asarray(resize_and_crop(img, 32, flip=True))
    assert np.array_equal(flipped, plain[:, ::-1])
    assert not np.array_equal(flipped, plain)


def test_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="center, random"):
        resize_and_crop(gradient(), 32, crop="top")


def test_to_tensor_is_chw_float_in_minus_one_to_one():
    img = Image.new("RGB", (6, 4), (0, 255, 0))
    tensor = to_tensor(img)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 4, 6)
    assert tensor[0].eq(-1).all() and tensor[1].eq(1).all() and tensor[2].eq(-1).all()


def test_prepare_from_path_and_from_image_agree(tmp_path):
    gradient().save(tmp_path / "g.png")
    from_path = prepare(tmp_path / "g.png", 16, flip=True)
    from_str = prepare(str(tmp_path / "g.png"), 16, flip=True)
    from_image = prepare(gradient(), 16, flip=True)
    assert from_path.shape == (3, 16, 16)
    assert torch.equal(from_path, from_image) and torch.equal(from_path, from_str)


# --- real photos ---------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["dog", "cat"])
def test_real_dreambench_photos(subject):
    folder = DREAMBENCH / subject
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    found = scan_folder(folder, what=f"{subject} images", min_side=64)
    assert found.paths and found.small == []
    for path in found.paths:
        tensor = prepare(path, 64, crop="random", rng=random.Random(0))
        assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
        assert tensor.min() >= -1 and tensor.max() <= 1
        assert tensor.std() > 0.05  # a photo, not a blank
