"""Configs: pydantic models loaded from YAML, with errors that name the field and the fix.

A run config names an environment, a teacher, a student and a backend. The environment and teacher
may be given inline or as a path to one of the YAML specs under the repository's ``environments/``
and ``agents/`` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

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
            raise ValueError(f"spec file {value!r} does not exist; "
                             "give an existing YAML path or an inline mapping")
        return read_yaml(path)
    return value


def _spec_of_kind(default_kind: str):
    """A before-validator: load a spec given as a path, then default its ``kind`` (specs written before
    there was a choice of kinds name none)."""

    def load(value: object) -> object:
        value = _load_if_path(value)
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": default_kind, **value}
        return value

    return load


_UNION_TAGS = frozenset({"arithmetic", "gsm8k", "math", "tiny", "hf"})
"""Kinds of the discriminated config unions; pydantic puts them in error paths, the user never wrote them."""


class ArithmeticEnvConfig(Config):
    """The embedded procedural arithmetic domain as a teaching environment."""

    kind: Literal["arithmetic"] = "arithmetic"
    level: StructureLevel = StructureLevel.SKILL_TREE
    """What the teacher sees: ``open_ended`` (errors), ``skill_list`` (+ per-skill accuracy),
    ``skill_tree`` (+ the hierarchy)."""
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


class DatasetEnvConfig(Config):
    """A real benchmark as a teaching environment: GSM8K or Hendrycks MATH (see
    ``tutorkd.environments.datasets``).

    Test problems come from the dataset's test split, validation problems and the teacher's pool of
    training problems from its train split; all three are disjoint and fixed by ``split_seed``.
    """

    kind: Literal["gsm8k", "math"]
    level: StructureLevel = StructureLevel.SKILL_TREE
    """What the teacher sees: ``open_ended``, ``skill_list`` or ``skill_tree`` (as for arithmetic)."""
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
    test_per_skill: int = Field(100, ge=1)
    """Held-out test problems per skill, at most (a skill uses what its test split has)."""
    val_per_skill: int = Field(30, ge=1)
    """Teacher-visible validation problems per skill, taken from the train split (at most half of it)."""
    budget: int = Field(2000, ge=1)
    """Cumulative number of training examples the teacher may add over the whole run."""
    rounds: int = Field(3, ge=1)
    max_errors_shown: int = Field(32, ge=0)
    """Errors included in each feedback (a teacher LLM's context is finite; these problems are long)."""
    train_mode: Literal["continue", "retrain"] = "continue"
    """``continue``: each round's adapter starts from the last one and trains on the new data;
    ``retrain``: each round trains a fresh adapter from the base on all data so far (DataEnvGym)."""
    split_seed: int = 1234
    """Seed of the splits: fixed, so every run and teacher is scored on the same problems."""
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
    Annotated[EnvConfig, BeforeValidator(_spec_of_kind("arithmetic"))]
)
"""Validates an environment spec file (``load_config(ENV_SPEC, path)``)."""


class StatConfig(Config):
    """STAT (skill-targeted adaptive training): the missing-skill profile and how data is chosen."""

    k: int | None = Field(None, ge=1)
    """Problems per missing-skill occurrence (STAT's k; 5 in the paper), capped by the round's examples.
    ``None`` scales the profile to fill the round, as the paper's subsampling to a fixed size does."""
    replay_share: float = Field(0.2, ge=0.0, le=1.0)
    """Share of each round spread evenly over all skills; the rest follows the profile. Not in the paper
    (its student fine-tunes once from the base); here the student keeps training across rounds, and a
    profile that gives mastered skills nothing made it forget them (measured, 3 rounds x 1000 examples,
    6 epochs: strong skills 0.978 -> 0.926 for STAT-Sel without replay; sub.no_borrow fell the most)."""
    labeler: Literal["environment", "llm"] = "environment"
    """Who names the skills a difficult question was missing: the environment's labels (needs
    ``skill_list`` or ``skill_tree`` feedback) or the teacher LLM with STAT's prompt (``llm`` block)."""
    pool_per_skill: int = Field(1000, ge=1)
    """``stat_pool``/``stat_synthesis``: size per skill of the fixed pool of existing training problems
    (the Skill-Map), clamped to the skill's training half (outside ``HeldOut.reserved``)."""
    pool_seed: int = 0
    """Seed of the pool: fixed, so every run selects from the same problems."""
    solver: Literal["procedural", "llm"] = "procedural"
    """``stat_synthesis``: who writes the solutions the consistency filter compares."""
    solver_temperature: float = Field(0.7, gt=0.0)
    """``stat_synthesis`` with ``solver: llm``: sampling temperature of the solutions."""
    solutions: int = Field(3, ge=1)
    """``stat_synthesis``: solutions written per new problem (3 in the paper)."""
    min_agree: int = Field(2, ge=1)
    """``stat_synthesis``: keep a problem only if this many of its solutions agree (2 of 3 in the paper)."""
    references: int = Field(3, ge=1)
    """``stat_synthesis``: reference problems of the skill each new problem is made from."""


