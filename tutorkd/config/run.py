"""The run config: environment, teacher, student, backend and seed of one teaching run."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, model_validator

from tutorkd.config.base import Config, default_kind, resolve_spec
from tutorkd.config.environment import ArithmeticEnvConfig, EnvConfig
from tutorkd.config.student import BackendConfig, StudentConfig, TinyStudentConfig
from tutorkd.config.teacher import TeacherConfig


class RunConfig(Config):
    """A teaching run: environment, teacher, student, backend, seed.

    The environment and teacher may be given inline or as a path to one of the YAML specs under the
    repository's ``environments/`` and ``agents/`` folders.
    """

    environment: Annotated[EnvConfig, BeforeValidator(default_kind("arithmetic"))] = ArithmeticEnvConfig()
    teacher: Annotated[TeacherConfig, BeforeValidator(resolve_spec)] = TeacherConfig(
        name="uniform", policy="uniform"
    )
    student: Annotated[StudentConfig, BeforeValidator(default_kind("tiny"))] = TinyStudentConfig()
    backend: BackendConfig = BackendConfig()
    seed: int = 0
    runs_root: str = "runs"
    """Folder in which a new run directory is created."""

    @model_validator(mode="after")
    def _student_reads_environment(self) -> RunConfig:
        if self.environment.kind != "arithmetic" and self.student.kind == "tiny":
            raise ValueError(
                f"environment kind {self.environment.kind} needs a pretrained student: set student to "
                "{kind: hf, model: smollm2-135m-instruct or <local model folder>} in a run config (e.g. "
                "recipes/gsm8k-qwen.yaml); the tiny character-level student only reads arithmetic"
            )
        return self
