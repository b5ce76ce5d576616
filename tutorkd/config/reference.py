"""The config reference, generated from the models: every field as commented YAML, a JSON Schema for
editors, and where a misspelled field belongs (``tutorkd config show``/``schema`` and the did-you-mean
hint of ``format_validation_error``).

A section is a dotted path of fields that hold configs (``student``, ``teacher.stat``). Where a field
is a choice of kinds (a discriminated union: ``environment``, ``student``), the kind may follow it to
pick another than the default (``environment.gsm8k``, ``student.hf``). Fields with no default are shown
commented out and marked ``# required``, so the YAML shown always parses as the defaults.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import textwrap
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from tutorkd.config.base import Config, ConfigError, default_kind, resolve_spec
from tutorkd.config.run import RunConfig

ROOT_COMMANDS = {"RunConfig": "teach", "GenerateConfig": "generate", "EvalConfig": "eval",
                 "SweepConfig": "sweep"}
"""The command whose config each root model is; by name, because ``EvalConfig`` lives in
``tutorkd.evals``, above this package."""

WIDTH = 100  # comment lines are wrapped to this many characters
_MISSING = object()  # the value of a required field that has none


@dataclass(frozen=True)
class Place:
    """A config section: its model, its default there (``None`` where it has none), how to reach it."""

    model: type[BaseModel]
    value: BaseModel | None
    keys: tuple[str, ...] = ()
    """The keys a YAML file nests it under (``("environment",)``)."""
    section: tuple[str, ...] = ()
    """The same as ``--section`` names it: a kind other than the default follows its field."""
    kind: str | None = None
    """The kind the section picked at a choice of kinds, where it is not the default's."""


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config classes a field may hold: one class, a union of them, or an optional one."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in models_in(arg)]
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def kinds(model: type[BaseModel]) -> tuple[str, ...]:
    """The values of ``model``'s ``kind`` literal, which tell the members of a union apart."""
    field = model.model_fields.get("kind")
    return get_args(field.annotation) if field and get_origin(field.annotation) is Literal else ()


