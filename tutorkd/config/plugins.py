"""Plug-ins: a class named by import path in a spec, instead of one of tutorkd's built-in names.

A spec names a plug-in as a mapping with an ``import`` key, ``module.path:ClassName``, and the options
its constructor takes as the other keys::

    policy: {import: mylab.teachers:CurriculumPolicy, warmup_rounds: 2}

The class is imported and checked against the protocol it must satisfy when the config loads, so a
typo or a class without the right methods fails with exit code 2 and the field's path, before a run
directory exists. Built-ins stay a flat dict of names per extension point; a plug-in is the one other
way in.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pydantic import ConfigDict, Field

from tutorkd.config.base import Config


class PluginSpec(Config):
    """``{import: module.path:ClassName, <option>: <value>, ...}``: a class and its constructor options."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    import_path: str = Field(alias="import", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """Where the class lives, ``module.path:ClassName`` (the module must be importable: installed, or
    on ``PYTHONPATH``)."""

    def options(self) -> dict[str, Any]:
        """The constructor options: every key of the spec but ``import``."""
        return dict(self.model_extra or {})

    def load(self) -> type:
        """The class, imported; ``ValueError`` naming the path when it cannot be."""
        return load_class(self.import_path)


def load_class(path: str) -> type:
    """Import ``module.path:ClassName``; ``ValueError`` with what went wrong and the fix."""
    module_name, _, name = path.partition(":")
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


def plugin_of(protocol: type):
    """An after-validator for a ``PluginSpec`` field (``Annotated[PluginSpec, AfterValidator(...)]``):
    import the class and check that it implements ``protocol``; a ``ValueError`` (shown with the
    field's path) otherwise."""

    def check(spec: PluginSpec) -> PluginSpec:
        cls = spec.load()
        missing = missing_methods(cls, protocol)
        if missing:
            raise ValueError(f"{spec.import_path} does not implement {protocol.__name__}: it lacks "
                             f"{', '.join(missing)}")
        return spec

    return check

