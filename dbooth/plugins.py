"""What plugins add to dbooth: named base models with their judges, example subjects, and CLI verbs.

The core owns these registries and names no plugin. A plugin is a package that declares an entry point
in the ``dbooth.plugins`` group, ``name = "package.module:register"``; ``register(registry)`` fills the
registry when it is first asked. The built-in toy world (``dbooth_shapes``, shipped in the same
distribution) is one: it registers ``builtin:shapes``, its oracle and the ``demo`` verb.

Model-free: importing this module, or asking it about a model, loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from dbooth.util.errors import DboothError

ENTRY_POINT_GROUP = "dbooth.plugins"


class SampleJudge(Protocol):
    """Scores ``{prompt: [images]}`` plus plain class-prompt samples (``dbooth eval``, ``train.stop_when``)."""

    keys: tuple[str, str, str]  # subject fidelity, prompt fidelity, class drift, as the picking rule weighs them
    default_prompt_margin: float | None
    subject: str

    def score(self, images: dict[str, list], class_images: list) -> dict[str, float]: ...


@dataclass(frozen=True)
class NamedModel:
    """A base model known by name (``builtin:shapes``) rather than found by path or hub id.

    Only ``path`` is required; the rest are what the core asks of a model whose world is known exactly.
    """

    spec: str
    path: Callable[[], Path]  # the diffusers folder; raises DboothError when it is missing
    # the words of its training captions, when known exactly (identifier checks: a token it never saw is rare)
    vocabulary: Callable[[], frozenset[str]] | None = None
    # an exact judge of samples, given the subject photos; None when it does not recognise the subject
    judge: Callable[[list], SampleJudge | None] | None = None
    # names what each sample shows (or None): what the base model already thinks an identifier means
    labeller: Callable[[], Any] | None = None
    # the scene a prompt names, for the judge's prompt fidelity; and a prompt ending that names one
    scene_of: Callable[[str], str | None] | None = None
    scene_hint: str = ""
    # the architecture with random weights (``dbooth bench`` when the weights are not built)
    random_pipeline: Callable[[], Any] | None = None
    # manifest values that suit this model, written by ``init`` (the shipped defaults suit Stable Diffusion)
    defaults: Callable[[], dict] | None = None
    # the UNet learning rate per method when ``train.learning_rate`` is null
    learning_rates: dict[str, float] | None = None
    # why each of ``defaults`` suits the model (``train.learning_rate``: why ``learning_rates``), one line per
    # dotted key; the manifest carries it as that value's comment (``default_comments``)
    default_reasons: Callable[[], dict[str, str]] | None = None
    defaults_reason: str = ""  # the comment on a default without a reason of its own
    # the class nouns its captions hold: another class noun is a word it never saw
    classes: Callable[[], tuple[str, ...]] | None = None
    about: str = ""  # one line for listings


@dataclass(frozen=True)
class ExampleSubjects:
    """Ready-made subjects a workspace can start from (``dbooth init NAME --example SUBJECT``)."""

    names: Callable[[], list[str]]
    class_noun: Callable[[str], str]
    settings: Callable[[str], dict]  # manifest values for a workspace made from the example
    write_images: Callable[[str, Path], list[Path]]


@dataclass
class Registry:
    models: dict[str, NamedModel] = field(default_factory=dict)
    examples: ExampleSubjects | None = None
    commands: list[tuple[str, Callable]] = field(default_factory=list)  # Typer command functions, by verb

    def add_model(self, model: NamedModel) -> None:
        if ":" not in model.spec:
            raise ValueError(f"a named model's spec has a scheme (scheme:name): {model.spec!r}")
        self.models[model.spec] = model

    def add_examples(self, examples: ExampleSubjects) -> None:
        self.examples = examples

    def add_command(self, name: str, function: Callable) -> None:
        self.commands.append((name, function))


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The registry, filled by every installed plugin on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
        for register in _plugin_entry_points():
            register(_REGISTRY)
    return _REGISTRY


def _plugin_entry_points() -> list[Callable[[Registry], None]]:
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)]


def named_model(spec: str) -> NamedModel | None:
    """The registered model ``spec`` names; None for a path or hub id; an error for an unknown name in a
    registered scheme (``builtin:shapez``)."""
    models = registry().models
    if spec in models:
        return models[spec]
    scheme = spec.split(":", 1)[0] + ":" if ":" in spec else None
    known = [s for s in models if scheme and s.startswith(scheme)]
    if known:
        raise DboothError(f"unknown built-in model {spec!r}; available: {', '.join(known)}")
    return None


def default_comments(base_model: str, values: dict[str, Any]) -> dict[str, str]:
    """``{dotted key: comment}`` for each manifest value (``values``, by dotted key) that is ``base_model``'s
    registered default, saying whose it is and why; for a null ``train.learning_rate``, the rates it stands
    for. Empty for a model without defaults (a hub id, a path): the shipped defaults need no comment."""
    model = _quiet_named_model(base_model)
    if model is None:
        return {}
    reasons = model.default_reasons() if model.default_reasons is not None else {}

    def comment(key: str, lead: str = "") -> str:
        why = reasons.get(key) or model.defaults_reason or "the value that suits it"
        return " ".join(f"{model.spec}: {lead}{why}".split())  # one line, whatever the plugin wrote

    defaults = model.defaults() if model.defaults is not None else {}
    found = {key: comment(key) for key, value in defaults.items() if key in values and _same(values[key], value)}
    if model.learning_rates and "train.learning_rate" in values and values["train.learning_rate"] is None:
        rates = " or ".join(f"{rate:g} ({method})" for method, rate in model.learning_rates.items())
        found["train.learning_rate"] = comment("train.learning_rate", f"null trains at {rates}; ")
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal as manifest values: ``True`` is not ``1``, a tuple is the list it is written as."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def judge_for(base_model: str, photos: Sequence) -> SampleJudge | None:
    """The base model's exact judge of samples of the subject in ``photos``, when it has one."""
    model = _quiet_named_model(base_model)
    return model.judge(list(photos)) if model is not None and model.judge is not None else None


def has_judge(base_model: str) -> bool:
    model = _quiet_named_model(base_model)
    return model is not None and model.judge is not None


def _quiet_named_model(spec: str) -> NamedModel | None:
    try:
        return named_model(spec)
    except DboothError:
        return None


def examples() -> ExampleSubjects:
    found = registry().examples
    if found is None:
        raise DboothError("init --example: no example subjects are installed; pass your photos with --images DIR")
    return found