class SkillPolicyConfig(Config):
    """DataEnvGym's skill-list and skill-tree policies."""

    weak_below: float = Field(0.9, ge=0.0, le=1.0)
    """A skill is weak while its validation accuracy is below this (DataEnvGym: any skill with errors)."""
    explore_amount: int = Field(30, ge=1)
    """Skill-tree: allocation units a newly targeted skill starts with (DataEnvGym: 30)."""
    exploit_step: int = Field(10, ge=1)
    """Skill-tree: the largest allocation change one exploit action makes to a skill."""
    max_allocation: int = Field(200, ge=1)
    """Skill-tree: the most units one skill may hold (DataEnvGym: 200); LLM actions above it are invalid."""


class TeacherLLMConfig(Config):
    """The teacher's own language model (LLM policies, STAT's LLM labeler and LLM solver)."""

    model: str
    """Folder of a local Hugging Face causal LM (weights and tokenizer); with ``backend: openai``, the
    model's name on that server."""
    backend: Literal["vllm", "transformers", "openai"] = "vllm"
    """``vllm`` decodes JSON under structured outputs; ``transformers`` generates freely and relies on
    validation alone; ``openai`` calls the OpenAI-compatible server at ``base_url`` (``vllm serve`` or a
    hosted API), structured outputs included. A second in-process vLLM engine beside a vLLM student
    needs ``VLLM_ENABLE_V1_MULTIPROCESSING=1``."""
    base_url: str | None = None
    """``openai``: the server's ``.../v1`` URL."""
    api_key_env: str = "OPENAI_API_KEY"
    """``openai``: environment variable holding the API key (never written to configs or logs)."""
    endpoint: Literal["completions", "chat"] = "completions"
    """``openai``: raw prompts to ``/v1/completions`` (``vllm serve``), or each prompt as one user message
    to ``/v1/chat/completions`` (hosted chat models)."""
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, ge=1)
    max_model_len: int = Field(4096, ge=64)
    seed: int = 0

    @model_validator(mode="after")
    def _url_for_openai(self) -> TeacherLLMConfig:
        if (self.backend == "openai") != (self.base_url is not None):
            raise ValueError("backend openai needs base_url (the server's .../v1 URL), and only it takes one")
        return self


class TPDConfig(Config):
    """TPD (teaching via principle discovery): principles found in validation errors, targeted each round."""

    variant: Literal["bugs", "examples"] = "bugs"
    """``bugs`` (variant d): problems on which each active principle's bug gives a wrong answer (needs
    ``engine: discriminating``); ``examples`` (variant c): new problems like the validation errors
    each active principle explains."""
    replay_share: float = Field(0.2, ge=0.0, le=1.0)
    """Share of each round spread evenly over all skills, so skills the student has are not forgotten."""
    unexplained: Literal["like", "steps", "ignore"] = "like"
    """Errors no active principle explains: ``like`` gives them their share of the rest of the round (by
    their number) as new problems like each one, as the open-ended teacher does; ``steps`` does the same
    except for errors whose first wrong step is a fact slip (``7*8=44``), which get problems of their
    skill that have that step (``tutorkd.agents.tpd.slips``); ``ignore`` spends it all on the principles
    (the paper's TPD; wasteful when the bug library explains few of the errors)."""
    min_count: int = Field(2, ge=1)
    """A principle becomes active when its bug explains at least this many errors in one round."""
    retire_below: int = Field(1, ge=1)
    """An active principle retires when its bug explains fewer errors than this (1: when they stop)."""

    @model_validator(mode="after")
    def _hysteresis(self) -> TPDConfig:
        if self.retire_below > self.min_count:
            raise ValueError(f"retire_below {self.retire_below} exceeds min_count {self.min_count}")
        return self


class ToMConfig(Config):
    """The theory-of-mind teacher: how it quizzes its student and chooses what to explain."""

    quiz_per_skill: int = Field(20, ge=2)
    """Practice problems per skill the student answers each round, alone and with each explanation
    style, to fit the learned mental model (drawn outside the held-out sets)."""
    check_per_skill: int = Field(10, ge=1)
    """More practice problems per skill, quizzed the same way but not fitted on: the calibration check."""
    candidates: int = Field(4, ge=1)
    """Candidate problems drawn per example of the round; the round's examples are the candidates
    with the highest expected utility of an explanation."""
    l2: float = Field(0.1, gt=0.0)
    """L2 penalty of the mental model's logistic regression."""
    replay_share: float = Field(0.3, ge=0.0, le=1.0)
    """Share of the round's examples drawn evenly over all skills (explained, but not chosen by utility):
    training only on the highest-utility items made the student forget the skills it had (measured:
    sub.no_borrow 1.00 -> 0.53 after two rounds with share 0)."""
    max_skill_share: float = Field(0.5, gt=0.0, le=1.0)
    """Cap on the share of the utility-chosen examples that one skill may take."""
    seed: int = 0


