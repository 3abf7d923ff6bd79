"""The schema's own rules: defaults, choices and prompt checks, independent of YAML."""

from __future__ import annotations

import dataclasses

from dbooth.workspace.schema import CAPTION_SOURCES, METHODS, Manifest, TrainConfig


def _rule(cls, name):
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["rule"]


def test_every_value_field_has_a_rule_and_choices_hold_their_default():
    for cls in (Manifest, TrainConfig):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                continue  # a section (prior, train, lora, sample), checked field by field
            rule = f.metadata.get("rule")
            assert rule is not None, f"{cls.__name__}.{f.name} has no rule"
            if rule.choices and f.default is not dataclasses.MISSING:
                assert f.default in rule.choices, f"{cls.__name__}.{f.name}"
    assert _rule(TrainConfig, "method").choices == METHODS
    assert _rule(Manifest, "instance_captions").choices == CAPTION_SOURCES


def test_prompt_rules_name_the_problem():
    instance, klass = _rule(Manifest, "instance_prompt").check, _rule(Manifest, "class_prompt").check
    assert instance("a photo of {identifier} {class}") is None
    assert "must contain {identifier}" in instance("a photo of a {class}")
    assert "must not contain {identifier}" in klass("a {identifier} {class}")
    assert "did you mean {class}?" in instance("a {identifier} {clas}")
