"""The procedurally rendered world that the built-in model is pretrained on.

A scene is one object (a shape noun in a solid colour, or a patterned example subject)
on a context texture modelled on DreamBench's prompts. Rendering depends only on the
``Scene`` fields, so a scene is reproducible from its dataclass alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw

SHAPES = ("star", "circle", "square", "triangle", "heart", "ring")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 75, 215),
    "green": (30, 165, 55),
    "yellow": (245, 215, 35),
    "orange": (245, 135, 25),
    "purple": (135, 50, 185),
    "white": (248, 248, 248),
    "black": (22, 22, 22),
}

CONTEXTS = (
    "in the snow",
    "on the beach",
    "in the jungle",
    "on top of a wooden floor",
    "on top of pink fabric",
    "floating on top of water",
    "with a mountain in the background",
    "with a city in the background",
    "on a cobblestone street",
    "with a wheat field in the background",
)

PATTERNS = ("solid", "checkered", "striped", "polka", "split")

IMAGE_SIZE = 64
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    """One object on one context. ``size`` is the object's radius as a fraction of the image."""

    shape: str
    colour: str
    context: str
    x: float = 0.5
    y: float = 0.5
    size: float = 0.22
    rotation: float = 0.0
    texture_seed: int = 0
    pattern: str = "solid"
    colour2: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown context {self.context!r}; expected one of {CONTEXTS}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; expected one of {PATTERNS}")
        for c in (self.colour, self.colour2):
            if c is not None and c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; expected one of {tuple(COLOURS)}")


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def random_scene(
    rng: np.random.Generator | int | None,
    shapes: tuple[str, ...] = SHAPES,
    colours: tuple[str, ...] = tuple(COLOURS),
    contexts: tuple[str, ...] = CONTEXTS,
) -> Scene:
    """A solid-coloured object with random placement; patterns are reserved for subjects."""
    rng = _rng(rng)
    return Scene(
        shape=str(rng.choice(shapes)),
        colour=str(rng.choice(colours)),
        context=str(rng.choice(contexts)),
        **random_placement(rng),
    )


