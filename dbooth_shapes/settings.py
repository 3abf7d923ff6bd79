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


# why a value suits builtin:shapes, where it is more than "the demo's": each becomes that value's comment in
# the dbooth.yaml `init` writes (`dbooth.plugins.default_comments`); the rest get DEMO_REASON
DEMO_REASON = "its demo's value (BENCHMARKS.md); the shipped default suits Stable Diffusion"
# measured on the CPU (BENCHMARKS.md, the demo's table)
LEARNING_RATE_REASON = "at Stable Diffusion's 5e-6, 40 steps change nothing visible"
UPSCALER_MEASURED = "measured on the CPU (BENCHMARKS.md, Stage (b) on the built-in model)"


def base_settings() -> dict:
    """Manifest values that suit builtin:shapes whatever the subject: `init --base builtin:shapes` writes them too
    (the shipped defaults suit Stable Diffusion: 200 class images at 512 px, a hub upscaler)."""
    return {key: value for key, (value, _) in _BASE.items()}


def base_reasons() -> dict[str, str]:
    """Why each of ``base_settings`` that has a reason of its own suits builtin:shapes (and its learning rates)."""
    reasons = {key: why for key, (_, why) in _BASE.items() if why}
    return reasons | {"train.learning_rate": LEARNING_RATE_REASON}


_BASE: dict[str, tuple[object, str]] = {  # key: (value, why; "" = DEMO_REASON)
    "instance_prompt": ("a photo of a {identifier} {class}",
                        "its captions read 'a photo of a blue star': the identifier takes the adjective's place"),
    "class_prompt": ("a photo of a {class}", "the wording of its captions"),
    "prior.num_class_images": (50, ""),
    "prior.steps": (20, ""),
    "prior.guidance_scale": (5.0, ""),
    "prior.batch_size": (25, ""),
    "train.resolution": (64, "its native size"),
    "train.max_steps": (600, ""),
    "train.batch_size": (2, ""),
    "train.train_text_encoder": (True, "a small model learns a new look fastest with its text encoder trained too"),
    "train.checkpoint_every": (100, ""),
    "train.validation_every": (0, ""),
    "train.validation_prompts": (["a photo of a {identifier} {class} in the jungle"], "a scene its captions name"),
    "sample.steps": (20, ""),
    "sample.guidance_scale": (5.0, ""),
    # stage (b): the built-in upscaler, at its own 256 px side (see "Stage (b): the upscaler" in README.md)
    "upscaler.base": (EXAMPLE_UPSCALER, "its own x4 upscaler (64 -> 256 px), not a hub download"),
    # 400 full steps at 5e-4 without class pairs
    "upscaler.max_steps": (400, UPSCALER_MEASURED),
    "upscaler.learning_rate": (5e-4, "the rate the 1.47M-parameter upscaler was pretrained at"),
    "upscaler.prior": (False, "its class images are 64 px, so their pairs would be 16 -> 64 px, a scale the "
                              "upscaler never sees in use, and they cost detail"),
    "upscaler.validation_every": (0, ""),
}