def _fields(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """Key as written in YAML (the alias, if any) -> (attribute name, field)."""
    return {(f.alias or name): (name, f) for name, f in model.model_fields.items()}


def _default(model: type[BaseModel]) -> BaseModel | None:
    try:
        return model()
    except ValidationError:  # a required field: there is no default instance
        return None


def _child(place: Place, key: str, tag: object = None) -> tuple[Place, bool] | None:
    """The section under ``key`` of ``place`` (``None`` if ``key`` holds no config), and whether ``tag``
    was one of its kinds: at a choice of kinds, ``tag`` picks that member."""
    name, field = _fields(place.model)[key]
    models = models_in(field.annotation)
    if not models:
        return None
    if place.value is not None:
        value = getattr(place.value, name)
    else:
        value = None if field.is_required() else field.get_default(call_default_factory=True)
    value = value if isinstance(value, BaseModel) else None
    model = type(value) if value is not None else models[0]
    keys, section, kind = (*place.keys, key), (*place.section, key), None
    picked = [m for m in models if tag in kinds(m)] if len(models) > 1 else []
    if picked and getattr(value, "kind", None) != tag:
        model, value, kind, section = picked[0], None, str(tag), (*section, str(tag))
    return Place(model, value, keys, section, kind), bool(picked)


def locate(root: type[BaseModel], parts: Sequence[object]) -> Place:
    """The section at ``parts`` (fields, each optionally followed by a kind); ``ConfigError`` naming the
    closest field if there is none."""
    place = Place(root, _default(root))
    i = 0
    while i < len(parts):
        key, where = str(parts[i]), f"section {'.'.join(map(str, parts))}"
        if key not in (fields := list(_fields(place.model))):
            match = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {match[0]}?" if match else f"its fields: {', '.join(fields)}"
            raise ConfigError(f"{where}: {key!r} is not a field; {hint}")
        found = _child(place, key, parts[i + 1] if i + 1 < len(parts) else None)
        if found is None:
            shown = ".".join(place.section) or "(top level): omit --section"
            raise ConfigError(f"{where}: {key!r} is a field, not a section; it is shown in section {shown}")
        place, took_kind = found
        i += 2 if took_kind else 1
    return place


def _comment(text: str, indent: str) -> list[str]:
    """``text`` as ``#`` lines, paragraph by paragraph, reST literals shown as Markdown ones."""
    text = inspect.cleandoc(text).replace("``", "`")
    width = max(WIDTH - len(indent) - 2, 40)
    paragraphs = [textwrap.wrap(" ".join(para.split()), width, break_on_hyphens=False)
                  for para in text.split("\n\n")]
    lines = [line for para in paragraphs for line in ["", *para]][1:]  # a bare `#` between paragraphs
    return [f"{indent}# {line}".rstrip() for line in lines]


def type_text(annotation: Any) -> str:
    """A field's type as the YAML author reads it: ``int``, ``open_ended | skill_list``, ``list of str``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_text(a) for a in args))
    if origin in (tuple, list, set, frozenset):
        item = type_text(args[0]) if args else "any"
        return f"list of ({item})" if " " in item else f"list of {item}"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> list[str]:
    marks = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("pattern", "matching"))
    return [f"{sign} {getattr(m, attr)}" for m in field.metadata for attr, sign in marks
            if getattr(m, attr, None) is not None]


def _yaml(value: object) -> str:
    """One value in YAML flow style, quoted where YAML would misread it."""
    text = yaml.safe_dump([to_jsonable_python(value)], default_flow_style=True, width=10**6).strip()
    return text[1:-1]


def _show(command: str, section: Sequence[str]) -> str:
    return f"tutorkd config show {command}" + (f" --section {'.'.join(section)}" if section else "")


def _section_lines(place: Place, command: str, indent: str) -> list[str]:
    """Every field of ``place``, each under its docs; sections nested."""
    lines: list[str] = []
    after_section = False
    for key, (name, field) in _fields(place.model).items():
        if place.value is not None:
            value = getattr(place.value, name)
        elif name == "kind" and place.kind is not None:
            value = place.kind
        else:
            value = _MISSING if field.is_required() else field.get_default(call_default_factory=True)
        found = _child(place, key) if isinstance(value, BaseModel) else None
        child = found[0] if found else None
        doc = field.description
        if child is not None and not doc:  # a nested config's own summary stands in for a field docstring
            doc = (inspect.getdoc(child.model) or "").split("\n\n")[0]
        if (child is not None or after_section) and lines:  # a blank line sets each section apart
            lines.append("")
        after_section = child is not None
        lines += _comment(doc, indent) if doc else []
        if child is not None:
            others = [k for m in models_in(field.annotation) for k in kinds(m) if k != value.kind]
            if len(models_in(field.annotation)) > 1 and others:
                lines += [f"{indent}# Kinds: {value.kind} (the default, shown), {', '.join(others)}. "
                          "See another with:",
                          f"{indent}#   {_show(command, (*child.section, others[0]))}"]
            lines.append(f"{indent}{key}:")
            lines += _section_lines(child, command, indent + "  ")
            continue
        kind = ", ".join([type_text(field.annotation), *_bounds(field)])
        if models_in(field.annotation):
            kind += f"; its fields: {_show(command, (*place.section, key))}"
        if value is _MISSING:
            lines.append(f"{indent}# {key}: <{type_text(field.annotation)}>  # required")
        else:
            lines.append(f"{indent}{key}: {_yaml(value)}  # {kind}")
    return lines


def render_config(root: type[BaseModel], command: str, section: str = "") -> str:
    """``root``'s config as commented YAML, every field at its default, or only the dotted ``section``.

    Parsed, it validates to the defaults: ``RunConfig()`` for ``teach``; required fields are commented
    out (``# name: <str>  # required``) and must be filled in.
    """
    place = locate(root, section.split(".") if section else [])
    where = f", section {'.'.join(place.section)} ({place.model.__name__})" if place.keys else ""
    lines = [f"# `tutorkd {command}` config ({root.__name__}){where}: every field, its type and its default.",
             f"# JSON Schema for editors: tutorkd config schema {command}", "#"]
    lines += [*_comment(inspect.getdoc(place.model) or "", ""), ""]
    indent = ""
    for key in place.keys:
        lines.append(f"{indent}{key}:")
        indent += "  "
    lines += _section_lines(place, command, indent)
    return "\n".join(lines) + "\n"


def json_schema(root: type[BaseModel]) -> dict:
    """``root``'s JSON Schema (validation mode: what a YAML file may hold), for editors.

    A field that may name a spec file instead (``teacher: agents/uniform.yaml``) also accepts a string:
    pydantic cannot see that in the before-validator that reads the file.
    """
    schema = root.model_json_schema()
    for key, (_, field) in _fields(root).items():
        if any(isinstance(m, BeforeValidator) and (m.func is resolve_spec or
                                                   m.func.__qualname__.startswith(default_kind.__name__))
               for m in field.metadata):
            prop = schema["properties"][key]
            spec = {k: prop.pop(k) for k in list(prop) if k not in ("default", "description", "title")}
            prop["anyOf"] = [spec, {"type": "string", "description": "Path of a YAML spec file."}]
    return schema


def _config_classes() -> list[type[Config]]:
    found, todo = [], [Config]
    while todo:
        found.append(cls := todo.pop())
        todo.extend(cls.__subclasses__())
    return found


def choices_of_kinds() -> tuple[frozenset[str], frozenset[str]]:
    """The kinds of every choice of kinds among the configs (which pydantic puts in error paths, though
    the user never wrote them), and the fields that hold such a choice."""
    tags, holders = set(), set()
    for cls in _config_classes():
        for key, (_, field) in _fields(cls).items():
            models = models_in(field.annotation)
            if len(models) > 1 and (found := {k for m in models for k in kinds(m)}):
                tags |= found
                holders.add(key)
    return frozenset(tags), frozenset(holders)


def _as_command(root: type[BaseModel] | None, loc: tuple) -> tuple[str, type[BaseModel], tuple] | None:
    """The command and root model whose ``config show`` has ``loc``; a spec of one part of a run config
    (a teacher, an environment) is placed under its field of ``RunConfig``."""
    if root is not None and root.__name__ in ROOT_COMMANDS:
        return ROOT_COMMANDS[root.__name__], root, loc
    for key, field in RunConfig.model_fields.items():
        models = models_in(field.annotation)
        if root is not None and root in models:
            # Why the kind: a member of a choice of kinds is found by its tag, as in pydantic's paths.
            return "teach", RunConfig, ((key, *kinds(root)[:1], *loc) if len(models) > 1 else (key, *loc))
        # Why: a spec validated by a TypeAdapter (``ENV_SPEC``) has no class; its union tag leads the path.
        if root is None and len(models) > 1 and loc and any(loc[0] in kinds(m) for m in models):
            return "teach", RunConfig, (key, *loc)
    return None


def unknown_field_message(root: type[BaseModel] | None, title: str, loc: tuple) -> str:
    """The message of an unknown field at ``loc`` (pydantic's, union tags included) of a config of
    class ``root`` (else the one named ``title``): the closest field name and where to see them all."""
    root = root or next((cls for cls in _config_classes() if cls.__name__ == title), None)
    found = _as_command(root, loc)
    if found is None:
        return "unknown field; remove it or check its spelling against `tutorkd config show`"
    command, model, path = found
    try:
        place = locate(model, path[:-1])
    except ConfigError:  # inside a free-form mapping: no fields to suggest
        return f"unknown field; remove it or check its spelling (see {_show(command, ())})"
    match = difflib.get_close_matches(str(path[-1]), list(_fields(place.model)), n=1)
    advice = f"did you mean {match[0]}?" if match else "remove it or check its spelling"
    return f"unknown field; {advice} (see {_show(command, place.section)})"
