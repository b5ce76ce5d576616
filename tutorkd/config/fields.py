"""Field types that several configs share: each says once what its field means and what it may hold.

A config names the type and gives its own default (``budget: Budget = 3000``), with a bound as well
where configs differ in it (``test_per_skill: TestPerSkill = Field(500, ge=10)``). The field's
description is the type's, so a docstring under such a field would be ignored (a test checks there is
none): what holds for one config only goes in a comment beside its default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tutorkd.schema import StructureLevel

# Teaching environments (``ArithmeticEnvConfig``, ``DatasetEnvConfig``).

Level = Annotated[StructureLevel, Field(
    description="What the teacher sees: ``open_ended`` (errors), ``skill_list`` (+ per-skill accuracy), "
    "``skill_tree`` (+ the hierarchy).")]
TestPerSkill = Annotated[int, Field(
    description="Held-out test problems per skill, at most: arithmetic clamps it to a third of a small "
    "skill's problem space, a dataset skill uses what its test split has.")]
ValPerSkill = Annotated[int, Field(
    description="Teacher-visible validation problems per skill: feedback comes from these, never from "
    "test. A dataset takes them from its train split (at most half of it).")]
Budget = Annotated[int, Field(
    ge=1, description="Cumulative number of training examples the teacher may add over the whole run.")]
Rounds = Annotated[int, Field(
    ge=1, description="Teaching rounds: in each the teacher adds examples and the student trains on them.")]
MaxErrorsShown = Annotated[int, Field(
    ge=0, description="Errors included in each feedback (a teacher LLM's context is finite).")]
TrainMode = Annotated[Literal["continue", "retrain"], Field(
    description="``continue``: each round's adapter starts from the last one and trains on the new data; "
    "``retrain``: each round trains a fresh adapter from the base on all data so far (DataEnvGym).")]
SplitSeed = Annotated[int, Field(
    description="Seed of the held-out sets (a dataset's splits): fixed, so every run and teacher is "
    "scored on the same problems.")]

# A character-level Llama pretrained here (``TinyStudentConfig``, ``TeacherLMConfig``).

HiddenSize = Annotated[int, Field(description="Width of the model's hidden states.")]
Layers = Annotated[int, Field(description="Transformer layers of the model.")]
Heads = Annotated[int, Field(description="Attention heads per layer.")]
PretrainSteps = Annotated[int, Field(ge=1, description="Optimizer steps of pretraining.")]
PretrainBatch = Annotated[int, Field(description="Examples per pretraining step.")]
PretrainLR = Annotated[float, Field(
    description="Peak learning rate of pretraining (AdamW, warmup, then cosine decay to a tenth of it).")]
PretrainSeed = Annotated[int, Field(description="Seed of the initial weights and of the pretraining stream.")]
CacheDir = Annotated[str | None, Field(
    description="Where pretrained models are cached by content hash; default ``$TUTORKD_CACHE/<kind>``, "
    "else ``~/.cache/tutorkd/<kind>``, ``<kind>`` being ``students`` (the tiny student), ``teachers`` "
    "(the teacher LM) or ``models`` (a converted or downloaded Hugging Face model).")]

# LoRA training of a student (``TinyStudentConfig``, ``HFStudentConfig``).

LoRARank = Annotated[Literal[8, 16, 32, 64], Field(
    description="Rank of the LoRA adapters; vLLM serves only these.")]
LoRAAlpha = Annotated[int, Field(description="LoRA scaling: an adapter's update is scaled by alpha / rank.")]
LearningRate = Annotated[float, Field(description="Learning rate of LoRA training.")]
Epochs = Annotated[int, Field(ge=1, description="Passes over each round's examples.")]
BatchSize = Annotated[int, Field(description="Examples per LoRA training step.")]
TrainProcesses = Annotated[int, Field(
    ge=1, description="Processes one LoRA training runs in. 1: inside the loop's own process. More: the "
    "training step alone is launched through ``accelerate launch`` (data parallel; gloo on the CPU, NCCL "
    "with one GPU per process), each process taking ``batch_size / train_processes`` examples per step so "
    "that the global batch stays ``batch_size``; the rest of the loop stays one process.")]

# An OpenAI-compatible server (``BackendConfig``, ``TeacherLLMConfig``).

BaseURL = Annotated[str | None, Field(description="``openai``: the server's ``.../v1`` URL.")]
APIKeyEnv = Annotated[str, Field(
    description="``openai``: environment variable holding the API key (the key itself is never in "
    "configs or logs).")]

# Targeting teachers (``StatConfig``, ``TPDConfig``, ``ToMConfig``).

ReplayShare = Annotated[float, Field(
    ge=0.0, le=1.0,
    description="Share of each round's examples spread evenly over all skills, so that the student "
    "does not forget the skills it has; the rest goes where the teacher targets.")]
