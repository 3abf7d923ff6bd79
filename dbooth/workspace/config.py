"""Reading and writing the workspace manifest (``dbooth.yaml``), with errors that point at the line.

A typo in a config must never silently train the wrong thing, so every key is checked against the
dataclasses in ``dbooth.workspace.schema`` and every problem is one line naming the file, line, key path, what
was expected and, for unknown keys, the closest valid key. Older manifest versions are migrated first;
``render_manifest`` writes the commented template back out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from dbooth.util.errors import DboothError, closest_key
from dbooth.util.fsutil import atomic_write_text
from dbooth.workspace.schema import (
    CURRENT_VERSION,
    MANIFEST_NAME,
    MIGRATIONS,
    EmaConfig,
    LoraConfig,
    Manifest,
    PriorConfig,
    SampleConfig,
    SubjectConfig,
    TrainConfig,
    _Rule,
)

__all__ = [
    "CURRENT_VERSION",
    "MANIFEST_NAME",
    "MIGRATIONS",
    "EmaConfig",
    "LoraConfig",
    "Manifest",
    "PriorConfig",
    "SampleConfig",
    "SubjectConfig",
    "TrainConfig",
    "apply_overrides",
    "closest_key",
    "load_manifest",
    "manifest_from_dict",
    "manifest_to_dict",
    "render_manifest",
    "template_path",
    "write_manifest",
]

# --- YAML dialect ---------------------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
# PyYAML (YAML 1.1) reads ``5e-6`` and ``1.0e4`` as strings; learning rates are written that way.
_EXP_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """Safe loader where only true/false are booleans (``mixed_precision: no`` stays a string)
    and exponent floats without a dot are floats."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_FLOAT, _EXP_FLOAT, list("-+0123456789"))


class _Dumper(yaml.SafeDumper):
    """Quotes every string that either YAML 1.1 or our loader would read as something else."""


_Dumper.add_implicit_resolver(_FLOAT, _EXP_FLOAT, list("-+0123456789"))


# --- errors ---------------------------------------------------------------------------------------

def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    """A value as the user wrote it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list" if value else "[]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class _Context:
    """Where values came from, so errors can say file and line."""

    source: str
    lines: dict[tuple, int] = field(default_factory=dict)

    def fail(self, path: tuple, message: str) -> typing.NoReturn:
        line = next((self.lines[path[:i]] for i in range(len(path), -1, -1) if path[:i] in self.lines), None)
        where = f"{self.source}:{line}" if line is not None else self.source
        key = f" {_dotted(path)}:" if path else ""
        raise DboothError(f"{where}:{key} {message}")


def _all_paths(cls: type, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for f in dataclasses.fields(cls):
        path = prefix + (f.name,)
        paths.append(path)
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            paths.extend(_all_paths(tp, path))
    return paths


def _unknown_key(key: str, cls: type, path: tuple) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    hint = closest_key(key, names)
    if hint:
        return f"unknown key; did you mean '{hint}'?"
    # Right key, wrong section (``max_steps`` at the top level): point at the nearest home.
    elsewhere = [p for p in _all_paths(Manifest) if p[-1] == key]
    if elsewhere:
        best = max(elsewhere, key=lambda p: len(os.path.commonprefix([p, path])))
        return f"unknown key here; did you mean '{_dotted(best)}'?"
    return f"unknown key; expected one of {', '.join(names)}"


# --- validation -----------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _kind(tp: Any) -> tuple[str, bool]:
    """Reduce an annotation to (kind, optional): kind is bool, int, float, str or list."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        (tp,) = args
    if typing.get_origin(tp) is list:
        return "list", optional
    return {bool: "bool", int: "int", float: "float", str: "str"}[tp], optional


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _expected(kind: str, optional: bool, rule: _Rule) -> str:
    if rule.choices:
        text = "one of " + ", ".join(rule.choices)
    else:
        text = {
            "bool": "true or false",
            "int": "an integer",
            "float": "a number",
            "str": "a string",
            "list": "a list of strings",
        }[kind]
        if rule.nonempty:
            text = text.replace("a ", "a non-empty ", 1)
        limits = ((">=", rule.ge), (">", rule.gt), ("<", rule.lt))
        bounds = [f"{op} {_num(v)}" for op, v in limits if v is not None]
        if bounds:
            text += " " + " and ".join(bounds)
        if rule.multiple_of:
            text += f" that is a multiple of {rule.multiple_of}"
    return text + (" or null" if optional else "")


