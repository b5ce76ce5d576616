"""Configs: pydantic models loaded from YAML, with errors that name the field and the fix.

A run config names an environment, a teacher, a student and a backend. The environment and teacher
may be given inline or as a path to one of the YAML specs under the repository's ``environments/``
and ``agents/`` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tutorkd.schema import StructureLevel


class Config(BaseModel):
    """Base of all configs: frozen, unknown keys rejected (a typo must not silently become a default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(Exception):
    """A config or path the user gave is wrong; the message says which field and how to fix it."""


def _load_if_path(value: object) -> object:
    """Let a nested spec be a path to a YAML file instead of an inline mapping."""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"spec file {value!r} does not exist; give an existing YAML path or an inline mapping")
        return read_yaml(path)
    return value


class ArithmeticEnvConfig(Config):
    """The embedded procedural arithmetic domain as a teaching environment."""

    kind: Literal["arithmetic"] = "arithmetic"
    level: StructureLevel = StructureLevel.SKILL_TREE
    """What the teacher sees: ``open_ended`` (errors), ``skill_list`` (+ per-skill accuracy), ``skill_tree``."""
    test_per_skill: int = Field(500, ge=10)
    """Held-out test problems per skill (clamped to a third of a small skill's problem space)."""
    val_per_skill: int = Field(100, ge=10)
    """Teacher-visible validation problems per skill: feedback comes from these, never from test."""
    budget: int = Field(3000, ge=1)
    """Cumulative number of training examples the teacher may add over the whole run."""
    rounds: int = Field(3, ge=1)
    max_errors_shown: int = Field(64, ge=0)
    """Errors included in each feedback (a teacher LLM's context is finite)."""
    train_mode: Literal["continue", "retrain"] = "continue"
    """``continue``: each round's adapter starts from the last one and trains on the new data;
    ``retrain``: each round trains a fresh adapter from the base on all data so far (DataEnvGym)."""
    split_seed: int = 1234
    """Seed of the held-out sets: fixed, so every run and teacher is scored on the same problems."""


EnvConfig = ArithmeticEnvConfig


class TeacherConfig(Config):
    """A teacher: a policy that plans and an engine that generates."""

    name: str
    policy: Literal["uniform", "error_driven"]
    per_round: int = Field(1000, ge=1)
    """Examples asked for each round (the environment's budget caps the total)."""
    style: Literal["rationale", "direct", "mixed"] = "rationale"
    """Completion style: worked steps then answer, the answer only, or half each."""
    engine: Literal["procedural"] = "procedural"


class TinyStudentConfig(Config):
    """The embedded tiny student: a character-level Llama pretrained here on a skewed skill mix."""

    kind: Literal["tiny"] = "tiny"
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    pretrain_steps: int = Field(900, ge=1)
    pretrain_batch: int = 128
    pretrain_lr: float = 3e-3
    pretrain_mix: dict[str, float] | None = None
    """Skill id to sampling weight for pretraining; ``None`` uses the domain's default skewed mix."""
    pretrain_rationale_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of pretraining examples written with a rationale, so the student can use explanations."""
    pretrain_explained_share: float = Field(0.2, ge=0.0, le=1.0)
    """Share of pretraining examples whose prompt already holds the rationale (all of it or its first
    steps) and whose completion continues from there: teaches the student to use an explanation."""
    pretrain_seed: int = 0
    cache_dir: str | None = None
    """Where pretrained bases are cached by recipe hash; default ``~/.cache/tutorkd/students``."""
    lora_rank: Literal[8, 16, 32, 64] = 16
    lora_alpha: int = 32
    learning_rate: float = 2e-3
    epochs: int = Field(2, ge=1)
    batch_size: int = 64


class BackendConfig(Config):
    """Which engine serves the student versions."""

    kind: Literal["vllm", "transformers"] = "vllm"
    max_model_len: int = 128
    kv_cache_gib: int = 1
    """vLLM CPU KV cache size (``VLLM_CPU_KVCACHE_SPACE``)."""
    restart_per_version: bool = False
    """Restart the engine whenever the student version changes, as DataEnvGym does. Only for
    measuring what tutorkd's resident engine saves (``benchmarks/loop_overhead.py``)."""


class RunConfig(Config):
    """A teaching run: environment, teacher, student, backend, seed."""

    environment: Annotated[EnvConfig, BeforeValidator(_load_if_path)] = EnvConfig()
    teacher: Annotated[TeacherConfig, BeforeValidator(_load_if_path)] = TeacherConfig(
        name="uniform", policy="uniform"
    )
    student: TinyStudentConfig = TinyStudentConfig()
    backend: BackendConfig = BackendConfig()
    seed: int = 0
    runs_root: str = "runs"
    """Folder in which a new run directory is created."""


def read_yaml(path: Path) -> object:
    """Parse a YAML file, turning syntax errors into a ``ConfigError`` that names the line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: the dotted field path, what was wrong, and what to write instead."""
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling against `tutorkd teach --help`"
        elif err["type"] in ("literal_error", "enum"):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(model: type[Config], path: str | Path) -> Config:
    """Load ``path`` as ``model``; any problem becomes a ``ConfigError`` naming the field and fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the path of a YAML spec (see environments/ and agents/)")
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
