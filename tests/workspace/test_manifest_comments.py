"""A value init takes from the base model's defaults carries a comment saying whose it is and why; rewriting
the manifest neither stacks nor keeps stale comments, and a base without defaults gets none."""

from __future__ import annotations

import re

import pytest

from dbooth import api, plugins
from dbooth.plugins import NamedModel, Registry, default_comments
from dbooth.workspace.config import (
    apply_overrides,
    load_manifest,
    render_manifest,
    template_path,
    write_manifest,
)

SLOT = re.compile(r"^(\s*)([A-Za-z0-9_]+): \{\{\s*([A-Za-z0-9_.]+)\s*\}\}$")


def commented(text: str) -> dict[str, str]:
    """``{dotted key: comment}`` for every value line that ends in a comment, keys read off the template."""
    slots = [m[3] if m else None for m in map(SLOT.match, template_path().read_text().splitlines())]
    found = {}
    for key, line in zip(slots, text.splitlines(), strict=True):  # one rendered line per template line
        if key is not None and "  # " in line:
            found[key] = line.split("  # ", 1)[1]
    return found


def test_init_on_builtin_shapes_comments_exactly_the_values_it_chose(tmp_path):
    from dbooth_shapes.settings import base_reasons, base_settings

    ws = api.init(tmp_path / "star", "star", base_model="builtin:shapes")
    text = ws.manifest_path.read_text()
    comments = commented(text)

    assert set(comments) == set(base_settings()) | {"train.learning_rate"}  # its learning rates stand behind null
    assert all(c.startswith("builtin:shapes: ") for c in comments.values()), comments
    assert comments["train.resolution"] == f"builtin:shapes: {base_reasons()['train.resolution']}"
    assert "null trains at 0.0001 (full) or 0.001 (lora)" in comments["train.learning_rate"]
    assert "  resolution: 64  # builtin:shapes: " in text
    loaded = load_manifest(ws.manifest_path)  # comments are YAML comments: the same values come back
    assert loaded == ws.manifest()
    assert loaded.train.resolution == 64 and loaded.prior.num_class_images == 50
    assert render_manifest(loaded) == text


def test_a_base_without_defaults_gets_no_comments(tmp_path, tiny_base):
    ws = api.init(tmp_path / "dog", "dog", base_model=str(tiny_base))
    assert commented(ws.manifest_path.read_text()) == {}
    assert commented(render_manifest(apply_overrides(ws.manifest(), {"prior.num_class_images": 50}))) == {}


def test_an_example_workspace_comments_the_base_values_not_the_examples_own(tmp_path):
    ws = api.init(tmp_path / "mystar", None, example="checkered_star")
    comments = commented(ws.manifest_path.read_text())
    assert "train.max_steps" in comments and "upscaler.base" in comments
    assert "instance_captions" not in comments and "identifier" not in comments  # the example's, not the base's


def test_rewriting_the_manifest_keeps_one_comment_per_value_and_drops_a_stale_one(tmp_path):
    ws = api.init(tmp_path / "star", "star", base_model="builtin:shapes")
    first = ws.manifest_path.read_text()
    write_manifest(ws.manifest_path, ws.manifest())  # as add_subject, demo and bench rewrite it
    write_manifest(ws.manifest_path, ws.manifest())
    assert ws.manifest_path.read_text() == first
    assert first.count("# builtin:shapes:") == len(commented(first))

    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {"prior.num_class_images": 10,
                                                                     "train.learning_rate": 2e-4}))
    text = ws.manifest_path.read_text()
    comments = commented(text)
    assert "prior.num_class_images" not in comments and "train.learning_rate" not in comments  # no longer its
    assert set(comments) == set(commented(first)) - {"prior.num_class_images", "train.learning_rate"}
    assert "  num_class_images: 10\n" in text


@pytest.fixture
def fake_model(monkeypatch):
    """A registry holding one model, so the comment rules are seen without builtin:shapes' own table."""
    registry = Registry()
    monkeypatch.setattr(plugins, "_REGISTRY", registry)

    def add(**fields) -> None:
        registry.add_model(NamedModel("test:tiny", _no_files, **fields))

    return add


def _no_files():
    raise AssertionError("default_comments must not ask for the model's files")


def test_a_reason_per_key_or_one_line_for_all(fake_model):
    fake_model(defaults=lambda: {"train.max_steps": 30, "train.use_ema": True, "prior.enabled": False},
               default_reasons=lambda: {"train.max_steps": "a tiny model\nlearns in 30"},
               defaults_reason="the size it was built for", learning_rates={"full": 0.01})
    values = {"train.max_steps": 30, "train.use_ema": 1, "prior.enabled": False, "train.learning_rate": None}

    assert default_comments("test:tiny", values) == {
        "train.max_steps": "test:tiny: a tiny model learns in 30",  # one line, whatever the plugin wrote
        "prior.enabled": "test:tiny: the size it was built for",
        "train.learning_rate": "test:tiny: null trains at 0.01 (full); the size it was built for",
    }  # 1 is not the model's True: no comment on train.use_ema
    assert default_comments("test:tiny", {**values, "train.max_steps": 31, "train.learning_rate": 1e-4}) == {
        "prior.enabled": "test:tiny: the size it was built for"}
    assert default_comments("some-org/some-model", values) == {}
    assert default_comments("test:other", values) == {}  # an unknown name is the loader's error, not the comment's


def test_a_model_without_defaults_comments_nothing(fake_model):
    fake_model()
    assert default_comments("test:tiny", {"train.max_steps": 30, "train.learning_rate": None}) == {}
