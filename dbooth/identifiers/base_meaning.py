"""An identifier's prior: what the base model already draws for "a photo of [V]" before any training.

The paper's reason "sks" is a poor default on SD 1.x is that it draws rifles: the model has to unlearn that while
it learns the subject. Here each identifier is sampled a few times at fixed seeds, in the words of the workspace's
captions without the class ("a photo of a {identifier} {class}" -> "a photo of a sks"; the paper's "a photo of [V]"
for the default caption), and a judge says what each sample looks like, if anything, with confidence:

- a model a plugin registers with a labeller (``builtin:shapes``: its oracle, which knows the world exactly, names
  the shape it is sure of; see ``dbooth_shapes.judge``).
- any other model: CLIP (the manifest's ``eval.clip``, from a folder or the Hugging Face cache) classifies each
  sample zero-shot among "a photo of a CLASS" for DreamBench's classes and the workspace's own; a sample looks like
  a class when CLIP's softmax gives it at least ``CLIP_CONFIDENT``. The list also holds ``EVERYDAY_THINGS``, what
  rare tokens are known to draw on SD 1.x (the paper's "sks" rifle among them) and other common pictures; only
  what the list names can be seen, so a low share means "none of these", not "nothing". Without CLIP the
  measurement stops before the base model is loaded, with the line that says what to download.

``share`` (the fraction of samples that confidently look like the most common answer) is the prior's strength:
near 0 for a token the model has no picture for, near 1 for a word it knows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

PROMPT = "a photo of a {identifier}"  # without a workspace; the builtin model's captions always have the article
CLIP_CONFIDENT = 0.5  # over 15+ classes, a uniform guess gives each under 0.07
# DreamBench's subject classes (github.com/google/dreambooth, dataset/prompts_and_classes.txt)
DREAMBENCH_CLASSES = ("backpack", "stuffed animal", "bowl", "can", "candle", "cat", "clock", "sneaker", "dog", "toy",
                      "boot", "glasses", "cartoon", "teapot", "vase")
# What a rare token's samples often show instead of nothing: weapons (SD 1.x draws a rifle for "sks", the paper's
# example), people, vehicles, buildings, lettering and other frequent subjects of web photos
EVERYDAY_THINGS = ("rifle", "gun", "knife", "person", "face", "car", "truck", "airplane", "ship", "building",
                   "house", "street", "landscape", "mountain", "tree", "flower", "bird", "horse", "fish", "food",
                   "bottle", "chair", "book", "phone", "computer", "logo", "sign with text", "painting", "shoe",
                   "shirt")


@dataclass(frozen=True)
class IdentifierPrior:
    identifier: str
    prompt: str
    judge: str  # "oracle" or "clip NAME"
    samples: int
    labels: dict[str, int]  # what the confidently judged samples look like -> how many

    @property
    def looks_like(self) -> str | None:
        """The most common confident answer (ties: alphabetical), None when no sample looks like anything."""
        if not self.labels:
            return None
        return min(self.labels, key=lambda k: (-self.labels[k], k))

    @property
    def share(self) -> float:
        return self.labels[self.looks_like] / self.samples if self.labels else 0.0

    def to_dict(self) -> dict:
        return {"identifier": self.identifier, "prompt": self.prompt, "judge": self.judge, "samples": self.samples,
                "looks_like": self.looks_like, "share": round(self.share, 4), "labels": dict(self.labels)}


class ClipJudge:
    """CLIP zero-shot: each sample against "a photo of a CLASS", softmax at CLIP's own logit scale."""

    def __init__(self, clip, classes: Sequence[str]):
        self.clip, self.classes = clip, list(dict.fromkeys(classes))
        self.name = f"clip {clip.name}"
        self.texts = clip.embed_texts([f"a photo of a {c}" for c in self.classes])

    def probabilities(self, images: Sequence):
        import torch

        from dbooth.eval.metrics import cosine_matrix

        with torch.no_grad():
            scale = self.clip.model.logit_scale.exp().float()
            return (scale * cosine_matrix(self.clip.embed_images(images), self.texts)).softmax(-1)

    def labels(self, images: Sequence) -> list[str | None]:
        p, j = self.probabilities(images).max(-1)
        return [self.classes[int(k)] if float(q) >= CLIP_CONFIDENT else None for q, k in zip(p, j)]


