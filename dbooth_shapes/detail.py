"""Fine detail at high resolution: how much of a subject's pattern an upscaled image recovers.

The oracle judges 64 px images, where a subject's stripes, checks and dots are already visible
but soft; what stage (b) adds is the detail a 64 px image cannot hold. ``detail_band`` isolates
exactly that part of a 256 px image (the image minus its own 4x downscale, upscaled back), and
``detail_recovery`` compares that band with the subject's true rendering, inside the object:

- 1.0: all of the pattern's fine detail is there (the render itself scores 1);
- about 0: none recovered (a bicubic upscale of the 64 px image scores 0.05-0.15);
- below 0: detail invented that is not the subject's (another pattern scores -0.5 to -3).

``detail_error`` is the same comparison in absolute terms (RMS of the band difference inside the
object, 0 = exact): for a solid-coloured object, whose true band is near zero inside, it measures
detail invented on it, e.g. a subject's pattern painted onto every object of its class after
fine-tuning (language drift in stage b).

Both need the scene (placement and rotation) the image shows, so they judge upscales of rendered
64 px images, whose scene is known.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dbooth_shapes.world import Scene, object_coverage, render


def _float_image(image: Image.Image | np.ndarray) -> np.ndarray:
    """PIL image or uint8/float HWC array to float32 HWC in 0..1."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    return arr.astype(np.float32) / 255 if arr.dtype == np.uint8 else arr.astype(np.float32)


def detail_band(image: Image.Image | np.ndarray, factor: int = 4) -> np.ndarray:
    """The part of ``image`` that its ``factor``-times smaller version cannot hold: the image minus
    its area downscale upscaled back bicubically. Float HWC; zero for an image that is itself a
    smooth upscale."""
    x = torch.from_numpy(_float_image(image)).permute(2, 0, 1)[None]
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"image side {tuple(x.shape[-2:])} is not a multiple of {factor}")
    low = F.interpolate(x, scale_factor=1 / factor, mode="area")
    back = F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False)
    return (x - back)[0].permute(1, 2, 0).numpy()


def pattern_mask(scene: Scene, size: int, inset: float = 1.5 / 64) -> np.ndarray:
    """Pixels inside the object's outline, ``inset`` (a fraction of the side: 6 px at 256) away
    from it: where its pattern is drawn, without the object's own edge, whose sharpness is not
    the pattern's."""
    mask, outline = object_coverage(scene, size)
    inner = torch.from_numpy(((mask - outline) > 0.5).astype(np.float32))[None, None]
    r = round(inset * size)
    if r > 0:
        inner = -F.max_pool2d(-inner, 2 * r + 1, stride=1, padding=r)  # erosion by r pixels
    return inner[0, 0].numpy() > 0.5


def detail_recovery(image: Image.Image | np.ndarray, scene: Scene, factor: int = 4) -> float:
    """1 - |band(image) - band(render)|^2 / |band(render)|^2 inside the object: the fraction of the
    subject's fine detail recovered (see the module docstring for the scale)."""
    if scene.pattern == "solid":
        raise ValueError("a solid-coloured object has no pattern detail to recover")
    size = _float_image(image).shape[0]
    mask = pattern_mask(scene, size)
    got, want = detail_band(image, factor)[mask], detail_band(render(scene, size), factor)[mask]
    return float(1 - ((got - want) ** 2).sum() / ((want**2).sum() + 1e-12))


def detail_error(image: Image.Image | np.ndarray, scene: Scene, factor: int = 4) -> float:
    """RMS difference between the image's detail band and the true render's, inside the object."""
    size = _float_image(image).shape[0]
    mask = pattern_mask(scene, size)
    got, want = detail_band(image, factor)[mask], detail_band(render(scene, size), factor)[mask]
    return float(np.sqrt(((got - want) ** 2).mean()))


def psnr(image: Image.Image | np.ndarray, reference: Image.Image | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for 0..1 images."""
    mse = float(((_float_image(image) - _float_image(reference)) ** 2).mean())
    return float(10 * np.log10(1 / max(mse, 1e-12)))


__all__ = ["detail_band", "detail_error", "detail_recovery", "pattern_mask", "psnr"]
