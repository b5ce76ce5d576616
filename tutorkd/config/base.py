"""The base of every config, and reading one from YAML with errors that name the field and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError


class Config(BaseModel):
    """Base of all configs: frozen, unknown keys rejected (a typo must not silently become a default).

    A field's docstring is its pydantic description (``model_fields[name].description``), so the docs
    of a config can be shown from the config itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ConfigError(Exception):
    """A config or path the user gave is wrong; the message says which field and how to fix it."""


def read_yaml(path: Path) -> object:
    """Parse a YAML file, turning syntax errors into a ``ConfigError`` that names the line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def resolve_spec(value: object) -> object:
    """A nested spec as written: the parsed YAML file when ``value`` is a path, else ``value`` itself.

    Lets a config name a spec file (``teacher: agents/uniform.yaml``) where it could write the mapping
    inline. A path that is not a file raises ``ValueError``, so that inside a validator pydantic reports
    it at the field.
    """
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"spec file {value!r} does not exist; "
                             "give an existing YAML path or an inline mapping")
        return read_yaml(path)
    return value


def default_kind(kind: str) -> Callable[[object], object]:
    """A before-validator: resolve a spec given as a path (``resolve_spec``), then give it ``kind`` if it
    names none (specs written before there was a choice of kinds name none)."""

    def load(value: object) -> object:
        value = resolve_spec(value)
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": kind, **value}
        return value

    return load


def format_validation_error(source: str, exc: ValidationError,
                            model: type[BaseModel] | TypeAdapter | None = None) -> str:
    """One line per problem: the dotted field path, what was wrong, and what to write instead.

    An unknown field gets the closest field name of its section and the ``tutorkd config show``
    command that lists them all; ``model`` is the class validated (found by the error's title if not
    given; a ``TypeAdapter``'s spec is placed by its kind).
    """
    # Why imported here: the reference reads the run and generate configs, which import this module.
    from tutorkd.config.reference import choices_of_kinds, unknown_field_message

    root = model if isinstance(model, type) else None
    title = exc.title if model is None else ""
    tags, holders = choices_of_kinds()
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        path = err["loc"]
        # Why: a union's kind tag is not a field the user wrote; ``environment.levle``, not
        # ``environment.arithmetic.levle``.
        path = [p for i, p in enumerate(path) if not (p in tags and (i == 0 or path[i - 1] in holders))]
        loc = ".".join(str(p) for p in path) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = unknown_field_message(root, title, err["loc"])
        elif err["type"] in ("literal_error", "enum"):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(model: type[Config] | TypeAdapter, path: str | Path) -> Config:
    """Load ``path`` as ``model`` (a config class, or a ``TypeAdapter`` such as ``ENV_SPEC``); any problem
    becomes a ``ConfigError`` naming the field and fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the path of a YAML spec "
                          "(see environments/ and agents/)")
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, model)) from None
