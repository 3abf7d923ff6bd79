"""Drawn stand-ins for subject photos, shared by fixtures and tests (a module of its own: tests import
it by name, which a conftest.py in a test folder would shadow)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def draw_subject(path: Path, i: int, size: int = 96) -> Path:
    """A blue disc on a warm background, shifted a little per image."""
    im = Image.new("RGB", (size, size), (200, 120 + 10 * i, 60))
    d = ImageDraw.Draw(im)
    o = 8 + 3 * i
    d.ellipse((o, o, size - 20 + i, size - 20 + i), fill=(30, 40, 210))
    im.save(path)
    return path


def draw_photos(folder: Path, count: int = 3) -> Path:
    """``folder`` (created) with ``count`` drawn subject photos, 00.jpg, 01.jpg, ..."""
    folder.mkdir(parents=True)
    for i in range(count):
        draw_subject(folder / f"{i:02d}.jpg", i)
    return folder
