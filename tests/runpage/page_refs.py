"""Reading a run page back: its images, links and sections, and the check that every one of them resolves."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.ids = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])
        if tag == "section":
            self.ids.append(a["id"])


def refs(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def assert_everything_resolves(page: Path) -> _Refs:
    """Every ``<img src>`` and ``<a href>`` names an existing file (or folder) relative to the page; anchors
    name a section on it; nothing is fetched from elsewhere and no script runs."""
    found = refs(page)
    for ref in found.imgs + found.links:
        if ref.startswith("#"):
            assert ref[1:] in found.ids, ref
            continue
        assert "://" not in ref and not ref.startswith(("/", "data:")), ref
        assert (page.parent / unquote(ref)).exists(), ref
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    return found