class TeacherConfig(Config):
    """A teacher: a policy that plans and an engine that generates."""

    name: str
    policy: Literal["uniform", "error_driven", "stat", "skill_list", "skill_tree", "skill_list_llm",
                    "skill_tree_llm", "tpd", "tom"]
    per_round: int = Field(1000, ge=1)
    """Examples asked for each round (the environment's budget caps the total)."""
    style: Literal["rationale", "direct", "mixed"] = "rationale"
    """Completion style: worked steps then answer, the answer only, or half each."""
    engine: Literal["procedural", "stat_pool", "stat_synthesis", "discriminating", "items"] = "procedural"
    """``procedural``: fresh problems from the domain; ``stat_pool``: select from a fixed pool (STAT-Sel);
    ``stat_synthesis``: new problems kept only when several solutions agree (STAT-Syn);
    ``discriminating``: like ``procedural``, but problems made like a given one expose the same bugs;
    ``items``: exactly the problems the plan names (the ``tom`` policy's chosen items)."""
    stat: StatConfig = StatConfig()
    skills: SkillPolicyConfig = SkillPolicyConfig()
    tpd: TPDConfig = TPDConfig()
    tom: ToMConfig = ToMConfig()
    llm: TeacherLLMConfig | None = None
    """Required by the ``*_llm`` policies, ``stat.labeler: llm`` and ``stat.solver: llm``."""

    @model_validator(mode="after")
    def _llm_given_where_used(self) -> TeacherConfig:
        users = [u for u, on in (
            (f"policy {self.policy}", self.policy.endswith("_llm")),
            ("stat.labeler: llm", self.stat.labeler == "llm"),
            ("stat.solver: llm", self.engine == "stat_synthesis" and self.stat.solver == "llm"),
        ) if on]
        if users and self.llm is None:
            raise ValueError(f"{', '.join(users)} needs a teacher LLM: add an llm block with model: <folder>")
        if self.skills.explore_amount > self.skills.max_allocation:
            raise ValueError(f"skills.explore_amount {self.skills.explore_amount} exceeds "
                             "skills.max_allocation "
                             f"{self.skills.max_allocation}")
        if self.stat.min_agree > self.stat.solutions:
            raise ValueError(f"stat.min_agree {self.stat.min_agree} exceeds "
                             f"stat.solutions {self.stat.solutions}")
        if self.policy == "tpd" and self.tpd.variant == "bugs" and self.engine != "discriminating":
            raise ValueError("policy tpd with tpd.variant bugs needs engine: discriminating (it draws the "
                             "problems that expose each bug)")
        return self


class TinyStudentConfig(Config):
    """The embedded tiny student: a character-level Llama pretrained here on a skewed skill mix."""

    kind: Literal["tiny"] = "tiny"
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    pretrain_steps: int = Field(450, ge=1)
    """Optimizer steps of pretraining; 450 x 128 examples take about 2.5 minutes on 2 cores."""
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
    """Where pretrained bases are cached by recipe hash; default ``$TUTORKD_CACHE/students``, else
    ``~/.cache/tutorkd/students``."""
    lora_rank: Literal[8, 16, 32, 64] = 16
    lora_alpha: int = 32
    learning_rate: float = 2e-3
    epochs: int = Field(6, ge=1)
    """Passes over each round's examples. Why 6, not 2: with 2 (32 LoRA steps a round) no teacher moved
    the weak skills much (0.035 -> 0.07 after 3 rounds); with 6 uniform data reaches 0.16 and the overall
    accuracy 0.627 vs 0.574, strong skills kept, for about 40 s more per 3-round run on 2 cores."""
    batch_size: int = 64