def _convert(value: Any, kind: str) -> tuple[bool, Any]:
    """Type-check one scalar; ints are fine for floats, bools are not numbers."""
    if kind == "bool":
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, value
    if kind == "int":
        return isinstance(value, int), value
    if kind == "float":
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        return ok, float(value) if ok else value
    return isinstance(value, str), value


def _within(value: Any, rule: _Rule) -> bool:
    if rule.choices and value not in rule.choices:
        return False
    if rule.nonempty and not value.strip():
        return False
    if rule.ge is not None and not value >= rule.ge:
        return False
    if rule.gt is not None and not value > rule.gt:
        return False
    if rule.lt is not None and not value < rule.lt:
        return False
    return not (rule.multiple_of and value % rule.multiple_of)


def _check_value(value: Any, tp: Any, rule: _Rule, path: tuple, ctx: _Context) -> Any:
    kind, optional = _kind(tp)
    expected = _expected(kind, optional, rule)
    if value is None and optional:
        return None
    if kind == "list":
        if not isinstance(value, (list, tuple)) or (rule.nonempty and not value):
            ctx.fail(path, f"expected {expected}, got {_show(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                ctx.fail(path + (i,), f"expected a string, got {_show(item)}")
            if rule.check and (problem := rule.check(item)):
                ctx.fail(path + (i,), problem)
        return list(value)
    ok, converted = _convert(value, kind)
    if not (ok and _within(converted, rule)):
        ctx.fail(path, f"expected {expected}, got {_show(value)}")
    if rule.check and (problem := rule.check(converted)):
        ctx.fail(path, problem)
    return converted


def _rule(f: dataclasses.Field) -> _Rule:
    return f.metadata.get("rule", _Rule())


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _build(cls: type, data: Any, path: tuple, ctx: _Context) -> Any:
    """Turn one mapping into ``cls``, failing on the first problem in document order."""
    if data is None and path:
        data = {}  # a section whose keys are all commented out means "all defaults"
    if not isinstance(data, dict):
        what = f"{path[-1]} settings" if path else "settings at the top level (key: value lines)"
        ctx.fail(path, f"expected a mapping of {what}, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            ctx.fail(path + (str(key),), _unknown_key(str(key), cls, path))
    kwargs = {}
    for name, f in fields.items():
        tp = _hints(cls)[name]
        if name not in data:
            if _required(f):
                ctx.fail(path + (name,), f"missing required key; expected {_expected(*_kind(tp), _rule(f))}")
            continue
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], path + (name,), ctx)
        elif (item := _dataclass_items(tp)) is not None:
            kwargs[name] = _build_list(item, data[name], path + (name,), ctx)
        else:
            kwargs[name] = _check_value(data[name], tp, _rule(f), path + (name,), ctx)
    return cls(**kwargs)


