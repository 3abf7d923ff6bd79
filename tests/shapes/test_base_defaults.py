"""A workspace on builtin:shapes gets the settings that suit it, not Stable Diffusion's: init writes them, a null
learning rate trains at the model's own rate, and a class noun it never saw is named at init."""

from __future__ import annotations

from recorder import Recorder

from dbooth import api
from dbooth.plugins import named_model
from dbooth.training.inputs import _base_learning_rate
from dbooth.workspace.config import apply_overrides
from dbooth_shapes.settings import base_settings


def test_init_on_the_builtin_model_writes_its_settings(tmp_path):
    m = api.init(tmp_path / "star", "star", base_model="builtin:shapes").manifest()
    assert m.prior.num_class_images == base_settings()["prior.num_class_images"] == 50  # not SD's 200
    assert m.upscaler.base == "builtin:shapes-x4"  # not a hub id that is unavailable offline
    assert m.train.resolution == 64 and m.instance_prompt == "a photo of a {identifier} {class}"
    assert m.train.learning_rate is None  # left to the method: see below


def test_the_command_line_wins_over_the_models_settings(tmp_path):
    m = api.init(tmp_path / "star", "star", base_model="builtin:shapes", identifier="zwx").manifest()
    assert m.identifier == "zwx"


def test_another_base_keeps_the_shipped_defaults(tmp_path, tiny_base):
    m = api.init(tmp_path / "dog", "dog", base_model=str(tiny_base)).manifest()
    assert m.prior.num_class_images == 200 and m.upscaler.base == "stabilityai/stable-diffusion-x4-upscaler"


def test_a_null_learning_rate_takes_the_models_rate_for_the_method(tmp_path, tiny_base):
    m = api.init(tmp_path / "star", "star", base_model="builtin:shapes").manifest()
    rates = named_model("builtin:shapes").learning_rates
    assert _base_learning_rate(m).train.learning_rate == rates["full"] == 1e-4  # SD's 5e-6 changes nothing here
    lora = apply_overrides(m, {"train.method": "lora"})
    assert _base_learning_rate(lora).train.learning_rate == rates["lora"] == 1e-3
    chosen = apply_overrides(m, {"train.learning_rate": 2e-4})
    assert _base_learning_rate(chosen).train.learning_rate == 2e-4  # a set rate stays
    other = api.init(tmp_path / "dog", "dog", base_model=str(tiny_base)).manifest()
    assert _base_learning_rate(other).train.learning_rate is None


def test_a_class_noun_the_model_never_saw_is_named_at_init(tmp_path):
    recorder = Recorder()
    api.init(tmp_path / "dog", "dog", base_model="builtin:shapes", reporter=recorder)
    [warning] = [w for w in recorder.warnings if "class noun" in w]
    assert "'dog': builtin:shapes has never seen it" in warning and "star, circle, square" in warning
    quiet = Recorder()
    api.init(tmp_path / "star", "star", base_model="builtin:shapes", reporter=quiet)
    assert not [w for w in quiet.warnings if "class noun" in w]
