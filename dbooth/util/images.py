"""Reading users' photos: find them in a folder, load them upright as RGB, and turn them into tensors.

People drop in whatever their phone or camera made, so every image goes through one normalisation
(EXIF rotation, transparency on white, 16-bit scaled down rather than clipped) and every unreadable
file is reported at once, so the user fixes the folder in one go instead of one error per run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dbooth.util.errors import DboothError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
CROPS = ("center", "random")
MASK_SUFFIX = ".mask.png"  # NAME.mask.png beside NAME.jpg: white = subject, black = background
_MAX_LISTED = 8  # names shown in a one-line message before "+N more"


@dataclass
class ImageFolder:
    """What scan_folder found. `small` and `skipped` are warnings for the caller to show."""

    paths: list[Path] = field(default_factory=list)  # readable images, sorted by name
    skipped: list[Path] = field(default_factory=list)  # hidden files, non-image files, sub-folders
    small: list[Path] = field(default_factory=list)  # readable, but the shorter side is < min_side
    sizes: list[tuple[int, int]] = field(default_factory=list)  # upright (width, height) of each of `paths`


def scan_folder(folder: Path, *, what: str, min_side: int, allow_empty: bool = False) -> ImageFolder:
    """List the images directly inside `folder`, opening each fully so training never meets a bad file."""
    folder = Path(folder)
    where = _show(folder)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise DboothError(f"{what}: folder {where} {problem}; create it and put jpg/png/webp photos in it")

    found = ImageFolder()
    unreadable: list[str] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_mask(path):
            continue  # belongs to its photo (masked loss), not a photo itself
        if (path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_symlink()
                and not path.exists()):
            unreadable.append(f"{path.name} (a broken link or a link loop)")
            continue
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            # Hidden files include macOS "._photo.jpg" resource forks, which carry an image suffix.
            found.skipped.append(path)
            continue
        try:
            with Image.open(path) as img:
                img.verify()  # checksums and structure; the image cannot be used afterwards
            width, height = _open_rgb(path).size
        except Exception as exc:  # decoders raise many types; any of them means "unreadable"
            unreadable.append(f"{path.name} ({_reason(exc, path)})")
            continue
        found.paths.append(path)
        found.sizes.append((width, height))
        if min(width, height) < min_side:
            found.small.append(path)

    if unreadable:
        raise DboothError(
            f"{len(unreadable)} unreadable {what} in {where}: {_listing(unreadable)}; fix or remove them"
        )
    if not found.paths and not allow_empty:
        names = [p.name + ("/" if p.is_dir() else "") for p in found.skipped]
        seen = f"found: {_listing(names)}" if names else "folder is empty"
        raise DboothError(f"no {what} in {where} ({seen}); add jpg/png/webp photos of your subject")
    return found


def is_mask(path: Path) -> bool:
    """Whether ``path`` is a photo's loss mask (NAME.mask.png) rather than a photo."""
    return Path(path).name.lower().endswith(MASK_SUFFIX) and not Path(path).name.startswith(".")


def mask_file(photo: Path) -> Path:
    """Where a photo's optional loss mask lives: NAME.mask.png beside NAME.jpg."""
    return Path(photo).with_name(Path(photo).stem + MASK_SUFFIX)