def _dataclass_items(tp: Any) -> type | None:
    """The item class of a ``list[SomeDataclass]`` annotation; None for anything else."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if dataclasses.is_dataclass(item):
            return item
    return None


def _build_list(item: type, data: Any, path: tuple, ctx: _Context) -> list:
    if data is None:
        return []
    if not isinstance(data, (list, tuple)):
        ctx.fail(path, f"expected a list of {path[-1]} (each a mapping), got {_show(data)}")
    return [_build(item, entry, path + (i,), ctx) if isinstance(entry, dict)
            else ctx.fail(path + (i,), f"expected a mapping of {path[-1]} settings, got {_show(entry)}")
            for i, entry in enumerate(data)]


def _check_subjects(m: Manifest, ctx: _Context) -> None:
    """Several subjects in one model: every identifier and folder name once, one class prompt per class."""
    identifiers = {m.identifier: ("identifier",)}
    names: set[str] = set()
    class_prompts = {m.class_noun: m.class_prompt}
    for i, s in enumerate(m.subjects):
        path = ("subjects", i)
        if s.identifier in identifiers:
            ctx.fail(path + ("identifier",), f"{s.identifier!r} is already {_dotted(identifiers[s.identifier])}; "
                     "each subject needs its own identifier (e.g. zwx, qlt)")
        identifiers[s.identifier] = path + ("identifier",)
        if s.name in names:
            ctx.fail(path + ("name",), f"{s.name!r} names another subject already; each needs its own folder")
        names.add(s.name)
        prompt = s.class_prompt if s.class_prompt is not None else m.class_prompt
        if class_prompts.setdefault(s.class_noun, prompt) != prompt:
            ctx.fail(path + ("class_prompt",), f"subjects of class {s.class_noun!r} share class/ images, so they "
                     f"need the same class prompt (another has {class_prompts[s.class_noun]!r})")


def _migrate(data: dict, ctx: _Context) -> dict:
    """Bring an older manifest up to CURRENT_VERSION; refuse newer ones."""
    version = data.get("version", 1)  # files predating the key are the first format
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        ctx.fail(("version",), f"expected an integer >= 1, got {_show(version)}")
    if version > CURRENT_VERSION:
        ctx.fail(
            ("version",),
            f"manifest version {version} is newer than this dbooth supports ({CURRENT_VERSION}); "
            "upgrade dbooth (pip install -U dbooth)",
        )
    data = copy.deepcopy(data)
    while version < CURRENT_VERSION:
        if version not in MIGRATIONS:
            ctx.fail(("version",), f"no migration from manifest version {version}; this is a dbooth bug")
        data = MIGRATIONS[version](data)
        version += 1
        data["version"] = version
    return data


def _from_raw(data: Any, ctx: _Context) -> Manifest:
    if not isinstance(data, dict):
        _build(Manifest, data, (), ctx)  # raises the top-level mapping error
    m = _build(Manifest, _migrate(data, ctx), (), ctx)
    _check_subjects(m, ctx)
    return m


# --- public API -----------------------------------------------------------------------------------


def manifest_from_dict(data: dict, source: str = "<dict>") -> Manifest:
    """Validate a plain dict (as YAML would give) into a Manifest; errors name ``source``."""
    return _from_raw(data, _Context(source))


def manifest_to_dict(m: Manifest) -> dict:
    """A plain nested dict that ``manifest_from_dict`` turns back into an equal Manifest."""
    return dataclasses.asdict(m)


def _node_to_python(node: yaml.Node, path: tuple, ctx: _Context, loader: _Loader) -> Any:
    """Build plain values from a composed node, recording each key's line for error messages."""
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            ctx.lines[path + (str(key),)] = key_node.start_mark.line + 1
            if not isinstance(key, str):
                ctx.fail(path + (str(key),), "keys must be text; quote it")
            if key in out:
                ctx.fail(path + (key,), "duplicate key; each key may appear once")
            out[key] = _node_to_python(value_node, path + (key,), ctx, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            ctx.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_node_to_python(item, path + (i,), ctx, loader))
        return items
    return loader.construct_object(node, deep=True)


