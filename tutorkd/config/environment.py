"""Environment configs: the embedded arithmetic domain, a real benchmark (GSM8K, MATH), or any
question/answer data of your own (``kind: dataset``)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, field_validator, model_validator

from tutorkd.config.base import Config, default_kind
from tutorkd.config.fields import (
    Budget,
    Level,
    MaxErrorsShown,
    Rounds,
    SplitSeed,
    TestPerSkill,
    TrainMode,
    ValPerSkill,
)
from tutorkd.config.teacher import TeacherLLMConfig
from tutorkd.schema import StructureLevel


class ArithmeticEnvConfig(Config):
    """The embedded procedural arithmetic domain as a teaching environment."""

    kind: Literal["arithmetic"] = "arithmetic"
    level: Level = StructureLevel.SKILL_TREE
    test_per_skill: TestPerSkill = Field(500, ge=10)
    val_per_skill: ValPerSkill = Field(100, ge=10)
    budget: Budget = 3000
    rounds: Rounds = 3
    max_errors_shown: MaxErrorsShown = 64
    train_mode: TrainMode = "continue"
    split_seed: SplitSeed = 1234


class DatasetEnvConfig(Config):
    """A real benchmark as a teaching environment: GSM8K or Hendrycks MATH, presets of the dataset
    environment with their own row formats and skills and the ``math`` checker (see
    ``tutorkd.environments.sources`` and ``tutorkd.environments.datasets``).

    Test problems come from the dataset's test split, validation problems and the teacher's pool of
    training problems from its train split; all three are disjoint and fixed by ``split_seed``.
    """

    kind: Literal["gsm8k", "math"]
    level: Level = StructureLevel.SKILL_TREE
    dataset: str | None = None
    """Hugging Face dataset id; default ``openai/gsm8k`` or ``DigitalLearningGmbH/MATH-lighteval``. Read
    from the local cache (``HF_HOME``) or downloaded where the network allows."""
    subsets: tuple[str, ...] = ()
    """Dataset configs to read and concatenate; default ``main`` (GSM8K), ``default`` (MATH-lighteval).
    ``EleutherAI/hendrycks_math`` has one per subject: ``algebra``, ``counting_and_probability``, ..."""
    train_file: str | None = None
    """Local train split in the dataset's row format (JSONL, JSON or parquet); replaces the hub dataset."""
    test_file: str | None = None
    """Local test split, same format; give both files or neither."""
    labels_file: str | None = None
    """Skill labels replacing the shipped ones: JSONL of ``{"question", "skill"}`` or the JSON the
    skill-discovery pipeline writes (``DiscoveredSkills``)."""
    test_per_skill: TestPerSkill = Field(100, ge=1)
    val_per_skill: ValPerSkill = Field(30, ge=1)
    budget: Budget = 2000
    rounds: Rounds = 3
    max_errors_shown: MaxErrorsShown = 32  # half arithmetic's: these problems are long
    train_mode: TrainMode = "continue"
    split_seed: SplitSeed = 1234
    check_workers: int = Field(1, ge=1)
    """Processes that compare answers with math-verify."""
    check_timeout_s: float = Field(5.0, gt=0)
    """Longest one answer comparison may take; a slower one counts as wrong (and is logged)."""

    @model_validator(mode="after")
    def _files_in_pairs(self) -> DatasetEnvConfig:
        if (self.train_file is None) != (self.test_file is None):
            raise ValueError("give both train_file and test_file (local splits) or neither (the hub dataset)")
        return self


CHECKER_NAMES = ("exact", "numeric", "math", "regex")
"""The answer checkers (``tutorkd.environments.checkers.CHECKERS``); ``regex`` takes ``:PATTERN``."""


class DiscoveryConfig(Config):
    """How skills are found for data without skill labels (``tutorkd.environments.discovery``)."""

    llm: TeacherLLMConfig | None = None
    """The LLM that names the skill each question needs; the names are then clustered. It runs whenever
    the domain is built (``eval`` and ``generate`` too): set ``labels_file`` to the run's
    ``discovered_skills.json`` to keep its skills. ``None``: no LLM, the questions themselves are
    clustered and each skill is named by its most characteristic words (one skill for fewer than 40
    problems)."""
    skills: int = Field(6, ge=1)
    """The most skills to find; fewer where a cluster would hold under 20 problems (no LLM)."""