def judge_for(base_model: str, clip_name: str, class_nouns: Sequence[str]):
    """The registered model's own labeller (the built-in world's oracle); else CLIP, whose loader names the download when it is missing."""
    from dbooth.plugins import named_model

    named = named_model(base_model)
    if named is not None and named.labeller is not None:
        return named.labeller()
    from dbooth.eval.encoders import load_clip

    return ClipJudge(load_clip(clip_name), [*DREAMBENCH_CLASSES, *EVERYDAY_THINGS, *class_nouns])


def prior_prompt(instance_prompt: str | None) -> str:
    """The caption template without its class: what the identifier alone means to the model in that wording."""
    if instance_prompt is None:
        return PROMPT
    return " ".join(instance_prompt.replace("{class}", " ").split())


def measure_priors(pipe, identifiers: Sequence[str], judge, *, template: str = PROMPT, samples: int, seed: int,
                   steps: int, guidance_scale: float, resolution: int, reporter=None) -> list[IdentifierPrior]:
    """Sample ``template`` for each identifier (image ``k`` at seed ``seed + k``) and count the judge's answers."""
    import torch

    results = []
    if reporter is not None:
        reporter.start("identifier priors", total=len(identifiers))
    for n, identifier in enumerate(identifiers, 1):
        prompt = template.format(identifier=identifier)
        images = pipe([prompt] * samples, num_inference_steps=steps, guidance_scale=guidance_scale,
                      height=resolution, width=resolution,
                      generator=[torch.Generator("cpu").manual_seed(seed + k) for k in range(samples)]).images
        labels = Counter(label for label in judge.labels(images) if label is not None)
        results.append(IdentifierPrior(identifier, prompt, judge.name, samples, dict(sorted(labels.items()))))
        if reporter is not None:
            reporter.advance(n)
    if reporter is not None:
        reporter.stop()
    return results


def identifier_priors(base_model: str, identifiers: Sequence[str], manifest=None, *, samples: int = 8,
                      reporter=None) -> list[IdentifierPrior]:
    """Measure each identifier's prior on ``base_model``: with the workspace ``manifest``'s caption wording, sampling
    settings, resolution, CLIP judge and classes when it is that model's; else dbooth's defaults at the model's
    own resolution."""
    from dbooth.families import native_resolution
    from dbooth.families.loading import inference_device, inference_dtype, load_pipeline
    from dbooth.families.source import resolve_model
    from dbooth.generate.schedulers import set_scheduler
    from dbooth.workspace.schema import EvalConfig, SampleConfig

    own = manifest is not None and manifest.base_model == base_model
    allow_pickle = manifest.allow_pickle if manifest is not None else False
    nouns = [] if manifest is None else [manifest.class_noun, *(s.class_noun for s in manifest.subjects)]
    judge = judge_for(base_model, (manifest.eval if own else EvalConfig()).clip, nouns)  # a missing judge: quick
    sample = manifest.sample if own else SampleConfig()
    resolution = (manifest.train.resolution if own
                  else native_resolution(resolve_model(base_model, allow_pickle=allow_pickle)) or 512)
    pipe = load_pipeline(base_model, dtype=inference_dtype(), allow_pickle=allow_pickle)
    set_scheduler(pipe, sample.scheduler)
    pipe.to(inference_device())
    return measure_priors(pipe, identifiers, judge, template=prior_prompt(manifest.instance_prompt if own else None),
                          samples=samples, seed=sample.seed, steps=sample.steps, guidance_scale=sample.guidance_scale,
                          resolution=resolution, reporter=reporter)
