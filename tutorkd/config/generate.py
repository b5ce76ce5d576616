"""Configs of tailored data generation: the tiny teacher LM, ARTE, PerSyn, and a ``tutorkd generate`` spec.

A spec names the student the data is tailored to, the environment whose held-out sets the data must
stay clear of, the method (``stat_syn``, ``arte`` or ``persyn``) and how many examples to write.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from tutorkd.config.base import Config, default_kind
from tutorkd.config.environment import ArithmeticEnvConfig, EnvConfig
from tutorkd.config.fields import (
    CacheDir,
    Heads,
    HiddenSize,
    Layers,
    PretrainBatch,
    PretrainLR,
    PretrainSeed,
    PretrainSteps,
)
from tutorkd.config.student import StudentConfig, TinyStudentConfig
from tutorkd.config.teacher import StatConfig, TeacherLLMConfig


class TeacherLMConfig(Config):
    """The tiny teacher LM: a character-level Llama pretrained here to write whole examples.

    Its prompt is a skill tag (``#add:`` for a branch, ``#add.carry:`` for a leaf), its completion a
    question and its solution (``47+38=R:7+8=15 4+3+1=8 A:85``). The pretraining stream mixes styles on
    purpose, so that aligning it to a student has something to move: solutions with or without a
    rationale (``rationale_share``), operands from the lower or upper half of a skill's range or from
    all of it (``small_share``, ``large_share``), and, for a branch tag, any of its leaves.
    """

    hidden_size: HiddenSize = 128
    layers: Layers = 4
    heads: Heads = 4
    pretrain_steps: PretrainSteps = 600  # 600 x 64 examples take about 2.5 minutes on one core
    pretrain_batch: PretrainBatch = Field(64, ge=1)
    pretrain_lr: PretrainLR = 3e-3
    branch_share: float = Field(0.6, ge=0.0, le=1.0)
    """Share of pretraining prompts that name a branch (the teacher then picks the leaf) not a leaf."""
    rationale_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of pretraining solutions written with a rationale (the rest: the answer only)."""
    small_share: float = Field(0.3, ge=0.0, le=1.0)
    """Share of pretraining problems whose operands all lie in the lower half of their range."""
    large_share: float = Field(0.3, ge=0.0, le=1.0)
    """Share whose operands all lie in the upper half (the rest: drawn from the whole range)."""
    pretrain_seed: PretrainSeed = 0
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature of generation (ARTE drafts and regenerates questions at 1.0)."""
    model: str | None = None
    """A local Hugging Face causal LM folder to use as the teacher instead of pretraining the tiny one
    (on GPUs). It is prompted with the same skill tags, so it must know the format (fine-tune it on
    ``teacher_pretrain.pretrain_example`` first); the pretraining fields are then unused."""
    cache_dir: CacheDir = None

    @model_validator(mode="after")
    def _shares(self) -> TeacherLMConfig:
        if self.small_share + self.large_share > 1.0:
            raise ValueError(f"small_share + large_share = {self.small_share + self.large_share} exceeds 1")
        return self


class AlignConfig(Config):
    """DPO of the teacher (TRL ``DPOTrainer``, full fine-tune against a frozen copy as reference)."""

    beta: float = Field(0.1, gt=0.0)
    learning_rate: float = Field(1e-4, gt=0.0)
    """Far above ARTE's 1e-7 for a 70B model: the tiny teacher has 1 M parameters and few pairs (at 1e-3
    its DPO loss rose after two steps)."""
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)


class ArteConfig(Config):
    """ARTE (Liu et al. 2024): draft, collect the student's preferences, DPO the teacher, regenerate."""

    questions: int = Field(48, ge=4)
    """Draft questions per task prompt (ARTE's m = 250)."""
    rationales: int = Field(4, ge=2)
    """Solutions sampled per draft question (ARTE's n = 4)."""
    probe_per_task: int = Field(24, ge=2)
    """Preference-set size per task: validation problems stratified by the student's likelihood of
    their gold solution (ARTE picks the 40 most discriminative by IRT; one student cannot fit IRT)."""
    signal: Literal["probe_gain", "icl"] = "probe_gain"
    """The student's preference: ``probe_gain`` (a trained student: probe-loss reduction after one SGD
    step on the candidate) or ``icl`` (a prompted student: one-shot accuracy with it as the demo)."""
    probe_lr: float = Field(0.005, gt=0.0)
    """Step size of the one-step SGD update whose probe-loss reduction is a candidate's score (at 0.05
    every step overshoots on the tiny student and the score only measures how little harm it does; at
    0.005 and below the score is close to its first-order, linear value)."""
    question_share: float = Field(0.25, gt=0.0, le=0.5)
    """Question-level pairs draw the chosen from the top and the rejected from the bottom share."""
    question_pairs: int | None = Field(None, ge=1)
    """Question-level pairs per task; ``None``: half the draft questions (ARTE: 50 of 250)."""
    align: AlignConfig = AlignConfig()


