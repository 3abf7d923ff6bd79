"""Fixtures for the identifier tests: a CLIP-like model folder (tokenizer only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clip_bpe import COMMON, RARE, write_clip_bpe


@pytest.fixture(scope="session")
def clip_like(tmp_path_factory) -> Path:
    """A model folder (tokenizer only) whose vocabulary lists COMMON's merges before RARE's."""
    return write_clip_bpe(tmp_path_factory.mktemp("clip-like") / "model", COMMON + RARE)
