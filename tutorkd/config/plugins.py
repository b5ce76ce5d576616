"""Plug-ins: a class named by import path in a spec, instead of one of tutorkd's built-in names.

A spec names a plug-in as a mapping with an ``import`` key, ``module.path:ClassName``, and the options
its constructor takes as the other keys::

    policy: {import: mylab.teachers:CurriculumPolicy, warmup_rounds: 2}

The class is imported and checked against the protocol it must satisfy when the config loads, so a
typo, a class without the right methods or an option its constructor does not take fails with exit
code 2 and the field's path, before a run directory exists. Built-ins stay a flat dict of names per
extension point; a plug-in is the one other way in.

The module is imported from installed packages, ``PYTHONPATH`` and the current directory (the
``tutorkd`` command does not search the latter by itself; ``python -m`` does).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo

from tutorkd.config.base import Config


def checking_only(*protocols: type) -> Mapping[str, frozenset[str]]:
    """Validation context under which only the plug-ins implementing one of ``protocols`` are imported and
    checked; every other plug-in spec is kept as written. ``checking_only()`` checks none: for reading what a
    finished run wrote (``load_run``, ``compare``, ``report``), which needs none of its code; ``tutorkd
    eval``, which builds a finished run's student and nothing else, checks ``Student`` only. Whatever
    builds the whole run again (a resume) validates without a context, checking every plug-in."""
    return MappingProxyType({"check_plugins": frozenset(p.__name__ for p in protocols)})


def _checking(info: ValidationInfo, protocol: type) -> bool:
    """Whether this validation imports and checks plug-ins implementing ``protocol`` (always, without a
    context; under ``checking_only`` only those it names)."""
    return info.context is None or protocol.__name__ in info.context["check_plugins"]


class PluginSpec(Config):
    """``{import: module.path:ClassName, <option>: <value>, ...}``: a class and its constructor options."""

    # Why serialize_by_alias: a run's saved config.yaml then reads ``import:`` as the user wrote it.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, serialize_by_alias=True)

    import_path: str = Field(alias="import", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """Where the class lives, ``module.path:ClassName`` (the module must be importable: installed, on
    ``PYTHONPATH`` or in the current directory)."""

    def options(self) -> dict[str, Any]:
        """The constructor options: every key of the spec but ``import`` (and a subclass's own fields)."""
        return dict(self.model_extra or {})

    def load(self) -> type:
        """The class, imported; ``ValueError`` naming the path when it cannot be."""
        return load_class(self.import_path)


def load_class(path: str) -> type:
    """Import ``module.path:ClassName``; ``ValueError`` with what went wrong and the fix."""
    module_name, _, name = path.partition(":")
    # Why append the working directory: a plug-in module beside the specs one runs from is the common
    # case, and the ``tutorkd`` script, unlike ``python -m``, does not search it. Appended, so an
    # installed package of the same name still wins.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} ({exc}); install the package that provides it or "
                         "put its folder on PYTHONPATH") from None
    if name not in vars(module):
        raise ValueError(f"module {module_name!r} has no {name!r}; check the class name after ':'")
    found = vars(module)[name]
    if not inspect.isclass(found):
        raise ValueError(f"{path} is not a class")
    return found


def missing_methods(cls: type, protocol: type) -> list[str]:
    """The methods ``protocol`` declares that ``cls`` does not define (checked statically, nothing is
    instantiated)."""
    wanted = [name for name, member in vars(protocol).items()
              if inspect.isfunction(member) and not name.startswith("_")]
    return [name for name in wanted if not callable(inspect.getattr_static(cls, name, None))]


def defines(cls: type, protocol: type) -> bool:
    """Whether ``cls`` defines every method of ``protocol`` (an optional ability, decided from the class)."""
    return not missing_methods(cls, protocol)


def plugin_of(protocol: type, *,
              args: tuple[str, ...] | None = None) -> Callable[[PluginSpec, ValidationInfo], PluginSpec]:
    """An after-validator for a ``PluginSpec`` (``Annotated[PluginSpec, AfterValidator(...)]``, or called
    from a model validator): import the class and check that it implements ``protocol``; a
    ``ValueError`` (shown with the field's path) otherwise. Under a ``checking_only`` context that does
    not name ``protocol`` the spec passes as it is.

    ``args`` names the positional arguments tutorkd passes before the options (``("inputs",)``: the
    class is built as ``Cls(inputs, **options)``); when given, the options are checked against the
    constructor's signature too, so a misspelt or missing option fails here rather than mid-run."""

    def check(spec: PluginSpec, info: ValidationInfo) -> PluginSpec:
        if not _checking(info, protocol):
            return spec
        cls = spec.load()
        missing = missing_methods(cls, protocol)
        if missing:
            raise ValueError(f"{spec.import_path} does not implement {protocol.__name__}: it lacks "
                             f"{', '.join(missing)}")
        if args is not None:
            call = f"{cls.__name__}({', '.join((*args, '**options'))})"
            try:
                inspect.signature(cls).bind(*args, **spec.options())
            except TypeError as exc:
                raise ValueError(f"{spec.import_path} is built as {call}, which does not fit: "
                                 f"{exc}") from None
        return spec

    return check


def name_or_plugin(what: str, names: tuple[str, ...], protocol: type,
                   args: tuple[str, ...]) -> Callable[[object, ValidationInfo], object]:
    """A before-validator for a field that takes a built-in name from ``names`` or a plug-in spec whose
    class implements ``protocol`` (``plugin_of``), with one message per mistake instead of one per
    member of the union."""
    check = plugin_of(protocol, args=args)

    def validate(value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(names)}, or "
                                 "{import: module.path:ClassName} for a class of your own")
            return value
        if isinstance(value, PluginSpec):
            return check(value, info)
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a {what} name or a mapping {{import: module.path:ClassName, ...}}, "
                             f"got {type(value).__name__}")
        try:
            spec = PluginSpec.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"a plug-in {what} is {{import: module.path:ClassName, <option>: <value>, ...}} "
                             f"({problems})") from None
        return check(spec, info)

    return validate
