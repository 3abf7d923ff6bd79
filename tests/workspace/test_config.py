"""The manifest schema: defaults, the shipped template, line-accurate errors, overrides, migrations."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import typing

import pytest

from dbooth.workspace import config
from dbooth.workspace.config import (
    LoraConfig,
    Manifest,
    PriorConfig,
    SampleConfig,
    TrainConfig,
    apply_overrides,
    closest_key,
    load_manifest,
    manifest_from_dict,
    manifest_to_dict,
    render_manifest,
    template_path,
    write_manifest,
)
from dbooth.util.errors import DboothError


def write(tmp_path, text: str, name: str = "dbooth.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(DboothError) as exc:
        load_manifest(path)
    return str(exc.value).replace(str(path), "FILE")


def leaf_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            paths += leaf_paths(tp, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def custom_manifest() -> Manifest:
    """Every section off its defaults, with strings that need quoting in YAML."""
    return Manifest(
        base_model="builtin:tiny",
        identifier="1e5",
        class_noun="no",
        instance_prompt="photo: {identifier} {class}, 'quoted' # not a comment",
        class_prompt="[{class}]",
        prior=PriorConfig(enabled=False, num_class_images=7, loss_weight=0, steps=3, batch_size=2, seed=9),
        train=TrainConfig(
            method="lora",
            lora=LoraConfig(rank=4, alpha=2, dropout=0.1, target_modules=["to_q"]),
            train_text_encoder=True,
            learning_rate=3e-5,
            text_encoder_learning_rate=1e-6,
            lr_scheduler="cosine",
            max_steps=5,
            mixed_precision="bf16",
            resolution=64,
            validation_prompts=[],
        ),
        sample=SampleConfig(scheduler="euler_a", negative_prompt='blurry\n"lowres": yes', num_images=1),
    )


# --- defaults and the shipped template ------------------------------------------------------------


def test_minimal_file_gets_defaults(tmp_path):
    m = load_manifest(write(tmp_path, "class_noun: dog\n"))
    assert m == Manifest(class_noun="dog")
    assert m.version == 1
    assert m.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert m.prior.num_class_images == 200 and m.prior.enabled is True
    assert m.train.method == "full" and m.train.lora.rank == 8
    assert m.train.validation_prompts == ["a {identifier} {class} on the beach"]
    assert m.sample.scheduler == "dpm++"


def test_workspace_folder_loads_its_manifest(tmp_path):
    write(tmp_path, "class_noun: cat\n")
    assert load_manifest(tmp_path).class_noun == "cat"


def test_list_defaults_are_not_shared():
    a, b = TrainConfig(), TrainConfig()
    a.validation_prompts.append("x")
    assert b.validation_prompts == ["a {identifier} {class} on the beach"]


def test_resolved_learning_rates():
    assert TrainConfig().resolved_learning_rate() == 5e-6
    assert TrainConfig(method="lora").resolved_learning_rate() == 1e-4
    assert TrainConfig(method="lora").resolved_text_encoder_learning_rate() == 1e-4
    t = TrainConfig(learning_rate=2e-4, text_encoder_learning_rate=1e-5)
    assert (t.resolved_learning_rate(), t.resolved_text_encoder_learning_rate()) == (2e-4, 1e-5)
    assert TrainConfig(learning_rate=3e-4).resolved_text_encoder_learning_rate() == 3e-4


def test_template_is_found_in_source_checkout():
    assert template_path().is_file()
    assert template_path().name == "dbooth.yaml"


@pytest.mark.parametrize("manifest", [Manifest(class_noun="dog"), custom_manifest()], ids=["default", "custom"])
def test_rendered_template_loads_back_equal(tmp_path, manifest):
    path = tmp_path / "dbooth.yaml"
    write_manifest(path, manifest)
    assert path.read_text(encoding="utf-8") == render_manifest(manifest)
    assert load_manifest(path) == manifest


def test_template_has_every_key_once_with_a_comment():
    lines = template_path().read_text(encoding="utf-8").splitlines()
    for dotted in leaf_paths(Manifest):
        slots = [i for i, line in enumerate(lines) if re.search(r"\{\{\s*" + re.escape(dotted) + r"\s*\}\}", line)]
        assert len(slots) == 1, f"{dotted} should appear exactly once in the template"
        i = slots[0]
        assert lines[i].strip().startswith(dotted.rsplit(".", 1)[-1] + ":"), lines[i]
        assert lines[i - 1].strip().startswith("# "), f"{dotted} needs a comment line above it"
    for section in ("prior", "train", "lora", "sample"):
        (i,) = [i for i, line in enumerate(lines) if line.strip() == f"{section}:"]
        assert lines[i - 1].strip().startswith("# "), f"section {section} needs a comment line above it"


def test_default_template_is_the_documented_defaults():
    """The commented file `dbooth init` writes must parse to the dataclass defaults."""
    assert manifest_from_dict(manifest_to_dict(Manifest(class_noun="dog"))) == Manifest(class_noun="dog")
    text = render_manifest(Manifest(class_noun="dog"))
    assert "mixed_precision: 'no'" in text  # YAML 1.1 would read a bare no as false elsewhere
    assert "target_modules: [attention]" in text


# --- loading quirks -------------------------------------------------------------------------------


def test_exponent_floats_and_bare_no_read_as_meant(tmp_path):
    m = load_manifest(
        write(
            tmp_path,
            """
            class_noun: dog
            train:
              learning_rate: 5e-6
              text_encoder_learning_rate: 1E-5
              mixed_precision: no
              adam_weight_decay: 0
            """,
        )
    )
    assert m.train.learning_rate == 5e-6 and m.train.text_encoder_learning_rate == 1e-5
    assert m.train.mixed_precision == "no"
    assert m.train.adam_weight_decay == 0.0 and isinstance(m.train.adam_weight_decay, float)


def test_empty_sections_mean_defaults(tmp_path):
    m = load_manifest(write(tmp_path, "class_noun: dog\nprior:\n  # enabled: false\ntrain:\n"))
    assert m.prior == PriorConfig() and m.train == TrainConfig()


def test_null_learning_rate_is_allowed(tmp_path):
    m = load_manifest(write(tmp_path, "class_noun: dog\ntrain:\n  learning_rate: null\n"))
    assert m.train.learning_rate is None


# --- errors: one line with file, line, key path, expectation, suggestion ---------------------------

BASE = """
class_noun: corgi
identifier: sks
prior:
  enabled: true
  num_class_images: 100