class PerSynConfig(Config):
    """PerSyn (Zhang et al. 2025): route each task prompt to the teacher that best suits the student."""

    alpha: float = Field(0.4, ge=0.0, le=1.0)
    """Weight of learnability against quality: r = (1 - alpha) quality + alpha learnability."""
    calibration_per_task: int = Field(24, ge=2)
    """Calibration prompts per task; each gets one response from every teacher."""
    teachers: tuple[Literal["procedural", "teacher_lm", "aligned_lm", "llm"], ...] = (
        "procedural",
        "teacher_lm",
    )
    """The teacher pool: the procedural engine, the tiny teacher LM, its ARTE-aligned version, and the
    teacher LLM of the ``llm`` block."""
    llm: TeacherLLMConfig | None = None

    @model_validator(mode="after")
    def _llm_where_used(self) -> PerSynConfig:
        if len(set(self.teachers)) < 2:
            raise ValueError(f"teachers {list(self.teachers)}: routing needs at least two distinct teachers")
        if ("llm" in self.teachers) != (self.llm is not None):
            raise ValueError("teacher llm needs an llm block (model: <folder>), and only it takes one")
        return self


class GenerateConfig(Config):
    """A ``tutorkd generate`` spec: one dataset tailored to one student, without a teaching loop."""

    name: str
    method: Literal["stat_syn", "arte", "persyn"]
    """``stat_syn``: STAT-Syn data for the student's missing skills; ``arte``: the ARTE-aligned teacher
    LM's data; ``persyn``: each task routed to its best teacher."""
    size: int = Field(1000, ge=1)
    """Examples in the dataset (after verification and deduplication)."""
    out_dir: str = "datasets"
    """Folder in which the dataset folder ``<name>-s<seed>`` is created."""
    seed: int = 0
    environment: Annotated[EnvConfig, BeforeValidator(default_kind("arithmetic"))] = ArithmeticEnvConfig()
    """Whose held-out sets the data must stay clear of (all data comes from outside the evaluation
    partition of ``split_seed``) and whose validation set describes the student: any environment for
    ``stat_syn``; arithmetic for ``arte`` and ``persyn`` (the character-level teacher LM writes
    arithmetic)."""
    student: Annotated[StudentConfig, BeforeValidator(default_kind("tiny"))] = TinyStudentConfig()
    """The student the data is tailored to, served by transformers (a tiny or an ``hf`` student)."""
    adapter: str | None = None
    """A LoRA adapter of the student to tailor to (a run's ``adapters/r{k}``); ``None``: the base."""
    tasks: tuple[str, ...] | None = None
    """Skill-tree nodes that are the task prompts; ``None``: the top-level branches."""
    teacher_lm: TeacherLMConfig = TeacherLMConfig()
    arte: ArteConfig = ArteConfig()
    persyn: PerSynConfig = PerSynConfig()
    stat: StatConfig = StatConfig()
    style: Literal["rationale", "direct", "mixed"] = "rationale"
    """Completion style of the procedural and STAT-Syn engines (the teacher LM chooses its own)."""

    @model_validator(mode="after")
    def _teacher_lm_writes_arithmetic(self) -> GenerateConfig:
        arithmetic = self.environment.kind == "arithmetic" and self.student.kind == "tiny"
        if self.method != "stat_syn" and not arithmetic:
            raise ValueError(f"method {self.method} needs the arithmetic environment and the tiny student "
                             "(its teacher LM writes arithmetic); use method stat_syn for other environments")
        if self.student.kind == "plugin":
            raise ValueError("a plug-in student cannot be served for generation; use a tiny or hf student "
                             "(generate scores the student through transformers)")
        if self.environment.kind != "arithmetic" and self.student.kind == "tiny":
            raise ValueError(f"environment kind {self.environment.kind} needs a pretrained student: set "
                             "student to {kind: hf, model: smollm2-135m-instruct or <local model folder>}")
        return self