def _parse_yaml(text: str, ctx: _Context) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise DboothError(f"{ctx.source}: file is empty; expected key: value settings")
        ctx.lines[()] = node.start_mark.line + 1
        return _node_to_python(node, (), ctx, loader)
    except yaml.MarkedYAMLError as e:
        if e.context_mark is not None and (e.context or "").startswith("while parsing a flow"):
            # an unclosed [ or {: YAML notices lines later, where the next key is; point at the opening line
            bracket = "[" if "sequence" in e.context else "{"
            found = f" ({e.problem} on line {e.problem_mark.line + 1})" if e.problem_mark else ""
            raise DboothError(f"{ctx.source}:{e.context_mark.line + 1}: invalid YAML: the '{bracket}' opened on "
                              f"this line is not closed{found}") from None
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = e.problem or e.context
        if e.context and e.problem and e.problem.startswith("but "):
            problem = f"{e.context} {e.problem}"  # "expected a single document ... but found another"
        raise DboothError(f"{ctx.source}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise DboothError(f"{ctx.source}: invalid YAML: {e}") from None
    finally:
        loader.dispose()


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest file (or a workspace folder holding ``dbooth.yaml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    ctx = _Context(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DboothError(f"{path}: no such file; create a workspace with 'dbooth init'") from None
    except UnicodeDecodeError:
        raise DboothError(f"{path}: not UTF-8 text; save it as UTF-8 (or recreate it with `dbooth init`)") from None
    except OSError as e:
        raise DboothError(f"{path}: cannot read ({e.strerror})") from None
    return _from_raw(_parse_yaml(text, ctx), ctx)


def _field_at(path: tuple, ctx: _Context) -> Any:
    """The annotation of the setting at a dotted path; unknown keys fail with a suggestion."""
    cls: Any = Manifest
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            ctx.fail(path, f"unknown key; '{_dotted(path[:i])}' has no sub-keys")
        if part not in _hints(cls):
            ctx.fail(path, _unknown_key(part, cls, path[:i]))
        cls = _hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        example = _dotted(path + (dataclasses.fields(cls)[0].name,))
        ctx.fail(path, f"is a section; set one of its keys, e.g. {example}")
    return cls


def apply_overrides(m: Manifest, overrides: dict[str, object]) -> Manifest:
    """A copy of ``m`` with dotted-key overrides (``{"train.max_steps": 400}``); None means "not given".

    Strings given for non-string settings are read as YAML scalars, so ``--set train.max_steps=400``
    style options work too.
    """
    ctx = _Context("command line")
    data = manifest_to_dict(m)
    for key, value in overrides.items():
        if value is None:
            continue
        path = tuple(key.split("."))
        kind, _ = _kind(_field_at(path, ctx))
        if isinstance(value, str) and kind != "str":
            try:
                value = yaml.load(value, Loader=_Loader)
            except yaml.YAMLError:
                pass  # validation below reports it as the wrong type
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return _from_raw(data, ctx)


def template_path() -> Path:
    """The shipped template: inside the installed package (wheel), else the source checkout."""
    here = Path(__file__).resolve().parent.parent  # the dbooth package
    for candidate in (here / "templates" / MANIFEST_NAME, here.parent / "templates" / MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    raise DboothError(f"manifest template {MANIFEST_NAME} not found next to {here}; reinstall dbooth")


# ``{{ train.max_steps }}`` in the template is replaced by that setting's YAML value.
_TEMPLATE_SLOT = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def _yaml_value(value: Any) -> str:
    """One-line YAML for a value, quoted wherever a plain scalar would read back differently."""
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=math.inf, allow_unicode=True)
    text = text.rstrip("\n")
    if text.endswith("\n..."):
        text = text[:-4]
    if "\n" in text:  # multi-line strings: JSON strings are valid YAML double-quoted scalars
        text = json.dumps(value, ensure_ascii=False)
    return text


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def render_manifest(m: Manifest) -> str:
    """The commented template with ``m``'s values filled in; loads back to an equal Manifest.

    A value that is the base model's own default (a named model's, e.g. builtin:shapes' 64 px) ends its line with
    a comment saying so and why (``dbooth.plugins.default_comments``). Every render starts from the template, so
    rewriting a manifest never stacks comments, and a value changed away from the base's loses its comment.
    """
    from dbooth.plugins import default_comments

    source = template_path()
    values = _flatten(manifest_to_dict(m))
    comments = default_comments(m.base_model, values)
    used: set[str] = set()

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise DboothError(f"{source}: unknown placeholder {match.group(0)}; this is a dbooth bug")
        used.add(name)
        text = _yaml_value(values[name])
        ends_line = match.end() == len(match.string) or match.string.startswith("\n", match.end())
        return f"{text}  # {comments[name]}" if name in comments and ends_line else text

    text = _TEMPLATE_SLOT.sub(fill, source.read_text(encoding="utf-8"))
    missing = sorted(set(values) - used)
    if missing:
        raise DboothError(f"{source}: template lacks {', '.join(missing)}; this is a dbooth bug")
    return text


def write_manifest(path: str | os.PathLike, m: Manifest) -> None:
    """Write ``m`` as a commented manifest, atomically."""
    atomic_write_text(path, render_manifest(m))