train:
  method: full
  max_steps: 400
  validation_prompts:
    - a {identifier} {class} in snow
    - a {identifier} {class} on a sofa
sample:
  steps: 20
"""


def with_line(line_no: int, replacement: str) -> str:
    lines = textwrap.dedent(BASE).lstrip("\n").splitlines()
    lines[line_no - 1] = replacement
    return "\n".join(lines) + "\n"


ERROR_CASES = [
    # (1-based line, replacement line, expected message after "FILE:")
    (8, "  learing_rate: 1e-4", "8: train.learing_rate: unknown key; did you mean 'learning_rate'?"),
    (5, "  num_class_images: -3", "5: prior.num_class_images: expected an integer >= 1, got -3"),
    (7, "  method: lora2", "7: train.method: expected one of full, lora, got 'lora2'"),
    (8, "  max_steps: true", "8: train.max_steps: expected an integer >= 1, got true"),
    (8, "  max_steps: 10.5", "8: train.max_steps: expected an integer >= 1, got 10.5"),
    (8, "  max_steps: null", "8: train.max_steps: expected an integer >= 1, got null"),
    (4, "  enabled: yes", "4: prior.enabled: expected true or false, got 'yes'"),
    (11, "    - 7", "11: train.validation_prompts[1]: expected a string, got 7"),
    (10, "    - a {identifer} {class}", "10: train.validation_prompts[0]: unknown placeholder {identifer}; did you mean {identifier}?"),
    (13, "  stepz: 20", "13: sample.stepz: unknown key; did you mean 'steps'?"),
    (13, "  max_steps: 20", "13: sample.max_steps: unknown key; did you mean 'steps'?"),  # same section first
    (13, "  learning_rate: 1e-4", "13: sample.learning_rate: unknown key here; did you mean 'train.learning_rate'?"),
    (2, "idnetifier: sks", "2: idnetifier: unknown key; did you mean 'identifier'?"),
    (2, "colour: red", "2: colour: unknown key; expected one of version, base_model, allow_pickle, identifier, class_noun, "
     "instance_prompt, instance_captions, class_prompt, subjects, prior, train, sample, eval, upscaler"),
    (2, "instance_prompt: a photo of a {class}", "2: instance_prompt: must contain {identifier}, the token that names your subject"),
    (2, "class_prompt: a photo of {identifier} {class}", "2: class_prompt: must not contain {identifier}: class images show any {class}, not your subject"),
    (2, "identifier: ''", "2: identifier: expected a non-empty string, got ''"),
    (2, "identifier: 42", "2: identifier: expected a non-empty string, got 42"),
    (8, "  class_noun: dog", "8: train.class_noun: unknown key here; did you mean 'class_noun'?"),
    (8, "  resolution: 500", "8: train.resolution: expected an integer >= 8 that is a multiple of 8, got 500"),
    (8, "  lr_warmup_steps: -1", "8: train.lr_warmup_steps: expected an integer >= 0, got -1"),
    (8, "  max_grad_norm: 0", "8: train.max_grad_norm: expected a number > 0, got 0"),
    (8, "  learning_rate: fast", "8: train.learning_rate: expected a number > 0 or null, got 'fast'"),
    (8, "  learning_rate: .nan", "8: train.learning_rate: expected a number > 0 or null, got nan"),
    (8, "  mixed_precision: fp32", "8: train.mixed_precision: expected one of no, fp16, bf16, got 'fp32'"),
    (8, "  lora: {rank: 0}", "8: train.lora.rank: expected an integer >= 1, got 0"),
    (8, "  lora: {dropout: 1}", "8: train.lora.dropout: expected a number >= 0 and < 1, got 1"),
    (8, "  lora: {target_modules: []}", "8: train.lora.target_modules: expected a non-empty list of strings, got []"),
    (13, "  seed: 1.0", "13: sample.seed: expected an integer, got 1.0"),
    (13, "  scheduler: dpm", "13: sample.scheduler: expected one of dpm++, ddim, euler, euler_a, pndm, ddpm, got 'dpm'"),
    (13, "  guidance_scale: -1", "13: sample.guidance_scale: expected a number >= 0, got -1"),
    (3, "train:", "6: train: duplicate key; each key may appear once"),
]


def test_error_base_file_is_valid(tmp_path):
    m = load_manifest(write(tmp_path, BASE))
    assert (m.class_noun, m.prior.num_class_images, m.train.max_steps, m.sample.steps) == ("corgi", 100, 400, 20)
    assert m.train.validation_prompts == ["a {identifier} {class} in snow", "a {identifier} {class} on a sofa"]


@pytest.mark.parametrize("line_no,replacement,expected", ERROR_CASES)
def test_errors_name_file_line_key_and_expectation(tmp_path, line_no, replacement, expected):
    assert load_error(tmp_path, with_line(line_no, replacement)) == f"FILE:{expected}"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("class_noun: dog\nsample: 5\n", "FILE:2: sample: expected a mapping of sample settings, got 5"),
        ("class_noun: dog\n\nprior: [1, 2]\n", "FILE:3: prior: expected a mapping of prior settings, got a list"),
        ("class_noun: dog\ntrain:\n  validation_prompts: a beach\n",
         "FILE:3: train.validation_prompts: expected a list of strings, got 'a beach'"),
        ("class_noun: [dog]\n", "FILE:1: class_noun: expected a non-empty string, got a list"),
        ("class_noun: dog\n1: x\n", "FILE:2: 1: keys must be text; quote it"),
    ],
)
def test_wrong_shapes(tmp_path, text, expected):
    assert load_error(tmp_path, text) == expected


def test_missing_required_key(tmp_path):
    msg = load_error(tmp_path, "# my manifest\n\nidentifier: sks\n")
    assert msg == "FILE:3: class_noun: missing required key; expected a non-empty string"


def test_missing_file(tmp_path):
    with pytest.raises(DboothError, match=r"nope\.yaml: no such file; create a workspace with 'dbooth init'"):
        load_manifest(tmp_path / "nope.yaml")


def test_yaml_syntax_error_has_line(tmp_path):
    msg = load_error(tmp_path, "class_noun: dog\ntrain:\n  max_steps: 10\n bad: [1, 2\n")
    assert msg.startswith("FILE:4: invalid YAML: ")
    msg = load_error(tmp_path, "class_noun: dog\ntrain:\n\tmax_steps: 10\n")
    assert msg.startswith("FILE:3: invalid YAML: ")


def test_an_unclosed_bracket_is_reported_where_it_opens(tmp_path):
    """YAML notices an unclosed [ only at the next key, lines later: the message points at the [ itself."""
    msg = load_error(tmp_path, "class_noun: dog\ntrain:\n  validation_prompts: [a photo of {identifier}\n"
                               "  max_steps: 10\n  batch_size: 1\nsample:\n  steps: 5\n")
    assert msg.startswith("FILE:3: invalid YAML: the '[' opened on this line is not closed"), msg
    msg = load_error(tmp_path, "class_noun: dog\nprior: {num_class_images: 4\n\ntrain:\n  max_steps: 10\n")
    assert msg.startswith("FILE:2: invalid YAML: the '{' opened on this line is not closed"), msg


@pytest.mark.parametrize(
    "text,expected",
    [
        ("- class_noun: dog\n", "FILE:1: expected a mapping of settings at the top level (key: value lines), got a list"),
        ("# note\n\njust words\n", "FILE:3: expected a mapping of settings at the top level (key: value lines), got 'just words'"),
        ("# only comments\n", "FILE: file is empty; expected key: value settings"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path, text, expected):
    assert load_error(tmp_path, text) == expected


def test_errors_are_one_line(tmp_path):
    msg = load_error(tmp_path, "class_noun: dog\nsample:\n  negative_prompt: [a, b]\n")
    assert "\n" not in msg
    assert msg == "FILE:3: sample.negative_prompt: expected a string, got a list"


def test_dict_errors_name_the_source_without_line():
    with pytest.raises(DboothError) as exc:
        manifest_from_dict({"class_noun": "dog", "prior": {"steps": 0}}, source="run.yaml")
    assert str(exc.value) == "run.yaml: prior.steps: expected an integer >= 1, got 0"
    with pytest.raises(DboothError, match=r"^<dict>: class_noun: missing required key"):
        manifest_from_dict({})


# --- dict round trip and overrides ----------------------------------------------------------------


def test_dict_round_trip():
    m = custom_manifest()
    d = manifest_to_dict(m)
    assert d["train"]["lora"]["target_modules"] == ["to_q"]
    assert d["prior"]["enabled"] is False
    assert manifest_from_dict(d) == m
    d["train"]["lora"]["target_modules"].append("to_k")  # a plain copy, not a view
    assert m.train.lora.target_modules == ["to_q"]


def test_overrides_apply_and_validate():
    m = Manifest(class_noun="dog")
    out = apply_overrides(
        m, {"train.max_steps": 400, "train.method": "lora", "sample.steps": None, "train.lora.alpha": 16}
    )
    assert out.train.max_steps == 400 and out.train.method == "lora"
    assert out.train.lora.alpha == 16.0 and isinstance(out.train.lora.alpha, float)
    assert out.sample.steps == 25  # None means "not given"
    assert m.train.max_steps == 800  # the input is left alone
    assert out.train.resolved_learning_rate() == 1e-4


def test_override_strings_are_parsed_for_typed_settings():
    out = apply_overrides(
        Manifest(class_noun="dog"),
        {"train.learning_rate": "2e-5", "prior.enabled": "false", "identifier": "123", "train.lora.target_modules": "[to_q, to_v]"},
    )
    assert out.train.learning_rate == 2e-5
    assert out.prior.enabled is False
    assert out.identifier == "123"
    assert out.train.lora.target_modules == ["to_q", "to_v"]


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"train.max_steps": 0}, "command line: train.max_steps: expected an integer >= 1, got 0"),
        ({"train.max_stepz": 5}, "command line: train.max_stepz: unknown key; did you mean 'max_steps'?"),
        ({"train.lora.seed": 5}, "command line: train.lora.seed: unknown key here; did you mean 'train.seed'?"),
        ({"train": 5}, "command line: train: is a section; set one of its keys, e.g. train.method"),
        ({"train.seed.x": 5}, "command line: train.seed.x: unknown key; 'train.seed' has no sub-keys"),
        ({"train.method": "lora2"}, "command line: train.method: expected one of full, lora, got 'lora2'"),
        ({"prior.enabled": "maybe"}, "command line: prior.enabled: expected true or false, got 'maybe'"),
    ],
)
def test_override_errors(overrides, expected):
    with pytest.raises(DboothError) as exc:
        apply_overrides(Manifest(class_noun="dog"), overrides)
    assert str(exc.value) == expected


# --- versions and migrations ----------------------------------------------------------------------


def test_version_too_new(tmp_path):
    msg = load_error(tmp_path, "class_noun: dog\nversion: 99\n")
    assert msg == (
        "FILE:2: version: manifest version 99 is newer than this dbooth supports (1); "
        "upgrade dbooth (pip install -U dbooth)"
    )


@pytest.mark.parametrize("value,shown", [("'1'", "'1'"), ("true", "true"), ("0", "0")])
def test_version_must_be_a_positive_int(tmp_path, value, shown):
    msg = load_error(tmp_path, f"version: {value}\nclass_noun: dog\n")
    assert msg == f"FILE:1: version: expected an integer >= 1, got {shown}"


def test_migrations_run_in_order_before_validation(tmp_path, monkeypatch):
    def v1_to_v2(data: dict) -> dict:
        data["class_noun"] = data.pop("subject_class")  # a renamed key
        return data

    def v2_to_v3(data: dict) -> dict:
        data.setdefault("train", {})["max_steps"] = data["train"].pop("steps")
        return data

    monkeypatch.setattr(config, "CURRENT_VERSION", 3)
    monkeypatch.setitem(config.MIGRATIONS, 1, v1_to_v2)
    monkeypatch.setitem(config.MIGRATIONS, 2, v2_to_v3)
    old = {"version": 1, "subject_class": "dog", "train": {"steps": 50}}
    m = manifest_from_dict(old)
    assert (m.version, m.class_noun, m.train.max_steps) == (3, "dog", 50)
    assert old == {"version": 1, "subject_class": "dog", "train": {"steps": 50}}  # caller's dict untouched

    path = write(tmp_path, "subject_class: cat\ntrain:\n  steps: 7\n")  # no version key = version 1
    assert load_manifest(path).class_noun == "cat"
    assert "version: 3" in render_manifest(load_manifest(path))


def test_missing_migration_is_reported(monkeypatch):
    monkeypatch.setattr(config, "CURRENT_VERSION", 2)
    with pytest.raises(DboothError, match=r"version: no migration from manifest version 1"):
        manifest_from_dict({"class_noun": "dog"})


def test_closest_key():
    assert closest_key("learing_rate", ["learning_rate", "lr_scheduler"]) == "learning_rate"
    assert closest_key("Max_Steps", ["max_steps"]) == "max_steps"
    assert closest_key("zzz", ["max_steps", "seed"]) is None