def random_placement(rng: np.random.Generator) -> dict:
    """Position, size, rotation and texture seed, kept so the context stays visible."""
    size = float(rng.uniform(0.16, 0.27))
    return dict(
        x=float(rng.uniform(0.25 + size / 3, 0.75 - size / 3)),
        y=float(rng.uniform(0.3 + size / 3, 0.75 - size / 3)),
        size=size,
        rotation=float(rng.uniform(-1.0, 1.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# ----------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, colour: bool = True, context: bool = True, prefix: bool = True) -> str:
    """The paper's caption style: "a photo of a blue star on the beach"."""
    noun = f"{scene.colour} {scene.shape}" if colour else scene.shape
    text = f"{_article(noun)} {noun}"
    if context:
        text += f" {scene.context}"
    return f"a photo of {text}" if prefix else text


def pretraining_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A full or partial caption, so "a photo of a star" stays diverse in colour and context."""
    r = rng.random()
    if r < 0.45:
        return caption(scene)
    if r < 0.6:
        return caption(scene, colour=False)
    if r < 0.75:
        return caption(scene, context=False)
    if r < 0.85:
        return caption(scene, colour=False, context=False)
    return caption(scene, colour=bool(rng.random() < 0.5), prefix=False)


def world_words() -> list[str]:
    """Every word a pretraining caption can contain."""
    words = ["a", "an", "photo", "of"] + list(SHAPES) + list(COLOURS)
    for c in CONTEXTS:
        words += c.split()
    return list(dict.fromkeys(words))


# ----------------------------------------------------------------------------- rendering


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Render a scene as an RGB image of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(scene.texture_seed)
    background = _TEXTURES[scene.context](rng, size)
    fill, mask, outline = _object_layers(scene, size)
    # The outline is the part of the coverage that is not inner fill, so the three add to one.
    inner = (mask - outline)[..., None]
    img = background * (1 - mask[..., None]) + fill * inner + _outline_colour(scene) * outline[..., None]
    return Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


def _outline_colour(scene: Scene) -> np.ndarray:
    c = np.array(COLOURS[scene.colour], dtype=np.float64) / 255
    return c * 0.55 if c.mean() > 0.3 else c + 0.35


def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "star":
        pts = [(r if i % 2 == 0 else 0.45 * r, -math.pi / 2 + i * math.pi / 5) for i in range(10)]
    elif shape == "square":
        pts = [(r * 0.95, math.pi / 4 + i * math.pi / 2) for i in range(4)]
    elif shape == "triangle":
        pts = [(r * 1.05, -math.pi / 2 + i * 2 * math.pi / 3) for i in range(3)]
    elif shape == "heart":
        out = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            hx = 16 * math.sin(t) ** 3
            hy = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            out.append((math.hypot(hx, hy + 2) * r / 16.5, math.atan2(hy + 2, hx)))
        pts = out
    else:  # circle and ring
        pts = [(r, 2 * math.pi * i / 64) for i in range(64)]
    rot = rot * (0.5 if shape == "heart" else math.pi)
    return [(cx + d * math.cos(a + rot), cy + d * math.sin(a + rot)) for d, a in pts]


def _object_layers(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill colours, coverage mask and outline coverage, antialiased by supersampling.

    Only the object's bounding box is supersampled, which keeps a render near a millisecond.
    """
    k = _SUPERSAMPLE
    reach = scene.size * 1.15 * size + 2
    x0, x1 = max(0, int(scene.x * size - reach)), min(size, int(math.ceil(scene.x * size + reach)))
    y0, y1 = max(0, int(scene.y * size - reach)), min(size, int(math.ceil(scene.y * size + reach)))
    w, h = x1 - x0, y1 - y0
    cx, cy, r = (scene.x * size - x0) * k, (scene.y * size - y0) * k, scene.size * size * k
    full = Image.new("L", (w * k, h * k), 0)
    draw = ImageDraw.Draw(full)
    draw.polygon(_shape_polygon(scene.shape, cx, cy, r, scene.rotation), fill=255)
    if scene.shape == "ring":
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    # Stroke the boundary (width ~2 output pixels at 64 px) and remove it from the fill.
    stroke = Image.new("L", full.size, 0)
    sdraw = ImageDraw.Draw(stroke)
    width = max(2, k * size // 32)
    poly = _shape_polygon(scene.shape, cx, cy, r, scene.rotation)
    sdraw.line(poly + poly[:1], fill=255, width=width, joint="curve")
    if scene.shape == "ring":
        q = 0.55 * r + width
        sdraw.ellipse([cx - q, cy - q, cx + q, cy + q], outline=255, width=width)
    inner = ImageChops.subtract(full, stroke)

    def down(a: np.ndarray) -> np.ndarray:
        return a.reshape(h, k, w, k, *a.shape[2:]).mean(axis=(1, 3))

    full_a = np.asarray(full, dtype=np.float32) / 255
    inner_a = np.asarray(inner, dtype=np.float32) / 255
    inner_small = down(inner_a)
    if scene.pattern == "solid":
        fill_small = np.broadcast_to(np.array(COLOURS[scene.colour], np.float32) / 255, (h, w, 3))
    else:
        fill = _pattern_fill(scene, w * k, h * k, cx, cy, r)
        fill_small = down(fill * inner_a[..., None]) / np.maximum(inner_small, 1e-6)[..., None]
        fill_small = np.where(inner_small[..., None] > 0, fill_small, _outline_colour(scene))
    mask_small = down(full_a)
    outline_small = np.clip(mask_small - inner_small, 0, 1)
    fill_out = np.zeros((size, size, 3), np.float32)
    mask, outline = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    fill_out[y0:y1, x0:x1] = fill_small
    mask[y0:y1, x0:x1] = mask_small
    outline[y0:y1, x0:x1] = outline_small
    return fill_out, mask, outline


def object_coverage(scene: Scene, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The object's coverage and its outline's, each (size, size) in 0..1, as ``render`` blends them."""
    _, mask, outline = _object_layers(scene, size)
    return mask, outline


def _pattern_fill(scene: Scene, w: int, h: int, cx: float, cy: float, r: float) -> np.ndarray:
    """The object's surface colours in object-local coordinates, so patterns turn with it."""
    c1 = np.array(COLOURS[scene.colour], dtype=np.float32) / 255
    c2 = np.array(COLOURS[scene.colour2 or "white"], dtype=np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = -scene.rotation * (0.5 if scene.shape == "heart" else math.pi)
    dx, dy = (xx - cx) / r, (yy - cy) / r
    u = dx * math.cos(a) - dy * math.sin(a)
    v = dx * math.sin(a) + dy * math.cos(a)
    if scene.pattern == "checkered":
        second = (np.floor(u * 1.6 + 8) + np.floor(v * 1.6 + 8)) % 2 == 1
    elif scene.pattern == "striped":
        second = np.floor(v * 2.2 + 8) % 2 == 1
    elif scene.pattern == "polka":
        gu, gv = (u + 8) / 0.75, (v + 8) / 0.75
        second = np.hypot(gu - np.round(gu), gv - np.round(gv)) < 0.27
    else:  # split
        second = u > 0
    return np.where(second[..., None], c2, c1)


# ----------------------------------------------------------------------------- textures
# Each takes (rng, n) and returns an (n, n, 3) float image in 0..1.


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / n
    return x, y


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Bilinear value noise in -1..1: soft, large-scale variation."""
    coarse = rng.uniform(-1, 1, (cells + 1, cells + 1))
    img = Image.fromarray(coarse.astype(np.float32), "F").resize((n, n), Image.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def _vertical(top: tuple, bottom: tuple, n: int) -> np.ndarray:
    _, y = _grid(n)
    t, b = np.array(top) / 255, np.array(bottom) / 255
    return t * (1 - y[..., None]) + b * y[..., None]


def _sky(rng: np.random.Generator, n: int) -> np.ndarray:
    return _vertical((110, 165, 235), (190, 220, 250), n) + rng.uniform(-0.04, 0.04, 3)


def _snow(rng, n):
    x, y = _grid(n)
    horizon = rng.uniform(0.2, 0.35) + 0.05 * np.sin(x * rng.uniform(3, 8) + rng.uniform(0, 6))
    sky = _vertical((170, 180, 195), (215, 220, 230), n)
    ground = np.array([0.95, 0.97, 1.0]) + 0.04 * _smooth_noise(rng, n, 6)[..., None] * np.array([1, 1, 0.3])
    img = np.where((y < horizon)[..., None], sky, ground)
    flakes = rng.random((n, n)) < 0.06
    img[flakes] = 1.0
    return img


def _beach(rng, n):
    _, y = _grid(n)
    h1 = rng.uniform(0.18, 0.3)
    h2 = h1 + rng.uniform(0.12, 0.2)
    sand = np.array([0.88, 0.77, 0.52]) + 0.05 * rng.standard_normal((n, n, 1))
    sea = np.array([0.08, 0.42, 0.72]) + 0.05 * _smooth_noise(rng, n, 10)[..., None]
    img = np.where((y < h1)[..., None], _sky(rng, n), np.where((y < h2)[..., None], sea, sand))
    foam = np.abs(y - h2) < 0.02
    img[foam] = [0.95, 0.95, 0.92]
    return img


def _jungle(rng, n):
    m = n * 2
    im = Image.new("RGB", (m, m), (12, 55, 20))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 4))):
        tx = rng.uniform(0, m)
        d.rectangle([tx, 0, tx + m * 0.05, m], fill=(60, 40, 20))
    for _ in range(70):
        cx, cy = rng.uniform(0, m, 2)
        w, h = rng.uniform(0.05, 0.14) * m, rng.uniform(0.02, 0.05) * m
        g = (int(rng.uniform(20, 80)), int(rng.uniform(100, 190)), int(rng.uniform(20, 60)))
        d.ellipse([cx - w, cy - h, cx + w, cy + h], fill=g)
    return np.asarray(im.resize((n, n), Image.BOX), dtype=np.float64) / 255


def _wooden_floor(rng, n):
    x, y = _grid(n)
    plank_h = rng.uniform(0.12, 0.2)
    offset = rng.uniform(0, plank_h)
    idx = np.floor((y + offset) / plank_h).astype(int)
    tones = rng.uniform(-0.08, 0.08, idx.max() + 2)
    base = np.array([0.58, 0.37, 0.18]) + tones[idx][..., None]
    grain = 0.06 * np.sin(y * n * 1.7 + 3 * np.sin(x * rng.uniform(4, 9) + idx))
    seam = ((y + offset) / plank_h) % 1 < 1.4 / (plank_h * n)
    img = base + grain[..., None]
    img[seam] = [0.25, 0.14, 0.06]
    return img


def _pink_fabric(rng, n):
    x, y = _grid(n)
    a = rng.uniform(0, math.pi)
    t = x * math.cos(a) + y * math.sin(a)
    folds = np.sin(t * rng.uniform(10, 18) + 2 * _smooth_noise(rng, n, 3))
    return np.array([0.96, 0.62, 0.76]) * (0.87 + 0.12 * folds)[..., None]


def _water(rng, n):
    x, y = _grid(n)
    base = _vertical((20, 90, 150), (10, 60, 120), n)
    wave = np.sin(y * n * 0.9 + 3 * np.sin(x * rng.uniform(5, 10) + rng.uniform(0, 6)) + 2 * _smooth_noise(rng, n, 4))
    img = base + 0.05 * wave[..., None]
    img[wave > 0.8] = [0.55, 0.78, 0.92]
    return img


def _mountain(rng, n):
    x, y = _grid(n)
    img = _sky(rng, n)
    ground_y = rng.uniform(0.62, 0.72)
    for _ in range(int(rng.integers(1, 3))):
        px, py = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
        slope = (ground_y - py) / rng.uniform(0.3, 0.5)
        inside = y > py + slope * np.abs(x - px)
        shade = np.where(x < px, 0.48, 0.4)
        img = np.where(inside[..., None], shade[..., None] * np.array([1, 1, 1.1]), img)
        cap = inside & (y < py + (ground_y - py) * 0.3)
        img[cap] = [0.95, 0.96, 1.0]
    ground = np.array([0.3, 0.55, 0.22]) + 0.04 * _smooth_noise(rng, n, 8)[..., None]
    return np.where((y > ground_y)[..., None], ground, img)


def _city(rng, n):
    x, y = _grid(n)
    img = _vertical((240, 180, 120), (250, 215, 170), n)
    street_y = rng.uniform(0.72, 0.8)
    edge = 0.0
    while edge < 1:
        w = rng.uniform(0.08, 0.18)
        top = rng.uniform(0.08, 0.45)
        tone = rng.uniform(0.25, 0.45)
        b = (x >= edge) & (x < edge + w) & (y > top) & (y < street_y)
        img[b] = [tone, tone, tone + 0.08]
        win = b & ((x * n - edge * n) % 4 < 1.5) & ((y * n) % 5 < 2) & (rng.random((n, n)) < 0.6)
        img[win] = [0.98, 0.88, 0.45]
        edge += w
    img[y >= street_y] = [0.2, 0.2, 0.22]
    return img


def _cobblestone(rng, n):
    x, y = _grid(n)
    rows = rng.uniform(6, 9)
    ry = y * rows
    shift = np.where(np.floor(ry) % 2 == 0, 0.0, 0.5)
    rx = x * rows * 0.8 + shift
    fu, fv = rx % 1, ry % 1
    stone = (np.abs(fu - 0.5) < 0.4) & (np.abs(fv - 0.5) < 0.38)
    tone = 0.5 + 0.1 * np.sin(np.floor(rx) * 12.9898 + np.floor(ry) * 78.233 + rng.uniform(0, 6))
    img = np.where(stone[..., None], tone[..., None] * np.array([1.0, 0.96, 0.9]), np.array([0.2, 0.19, 0.18]))
    return img + 0.03 * rng.standard_normal((n, n, 1))


def _wheat_field(rng, n):
    x, y = _grid(n)
    horizon = rng.uniform(0.25, 0.38)
    field = np.array([0.86, 0.68, 0.26]) + 0.1 * np.sin(x * n * 2.1 + 3 * _smooth_noise(rng, n, 5))[..., None] * np.array([1, 1, 0.5])
    field = field * (0.85 + 0.15 * y[..., None])
    return np.where((y < horizon)[..., None], _sky(rng, n), field)


_TEXTURES = {
    "in the snow": _snow,
    "on the beach": _beach,
    "in the jungle": _jungle,
    "on top of a wooden floor": _wooden_floor,
    "on top of pink fabric": _pink_fabric,
    "floating on top of water": _water,
    "with a mountain in the background": _mountain,
    "with a city in the background": _city,
    "on a cobblestone street": _cobblestone,
    "with a wheat field in the background": _wheat_field,
}


def render_batch(scenes: list[Scene], size: int = IMAGE_SIZE) -> np.ndarray:
    """Render scenes into one uint8 array of shape (N, size, size, 3)."""
    return np.stack([np.asarray(render(s, size)) for s in scenes])


__all__ = [
    "COLOURS", "CONTEXTS", "IMAGE_SIZE", "PATTERNS", "SHAPES", "Scene", "caption", "object_coverage",
    "pretraining_caption", "random_placement", "random_scene", "render", "render_batch", "replace", "world_words",
]
