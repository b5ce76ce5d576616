"""Environment configs: the embedded arithmetic domain, or a real benchmark (GSM8K, MATH)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, model_validator

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
    """A real benchmark as a teaching environment: GSM8K or Hendrycks MATH (see
    ``tutorkd.environments.datasets``).

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


EnvConfig = Annotated[ArithmeticEnvConfig | DatasetEnvConfig, Field(discriminator="kind")]
"""Any environment config, told apart by ``kind`` (``arithmetic`` when a spec names none)."""

ENV_SPEC: TypeAdapter[ArithmeticEnvConfig | DatasetEnvConfig] = TypeAdapter(
    Annotated[EnvConfig, BeforeValidator(default_kind("arithmetic"))]
)
"""Validates an environment spec file (``load_config(ENV_SPEC, path)``)."""