class HFStudentConfig(Config):
    """A pretrained Hugging Face causal LM from a local folder, taught with LoRA (``tutorkd.students.hf``).

    Adapters stay servable by vLLM: plain LoRA of a rank vLLM accepts, no DoRA, no ``modules_to_save``.
    """

    kind: Literal["hf"] = "hf"
    model_path: str
    """Folder with the weights and tokenizer, e.g. a snapshot of ``Qwen/Qwen2.5-0.5B-Instruct``; never
    downloaded at run time (``huggingface-cli download <id> --local-dir <folder>`` beforehand)."""
    lora_rank: Literal[8, 16, 32, 64] = 16
    lora_alpha: int = 32
    learning_rate: float = 1e-4
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(1024, ge=16)
    """Longest training sequence in tokens (prompt and completion); longer examples are truncated."""
    max_new_tokens: int = Field(384, ge=1)
    """Generation budget of one answer (a GSM8K solution takes about 100-250 tokens)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where LoRA training runs; ``auto`` picks CUDA when torch sees a GPU."""


StudentConfig = Annotated[TinyStudentConfig | HFStudentConfig, Field(discriminator="kind")]
"""Either student, told apart by ``kind`` (``tiny`` when a config names none)."""


class BackendConfig(Config):
    """Which engine serves the student versions."""

    kind: Literal["vllm", "transformers", "openai"] = "vllm"
    """``vllm``: one in-process engine; ``transformers``: plain generate; ``openai``: an OpenAI-compatible
    server (``tutorkd.llm.openai_backend``): the one at ``base_url``, or, without one, a ``vllm serve``
    that tutorkd starts on a free loopback port for the run and stops after it."""
    max_model_len: int = 128
    kv_cache_gib: int = 1
    """vLLM CPU KV cache size (``VLLM_CPU_KVCACHE_SPACE``)."""
    restart_per_version: bool = False
    """Restart the engine whenever the student version changes, as DataEnvGym does. Only for
    measuring what tutorkd's resident engine saves (``benchmarks/loop_overhead.py``)."""
    base_url: str | None = None
    """``openai``: the server's ``.../v1`` URL; it must see the adapter folders (same file system) and
    allow runtime LoRA loading (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``)."""
    api_key_env: str = "OPENAI_API_KEY"
    """``openai``: environment variable holding the API key (the key itself is never in configs or logs)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """``openai`` without ``base_url``: GPUs one model is sharded over (``--tensor-parallel-size``)."""
    data_parallel_size: int = Field(1, ge=1)
    """``openai`` without ``base_url``: engine replicas (``--data-parallel-size``; vLLM's in-process
    engine does not support data parallelism)."""
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    """``openai`` without ``base_url``: share of each GPU's memory the server may take."""
    sleep_during_training: bool = False
    """``openai`` without ``base_url``: sleep the server (vLLM sleep mode, level 1: weights to CPU RAM,
    KV cache freed) while the student trains on the same GPU, and wake it after. vLLM ignores it on CPU."""

    @model_validator(mode="after")
    def _server_options_where_used(self) -> BackendConfig:
        managed = self.kind == "openai" and self.base_url is None
        used = [name for name, on in (
            ("tensor_parallel_size", self.tensor_parallel_size > 1),
            ("data_parallel_size", self.data_parallel_size > 1),
            ("sleep_during_training", self.sleep_during_training),
        ) if on]
        if used and not managed:
            raise ValueError(f"{', '.join(used)} apply to a server tutorkd starts itself: set kind: openai "
                             "and no base_url (for your own server pass these to `vllm serve`)")
        return self


class RunConfig(Config):
    """A teaching run: environment, teacher, student, backend, seed."""

    environment: Annotated[EnvConfig, BeforeValidator(_spec_of_kind("arithmetic"))] = ArithmeticEnvConfig()
    teacher: Annotated[TeacherConfig, BeforeValidator(_load_if_path)] = TeacherConfig(
        name="uniform", policy="uniform"
    )
    student: Annotated[StudentConfig, BeforeValidator(_spec_of_kind("tiny"))] = TinyStudentConfig()
    backend: BackendConfig = BackendConfig()
    seed: int = 0
    runs_root: str = "runs"
    """Folder in which a new run directory is created."""

    @model_validator(mode="after")
    def _student_reads_environment(self) -> RunConfig:
        if self.environment.kind != "arithmetic" and self.student.kind == "tiny":
            raise ValueError(
                f"environment kind {self.environment.kind} needs a pretrained student: set student to "
                "{kind: hf, model_path: <local model folder>} in a run config (e.g. "
                "recipes/gsm8k-qwen.yaml); the tiny character-level student only reads arithmetic"
            )
        return self


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
        path = err["loc"]
        # Why: a union's kind tag is not a field the user wrote; ``environment.levle``, not
        # ``environment.arithmetic.levle``.
        path = [p for i, p in enumerate(path) if not (p in _UNION_TAGS and (i == 0 or path[i - 1] in
                                                                          ("environment", "student")))]
        loc = ".".join(str(p) for p in path) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling against `tutorkd teach --help`"
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
        raise ConfigError(format_validation_error(str(path), exc)) from None
