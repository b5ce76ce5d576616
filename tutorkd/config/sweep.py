"""The sweep config: a grid of teaching runs (teachers x seeds x students x environments) over one base run.

``tutorkd sweep SWEEP.yaml`` runs every grid point as its own teaching run in a folder named after the
point (``<sweep_root>/<environment>-<teacher>-<student>-s<seed>``), so a second invocation finds the runs
it already made. Each axis replaces its part of the base run config whole, as ``--teacher`` and
``--env`` do on ``tutorkd teach``; an axis left out keeps the base's.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tutorkd.config.base import Config, default_kind, resolve_spec
from tutorkd.config.environment import EnvConfig
from tutorkd.config.run import RunConfig
from tutorkd.config.student import StudentConfig
from tutorkd.config.teacher import TeacherConfig


def _named(folder: str):
    """A before-validator: a bare name (``uniform``) stands for the spec ``<folder>/<name>.yaml``, as
    under the repository root; a path or an inline mapping is read as ``resolve_spec`` reads it."""

    def load(value: object) -> object:
        if isinstance(value, str) and "/" not in value and not value.endswith((".yaml", ".yml")):
            value = f"{folder}/{value}.yaml"
        return resolve_spec(value)

    return load


def _env_spec(value: object) -> object:
    return default_kind("arithmetic")(_named("environments")(value))


TeacherSpec = Annotated[TeacherConfig, BeforeValidator(_named("agents"))]
EnvSpec = Annotated[EnvConfig, BeforeValidator(_env_spec)]
StudentSpec = Annotated[StudentConfig, BeforeValidator(default_kind("tiny"))]


class Resources(Config):
    """What each run of a sweep asks Ray for; a run starts once a node has that much free."""

    num_cpus: float = Field(1.0, ge=0)
    """CPU cores reserved for each run (Ray also sets the run's ``OMP_NUM_THREADS`` to it)."""
    num_gpus: float = Field(0.0, ge=0)
    """GPUs reserved for each run (a fraction shares one GPU); a run sees only those Ray gave it, and
    with 0 none at all."""


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep: its folder name, the labels it was named by, and its whole run config."""

    name: str
    environment: str
    teacher: str
    student: str
    seed: int
    config: RunConfig


def _slug(text: str) -> str:
    """``text`` as a folder-name part: only letters, digits, ``.``, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _env_label(env: EnvConfig) -> str:
    return f"{env.kind}-{env.level.value}"


def _student_label(student: StudentConfig) -> str:
    if student.kind == "hf":
        return Path(student.source).name
    if student.kind == "plugin":
        return student.import_path.rsplit(":", 1)[-1]
    return student.kind


class SweepConfig(Config):
    """A grid of teaching runs over a base run: every teacher x seed (x student x environment)."""

    base: Annotated[RunConfig, BeforeValidator(resolve_spec)] = RunConfig()
    """The run each grid point starts from: a run config inline or the path of one (``recipes/...``).
    Its ``seed`` and ``runs_root`` are replaced by the grid's, its other parts by the axes given."""
    teachers: list[TeacherSpec] = Field(min_length=1)
    """Teacher specs: paths (``agents/uniform.yaml``), bare names of ``agents/`` specs (``uniform``) or
    inline mappings; their ``name`` fields must differ (runs are compared by teacher name)."""
    seeds: list[int] = Field([0], min_length=1)
    """Run seeds; each teacher runs once per seed (paired comparisons use the seeds teachers share)."""
    students: list[StudentSpec] | None = None
    """Student specs (paths of YAML mappings, or inline); ``null`` keeps the base's student."""
    environments: list[EnvSpec] | None = None
    """Environment specs: paths, bare names of ``environments/`` specs or inline mappings; ``null``
    keeps the base's environment (with its sizes: a spec given here brings its own)."""
    resources: Resources = Resources()
    sweep_root: str = "runs/sweep"
    """Folder of the sweep: one run folder per grid point, and the comparison and report over them."""

    _labels: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @field_validator("teachers")
    @classmethod
    def _distinct_names(cls, teachers: list[TeacherConfig]) -> list[TeacherConfig]:
        names = [t.name for t in teachers]
        if len(set(names)) < len(names):
            raise ValueError(f"two teacher specs share a name ({', '.join(names)}); runs are compared by "
                             "teacher name, so give each spec its own `name`")
        return teachers

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"a seed is listed twice ({seeds}); each (teacher, seed) is one run")
        return seeds

    @model_validator(mode="wrap")
    @classmethod
    def _remember_spec_files(cls, data: Any, handler) -> SweepConfig:
        # Why wrap: a spec given as a file is named after it in run folders (``arithmetic-open``), but
        # validation replaces the path by the spec's contents; only the raw input still has it.
        cfg = handler(data)
        if isinstance(data, dict):
            cfg._labels = {axis: tuple(Path(v).stem if isinstance(v, str) else ""
                                       for v in data.get(axis) or ())
                           for axis in ("environments", "students")}
        cfg.points()  # every grid point must be a valid run with a folder of its own
        return cfg

    def _axis(self, axis: str, values: list | None, base: object, label) -> list[tuple[str, object]]:
        """(label, spec) of each value of an axis; the base's own when the axis is not given."""
        if values is None:
            return [(label(base), base)]
        files = self._labels.get(axis, ())
        return [(files[i] if i < len(files) and files[i] else label(v), v) for i, v in enumerate(values)]

    def points(self) -> list[GridPoint]:
        """Every grid point in order (environment, student, teacher, seed), each a validated run config.

        Raises ``ValueError`` when two points would share a folder, or naming the point and the field
        when a point's run config is invalid (a tiny student on GSM8K, say)."""
        base = self.base.model_dump(mode="json")
        envs = self._axis("environments", self.environments, self.base.environment, _env_label)
        students = self._axis("students", self.students, self.base.student, _student_label)
        points: dict[str, GridPoint] = {}
        for (env_label, env), (student_label, student), teacher, seed in itertools.product(
                envs, students, self.teachers, self.seeds):
            name = "-".join(_slug(x) for x in (env_label, teacher.name, student_label, f"s{seed}"))
            if name in points:
                raise ValueError(f"two grid points would share the run folder {name!r}: give the "
                                 "environments or students distinct spec files")
            data = {**base, "environment": env.model_dump(mode="json"),
                    "teacher": teacher.model_dump(mode="json"), "student": student.model_dump(mode="json"),
                    "seed": seed, "runs_root": self.sweep_root}
            try:
                config = RunConfig.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'run'}: "
                                     f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
                raise ValueError(f"grid point {name}: {problems}") from None
            points[name] = GridPoint(name, env_label, teacher.name, student_label, seed, config)
        return list(points.values())
