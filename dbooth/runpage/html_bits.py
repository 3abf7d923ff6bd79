"""Small HTML helpers for the run page: escaping, links and images by a path relative to the page, tables,
copyable commands. Image sizes come from the PNG header (24 bytes), so no image is decoded."""

from __future__ import annotations

import html
import os
import re
import shlex
import struct
from pathlib import Path
from urllib.parse import quote

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def esc(value) -> str:
    return html.escape(str(value))


def href(target: Path, page_dir: Path) -> str:
    """``target`` as a URL relative to the page's folder (``../../samples/RUN%40step-000020/...``); a folder's
    ends in ``/``."""
    return quote(Path(os.path.relpath(target, page_dir)).as_posix()) + ("/" if target.is_dir() else "")


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk; None for anything that is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE):
        return None
    return struct.unpack(">II", head[16:24])


def img(path: Path, page_dir: Path, alt: str, width: int | None = None, cell: int | None = None,
        scale: float = 1, most: int | None = None) -> str:
    """An ``<img>`` of the file at ``path``: ``width`` pixels wide, or with ``cell``, ``cell`` pixels per image of
    a row of square images (a grid), else ``scale`` times its own width, at ``most`` pixels wide; an image shown
    larger than it is is enlarged pixel for pixel."""
    size = png_size(path)
    attrs = ""
    if size is not None:
        w, h = size
        if cell is not None and h:
            width = cell * max(1, round(w / h))
        shown = min(width or round(w * scale), most or 10**6)
        attrs = f' width="{shown}" height="{round(h * shown / w) if w else h}"'
        attrs += ' class="px"' if shown > w else ""
    return f'<img src="{href(path, page_dir)}" alt="{esc(alt)}"{attrs} loading="lazy">'


def marked(text: str) -> str:
    """``text`` escaped, its Markdown backticks turned into <code>."""
    pieces = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{esc(p)}</code>" if i % 2 else esc(p) for i, p in enumerate(pieces))


def link(path: Path, page_dir: Path, text: str | None = None) -> str:
    return f'<a href="{href(path, page_dir)}">{esc(text if text is not None else path.name)}</a>'


def command(*args: str) -> str:
    """A shell command, each argument quoted where the shell needs it, in a copyable block."""
    return f"<pre class=cmd><code>{esc(' '.join(shlex.quote(str(a)) for a in args))}</code></pre>"


def code(text: str) -> str:
    return f"<pre><code>{esc(text)}</code></pre>"


def table(head: list[str], rows: list[list[str]], css_class: str = "") -> str:
    """A table of already-escaped cells."""
    cls = f' class="{css_class}"' if css_class else ""
    top = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{cls}><tr>{top}</tr>{body}</table>"


def section(key: str, title: str, *body: str) -> str:
    return "\n".join([f'<section id="{key}"><h2>{esc(title)}</h2>', *[b for b in body if b], "</section>"])