class QAEnvConfig(Config):
    """Any question/answer data as a teaching environment: a JSONL, JSON, CSV or Parquet file, a folder
    (saved with ``datasets``' ``save_to_disk``, or of data files named by split) or a Hugging Face
    dataset id, read through ``datasets`` (see ``tutorkd.environments.tables``).

    Skills come from the ``skill`` column, a ``labels_file``, or else are discovered (``discovery``).
    Test, validation and pool problems are disjoint and fixed by ``split_seed``: test problems from
    ``test_split`` where the data has it, otherwise all three from ``split``.
    """

    kind: Literal["dataset"]
    path: str
    """A local file or folder, or a Hugging Face dataset id (read from the cache in ``HF_HOME`` or
    downloaded where the network allows)."""
    question: str
    """Column holding the question the student is asked."""
    answer: str
    """Column holding the gold answer, on one line (numbers are written in their shortest form)."""
    rationale: str | None = None
    """Column holding a worked solution without the answer; ``None``: the data has none, and every
    training completion is the answer alone."""
    skill: str | None = None
    """Column holding each question's skill (a dotted ``branch.leaf`` id makes a two-level tree);
    ``None``: a ``labels_file`` or discovery labels them."""
    name: str = Field("dataset", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """The domain's name, and the prefix of its problem ids (``<name>:<hash of the question>``)."""
    subset: str | None = None
    """Configuration of a Hugging Face dataset (its ``name`` in ``datasets.load_dataset``)."""
    split: str = "train"
    """Split the problems are read from; a single file is one split, ``train``."""
    test_split: str | None = "test"
    """Split of separate test rows, used where the data has it (a hub dataset, a saved
    ``DatasetDict``, a folder with a ``test`` file): test problems then come only from it, validation
    and pool problems from ``split``. ``None``, or absent from the data: all three from ``split``."""
    checker: str = "exact"
    """How answers are compared: ``exact``, ``numeric`` (``1,000`` equals ``1000``, ``0.5`` equals
    ``.50``), ``math`` (math-verify) or ``regex:PATTERN`` (the first group of PATTERN in the answer
    line, compared exactly)."""
    labels_file: str | None = None
    """Skill labels: JSONL of ``{"question", "skill"}`` or a ``DiscoveredSkills`` JSON (say, a run's
    ``discovered_skills.json``, to keep LLM-discovered skills fixed); questions it does not label are
    dropped and counted."""
    discovery: DiscoveryConfig = DiscoveryConfig()
    """How skills are found when there is neither a ``skill`` column nor a ``labels_file``."""
    level: Level = StructureLevel.SKILL_LIST  # discovered skills are flat: a tree would add nothing
    test_per_skill: TestPerSkill = Field(100, ge=1)
    val_per_skill: ValPerSkill = Field(30, ge=1)
    budget: Budget = 2000
    rounds: Rounds = 3
    max_errors_shown: MaxErrorsShown = 32
    train_mode: TrainMode = "continue"
    split_seed: SplitSeed = 1234
    check_workers: int = Field(1, ge=1)
    """Processes that compare answers with math-verify (``checker: math``)."""
    check_timeout_s: float = Field(5.0, gt=0)
    """Longest one math-verify comparison may take; a slower one counts as wrong (and is logged)."""

    @field_validator("checker")
    @classmethod
    def _known_checker(cls, value: str) -> str:
        name, colon, pattern = value.partition(":")
        if name not in CHECKER_NAMES or (name == "regex") != bool(colon):
            raise ValueError(f"unknown checker {value!r}; use exact, numeric, math or regex:PATTERN")
        if name == "regex":
            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"checker regex {pattern!r} does not compile: {exc}") from None
            if groups < 1:
                raise ValueError(f"checker regex {pattern!r} has no group; put the answer in (...)")
        return value

    @model_validator(mode="after")
    def _one_source_of_skills(self) -> QAEnvConfig:
        if self.skill is not None and self.labels_file is not None:
            raise ValueError("give a skill column or a labels_file, not both")
        return self


EnvConfig = Annotated[ArithmeticEnvConfig | DatasetEnvConfig | QAEnvConfig, Field(discriminator="kind")]
"""Any environment config, told apart by ``kind`` (``arithmetic`` when a spec names none)."""

ENV_SPEC: TypeAdapter[ArithmeticEnvConfig | DatasetEnvConfig | QAEnvConfig] = TypeAdapter(
    Annotated[EnvConfig, BeforeValidator(default_kind("arithmetic"))]
)
"""Validates an environment spec file (``load_config(ENV_SPEC, path)``)."""
