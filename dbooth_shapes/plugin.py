"""Registers the toy world with dbooth's core (the ``dbooth.plugins`` entry point in pyproject.toml).

Importing this module loads no model library: ``dbooth --help`` reads it to list ``demo``.
"""

from __future__ import annotations

from pathlib import Path

from dbooth_shapes.settings import DEMO_REASON

# measured on the CPU (BENCHMARKS.md, the demo's table): 40 steps at Stable Diffusion's 5e-6 change nothing visible
# (settings.LEARNING_RATE_REASON, the comment on a null train.learning_rate)
LEARNING_RATES = {"full": 1e-4, "lora": 1e-3}


def register(registry) -> None:
    from dbooth.plugins import ExampleSubjects, NamedModel
    from dbooth_shapes import builtin_model_path
    from dbooth_shapes.cli import demo

    registry.add_model(NamedModel(
        "builtin:shapes", lambda: builtin_model_path("builtin:shapes"), vocabulary=_vocabulary, judge=_judge,
        labeller=_labeller, scene_of=_scene_of, scene_hint="in the jungle", random_pipeline=_random_pipeline,
        defaults=_defaults, learning_rates=LEARNING_RATES, default_reasons=_default_reasons,
        defaults_reason=DEMO_REASON, classes=_classes,
        about="a 64 px text-to-image model of a rendered world of shapes, judged exactly by its oracle"))
    registry.add_model(NamedModel(
        "builtin:shapes-x4", lambda: builtin_model_path("builtin:shapes-x4"), vocabulary=_vocabulary,
        about="an x4 upscaler (64 -> 256 px) for builtin:shapes"))
    registry.add_examples(ExampleSubjects(names=_example_names, class_noun=_class_noun, settings=_settings,
                                          write_images=_write_images))
    registry.add_command("demo", demo)


def _vocabulary() -> frozenset[str]:
    from dbooth_shapes.world import world_words

    return frozenset(world_words())


def _judge(photos: list):
    from dbooth_shapes.judge import OracleJudge

    return OracleJudge.for_photos(photos)


def _labeller():
    from dbooth_shapes.judge import OracleJudge

    return OracleJudge.load()


def _scene_of(prompt: str) -> str | None:
    from dbooth_shapes.judge import scene_of

    return scene_of(prompt)


def _example_names() -> list[str]:
    from dbooth_shapes.examples import list_examples

    return list_examples()


def _class_noun(name: str) -> str:
    from dbooth_shapes.examples import get_example

    return get_example(name).class_noun


def _settings(name: str) -> dict:
    from dbooth_shapes.settings import example_settings

    return example_settings(name)


def _write_images(name: str, folder: Path) -> list[Path]:
    from dbooth_shapes.examples import write_example_images
    from dbooth_shapes.settings import EXAMPLE_PHOTO_SIZE

    return write_example_images(name, folder, size=EXAMPLE_PHOTO_SIZE)


def _random_pipeline():
    from dbooth_shapes.architecture import random_pipeline

    return random_pipeline()


def _defaults() -> dict:
    from dbooth_shapes.settings import base_settings

    return base_settings()


def _default_reasons() -> dict[str, str]:
    from dbooth_shapes.settings import base_reasons

    return base_reasons()


def _classes() -> tuple[str, ...]:
    from dbooth_shapes.world import SHAPES  # model-free: the world's words, no renderer is imported

    return SHAPES