def load_mask(path: Path) -> Image.Image:
    """A loss mask as 8-bit greyscale ("L"): 255 = subject, 0 = background, greys weigh in between."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L")
    except Exception as exc:
        raise DboothError(f"cannot read mask {_show(Path(path))}: {_reason(exc, Path(path))}; fix or remove it") from exc


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` by name, masks and hidden files left out, nothing opened;
    empty when it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
                  and not is_mask(p))


def upright_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as the image is shown (EXIF rotation applied), from its header alone; None when
    it will not open. For model-free summaries (``dbooth status``) that must not decode every photo."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            rotated = img.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
    except Exception:  # decoders raise many types; any of them means "unreadable"
        return None
    return (height, width) if rotated else (width, height)


def load_rgb(path: Path) -> Image.Image:
    """Open an image upright (EXIF orientation applied) as 8-bit RGB."""
    try:
        return _open_rgb(Path(path))
    except Exception as exc:
        raise DboothError(f"cannot read image {_show(Path(path))}: {_reason(exc, Path(path))}; fix or remove it") from exc


def resize_and_crop(
    img: Image.Image,
    resolution: int,
    *,
    crop: str = "center",
    rng: random.Random | None = None,
    flip: bool = False,
) -> Image.Image:
    """Scale the shorter side to `resolution` (small images are upscaled), then cut a square."""
    return resize_and_crop_with_geometry(img, resolution, crop=crop, rng=rng, flip=flip)[0]


def resize_and_crop_with_geometry(
    img: Image.Image,
    resolution: int,
    *,
    crop: str = "center",
    rng: random.Random | None = None,
    flip: bool = False,
    target: tuple[int, int] | None = None,
) -> tuple[Image.Image, tuple[int, int, int, int, int, int]]:
    """``resize_and_crop`` plus where the crop came from, as SDXL conditions on it:
    (original height, original width, crop top, crop left, target height, target width).

    ``target`` (width, height) cuts a rectangle (an aspect-ratio bucket) instead of a square: the image is
    scaled to cover it and the spare pixels along one side are cropped."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}")
    target_w, target_h = target or (resolution, resolution)
    width, height = img.size
    size = cover_size(width, height, target_w, target_h)
    if size != img.size:
        # Lanczos keeps detail when shrinking; bicubic rings less when enlarging.
        resample = Image.Resampling.LANCZOS if size[0] < width else Image.Resampling.BICUBIC
        img = img.resize(size, resample, reducing_gap=3.0)
    spare_x, spare_y = size[0] - target_w, size[1] - target_h
    if crop == "center":
        left, top = spare_x // 2, spare_y // 2
    else:
        rng = rng or random.Random()
        left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
    img = img.crop((left, top, left + target_w, top + target_h))
    geometry = (height, width, top, left, target_h, target_w)
    return (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img), geometry


def shrink(img: Image.Image, factor: int) -> Image.Image:
    """``img`` made ``factor`` times smaller with bicubic filtering (Pillow antialiases when shrinking): the
    low-resolution input of an upscaler's training pair."""
    return img.resize((img.width // factor, img.height // factor), Image.Resampling.BICUBIC)


def cover_size(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int]:
    """The smallest scaled size of a width x height image that covers target_w x target_h."""
    scale = max(target_w / width, target_h / height)
    return max(target_w, round(width * scale)), max(target_h, round(height * scale))


def crop_like(img: Image.Image, geometry: tuple, *, flip: bool) -> Image.Image:
    """Cut ``img`` (a photo's mask, the photo's size) exactly as the photo was cut to give ``geometry``."""
    height, width, top, left, target_h, target_w = (int(v) for v in geometry)
    if img.size != (width, height):
        raise ValueError(f"mask is {img.size[0]}x{img.size[1]} but its photo is {width}x{height}")
    size = cover_size(width, height, target_w, target_h)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    img = img.crop((left, top, left + target_w, top + target_h))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """float32 CHW in [-1, 1], the range the VAE was trained on."""
    import torch  # here, not at the top: scanning a folder (which the CLI does for quick checks) needs no torch

    array = np.asarray(_to_rgb(img), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def prepare(
    path_or_img: Path | str | Image.Image,
    resolution: int,
    *,
    crop: str = "center",
    rng: random.Random | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """One training example: load (or normalise) the image, resize, crop, flip, and make a tensor."""
    if isinstance(path_or_img, Image.Image):
        img = _to_rgb(ImageOps.exif_transpose(path_or_img))
    else:
        img = load_rgb(Path(path_or_img))
    return to_tensor(resize_and_crop(img, resolution, crop=crop, rng=rng, flip=flip))


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()  # decode every byte now: a truncated file fails here, not mid-training
        return _to_rgb(ImageOps.exif_transpose(img))


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; transparency is laid on white, deeper greyscale is scaled rather than clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _grey_to_8bit(img)  # Pillow's own conversion clips everything above 255 to white
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _grey_to_8bit(img: Image.Image) -> Image.Image:
    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        top = 65535.0
    else:
        # "I" and "F" say nothing about their range: take the smallest usual one the data fits in.
        peak = float(values.max()) if values.size else 0.0
        usual = (1.0, 255.0, 65535.0) if img.mode == "F" else (255.0, 65535.0)
        top = next((t for t in usual if peak <= t), peak)
    scaled = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # uint8, 2-D: mode "L"


def _reason(exc: Exception, path: Path) -> str:
    """A few words on why a file failed, without the full path the decoder likes to repeat."""
    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"
    text = str(exc).replace(str(path), path.name).strip().splitlines()
    if text and "truncated" in text[0].lower():
        return "truncated"
    return text[0] if text else type(exc).__name__


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", +{len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _show(path: Path) -> str:
    """A path as the user would type it: relative to the working directory where possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
