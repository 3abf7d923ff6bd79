"""The example subjects' manifest settings: what ``dbooth init NAME --example SUBJECT`` writes.

Shared by ``init --example`` (through the plugin registry) and ``dbooth demo``.
"""

from __future__ import annotations

BASE_MODEL = "builtin:shapes"
# example photos are written at the upscaler's output side: stage (a) shrinks them to its 64 px, and
# stage (b) cuts its pairs from them (256 px targets from 64 px inputs for builtin:shapes-x4)
EXAMPLE_PHOTO_SIZE = 256
EXAMPLE_UPSCALER = "builtin:shapes-x4"


def example_settings(name: str) -> dict:
    """Manifest values for a workspace made from a built-in example subject."""
    from dbooth_shapes.examples import get_example

    subject = get_example(name)
    return {
        "base_model": BASE_MODEL,
        "class_noun": subject.class_noun,
        "identifier": "sks",
        # each example photo has a caption naming its scene, so "sks" learns the object, not the floor
        "instance_captions": "files",
        **base_settings(),
    }


def base_settings() -> dict:
    """Manifest values that suit builtin:shapes whatever the subject: `init --base builtin:shapes` writes them too
    (the shipped defaults suit Stable Diffusion: 200 class images at 512 px, a hub upscaler)."""
    return {
        # the world's captions read "a photo of a blue star": the identifier takes the adjective's place
        "instance_prompt": "a photo of a {identifier} {class}",
        "class_prompt": "a photo of a {class}",
        "prior.num_class_images": 50,
        "prior.steps": 20,
        "prior.guidance_scale": 5.0,
        "prior.batch_size": 25,
        "train.resolution": 64,
        "train.max_steps": 600,
        "train.batch_size": 2,
        # a small model learns a new look fastest with its text encoder trained too
        "train.train_text_encoder": True,
        "train.checkpoint_every": 100,
        "train.validation_every": 0,
        "train.validation_prompts": ["a photo of a {identifier} {class} in the jungle"],
        "sample.steps": 20,
        "sample.guidance_scale": 5.0,
        # stage (b): the built-in upscaler, at its own 256 px side (see "Stage (b): the upscaler" in README.md)
        "upscaler.base": EXAMPLE_UPSCALER,
        # measured on the CPU (BENCHMARKS.md, "Stage (b) on the built-in model"): 400 full steps at 5e-4 (the
        # 1.47M-parameter upscaler was pretrained at 5e-4), without class pairs: builtin:shapes' class images are
        # 64 px, so their pairs would be 16 -> 64 px, a scale the upscaler never sees in use, and they cost detail
        "upscaler.max_steps": 400,
        "upscaler.learning_rate": 5e-4,
        "upscaler.prior": False,
        "upscaler.validation_every": 0,
    }
