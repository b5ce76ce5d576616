"""Teacher configs: the policy that plans, the engine that generates, and each method's settings."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, Field, PositiveFloat, model_validator

from tutorkd.config.base import Config
from tutorkd.config.fields import APIKeyEnv, BaseURL, ReplayShare
from tutorkd.config.plugins import PluginSpec, name_or_plugin
from tutorkd.protocols import Engine, Policy

PolicyName = Literal["uniform", "error_driven", "stat", "skill_list", "skill_tree", "skill_list_llm",
                     "skill_tree_llm", "tpd", "tom", "progress"]
"""The built-in policies (``tutorkd.agents.teacher.POLICIES``)."""
EngineName = Literal["procedural", "stat_pool", "stat_synthesis", "discriminating", "items", "facts"]
"""The built-in engines (``tutorkd.agents.teacher.ENGINES``)."""
PLUGIN_ARGS = ("inputs",)
"""What a teacher plug-in class is built from besides its options: ``Cls(inputs, **options)``, where
``inputs`` is the ``tutorkd.agents.teacher.BuildInputs`` the built-ins are built from."""


class StatConfig(Config):
    """STAT (skill-targeted adaptive training): the missing-skill profile and how data is chosen."""

    k: int | None = Field(None, ge=1)
    """Problems per missing-skill occurrence (STAT's k; 5 in the paper), capped by the round's examples.
    ``None`` scales the profile to fill the round, as the paper's subsampling to a fixed size does."""
    # Why replay, which the paper lacks (its student fine-tunes once from the base): here the student
    # keeps training across rounds, and a profile that gives mastered skills nothing made it forget them
    # (measured, 3 rounds x 1000 examples, 6 epochs: strong skills 0.978 -> 0.926 for STAT-Sel without
    # replay; sub.no_borrow fell the most).
    replay_share: ReplayShare = 0.2
    learnability: tuple[PositiveFloat, PositiveFloat] | None = None
    """Ablation (issue 17): multiply each profile skill's count by its measured learning progress (gain
    per example over the median, clipped to these bounds, e.g. ``[0.5, 2.0]``); ``None``: STAT as
    published. Needs ``skill_list`` or ``skill_tree`` feedback."""
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
    """Folder of a local Hugging Face causal LM (weights and tokenizer), or a short name tutorkd
    prepares without a hub (``smollm2-135m-instruct``, see ``tutorkd.students.models.MODELS``); with
    ``backend: openai``, the model's name on that server."""
    backend: Literal["vllm", "transformers", "openai"] = "vllm"
    """``vllm`` decodes JSON under structured outputs; ``transformers`` generates freely and relies on
    validation alone; ``openai`` calls the OpenAI-compatible server at ``base_url`` (``vllm serve`` or a
    hosted API), structured outputs included. A second in-process vLLM engine beside a vLLM student
    needs ``VLLM_ENABLE_V1_MULTIPROCESSING=1``."""
    base_url: BaseURL = None
    api_key_env: APIKeyEnv = "OPENAI_API_KEY"
    endpoint: Literal["completions", "chat"] = "completions"
    """``openai``: raw prompts to ``/v1/completions`` (``vllm serve``), or each prompt as one user message
    to ``/v1/chat/completions`` (hosted chat models)."""
    prompt_format: Literal["auto", "chat", "plain"] = "auto"
    """Local backends: ``chat`` sends each prompt as one user message rendered by the tokenizer's chat
    template (an instruction-tuned model reads raw text badly), ``plain`` as raw text; ``auto`` is chat
    when the model's tokenizer has a chat template. ``openai`` uses ``endpoint`` instead."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Weights' dtype in a ``vllm`` engine. ``auto``: on the CPU bfloat16 where the CPU computes it
    natively (AVX512-BF16, AMX or ARM BF16), else float32 (emulated bfloat16 is slower); the model's own
    dtype on a GPU."""
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, ge=1)
    max_model_len: int = Field(4096, ge=64)
    seed: int = 0

    @model_validator(mode="after")
    def _url_for_openai(self) -> TeacherLLMConfig:
        if (self.backend == "openai") != (self.base_url is not None):
            raise ValueError("backend openai needs base_url (the server's .../v1 URL), and only it takes one")
        if self.backend == "openai" and self.prompt_format != "auto":
            raise ValueError("prompt_format is for local backends; with backend openai set endpoint: chat "
                             "or completions")
        return self


class TPDConfig(Config):
    """TPD (teaching via principle discovery): principles found in validation errors, targeted each round."""

    variant: Literal["bugs", "examples"] = "bugs"
    """``bugs`` (variant d): problems on which each active principle's bug gives a wrong answer (needs
    ``engine: discriminating``); ``examples`` (variant c): new problems like the validation errors
    each active principle explains."""
    replay_share: ReplayShare = 0.2
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
    difficulty: bool = False
    """Give the mental model an item term: the length of the item's worked rationale, standardized
    within its skill (without it, every item of a skill gets the same prediction)."""
    # The replayed examples are explained too, but not chosen by utility. Why replay: training only on
    # the highest-utility items made the student forget the skills it had (measured: sub.no_borrow
    # 1.00 -> 0.53 after two rounds with share 0).
    replay_share: ReplayShare = 0.3
    max_skill_share: float = Field(0.5, gt=0.0, le=1.0)
    """Cap on the share of the utility-chosen examples that one skill may take."""
    utility: Literal["immediate", "learning"] = "immediate"
    """What the chosen items maximize: ``immediate``, the paper's expected utility (P(right with the
    explanation in context) - P(right alone)); ``learning``, what training on the explained item is
    predicted to teach, from the gains of earlier rounds (``tutorkd.agents.tom.learning``)."""
    gain_smoothing: float = Field(0.5, gt=0.0, le=1.0)
    """``learning``: weight of the newest round's gain per example against the earlier estimate."""
    min_examples: int = Field(5, ge=1)
    """``learning``: examples of a skill a round must have trained on for its gain to be measured."""
    seed: int = 0


class ProgressConfig(Config):
    """The learning-progress teacher (``tutorkd.agents.progress``): where and how much it teaches."""

    master_above: float = Field(0.9, ge=0.0, le=1.0)
    """A skill at or above this validation accuracy is mastered: replayed and contrasted, not targeted."""
    strong_above: float = Field(0.6, ge=0.0, le=1.0)
    """A skill at or above this at the first feedback is guarded against forgetting."""
    guard_drop: float = Field(0.02, ge=0.0, le=1.0)
    """A guarded skill this far below its first accuracy is slipping: it gets ``guard_share``."""
    guard_share: float = Field(0.1, ge=0.0, le=0.5)
    """Share of the round for each slipping skill (at most half the round for all of them)."""
    replay_share: float = Field(0.1, ge=0.0, le=0.5)
    """Share of the round spread evenly over the mastered skills."""
    contrast_share: float = Field(1.0, ge=0.0)
    """Examples of a target's mastered siblings per example of the target at first (the procedure it must
    not misapply: ``sub.no_borrow`` beside ``sub.borrow``); then doubled after a round in which a sibling
    slipped, times ``contrast_relax`` after one in which they all held (never below ``min_contrast``)."""
    # Why a floor of 1.0: at 0.3, or halved to about 0.5 after a round whose validation showed no slip,
    # sub.no_borrow fell 9-16 test points below its base while sub.borrow was learned (probes, seed 0,
    # 4 rounds of 250); at 1.0 in the first round it held within 4.
    min_contrast: float = Field(1.0, ge=0.0)
    max_contrast: float = Field(2.0, ge=0.0)
    contrast_relax: float = Field(0.5, gt=0.0, le=1.0)
    """The contrast ratio's factor after a round in which every sibling held (1: it never comes down)."""
    explore_floor: float = Field(0.05, ge=0.0, le=1.0)
    """Every target's weight is at least this share of the best one's."""
    # Why a bounded factor on the profile, not the measured gain alone: with 100 validation problems a
    # skill, one round's gain per example is noisy; allocating by it alone starved add.carry once its
    # gain stalled and it fell from 0.61 to 0.16 test accuracy by the last round (probe, seed 0, 12
    # rounds of 250), while the profile keeps feeding a skill that is half learned.
    progress_range: tuple[PositiveFloat, PositiveFloat] = (0.5, 2.0)
    """Bounds of the learning-progress factor (a target's gain over the targets' median gain), low first."""
    min_examples: int = Field(10, ge=1)
    """Examples of a skill a round must have had for its accuracy change to count as a gain measurement."""
    # Why a uniform share by default, not min_examples: SmolLM2's multi.add_add went from 0.00 to 0.03
    # test accuracy on 10 exploration examples and to 0.31 on uniform's 27 (llm_student.json): a
    # pretrained student's first examples of a skill teach its format, and fewer than the baseline's
    # share measure almost nothing.
    explore_examples: int | None = Field(None, ge=1)
    """Examples a target whose gain was never measured gets once (at least ``min_examples``); ``None``:
    the uniform share of the round (its examples over every skill, rounded up), so that its first
    measurement rests on as much data as the uniform baseline gives it."""
    smoothing: float = Field(0.5, gt=0.0, le=1.0)
    """Weight of the newest gain measurement against the earlier estimate (1: newest only)."""
    # Why the options from profile to replay_to: with the defaults, the progress teacher put 315
    # examples on add.carry and 140 on sub.borrow over 750 (progress-light-facts, seed 1): the faster
    # learner's larger gain per example and larger 4 acc (1 - acc) kept feeding it after it saturated near
    # 0.8 test accuracy, while sub.borrow, learning more slowly but steadily, stayed at 0.23 (0.38-0.45
    # with 225 examples under the hand-set mix-replay; teaching_efficiency_epyc750_grain250.json). Their
    # defaults keep that behaviour; agents/progress-headroom.yaml sets them all.
    profile: Literal["zpd", "zpd-headroom"] = "zpd"
    """A target's prior weight: ``zpd``, ``4 acc (1 - acc)``; ``zpd-headroom``, ``27/4 acc (1 - acc)^2``,
    the same zone of proximal development (0 at 0 %) times what is left to learn (peak at acc 1/3), so a
    skill the student is learning fast and nearly has gives way to one with more to learn."""
    zone_above: float = Field(0.0, ge=0.0, le=1.0)
    """A target whose validation accuracy is below this is not in the zone yet: prior weight 0, so it
    gets only ``explore_examples`` while unmeasured (an accuracy within validation noise of 0 says
    nothing about how close the student is)."""
    progress_mode: Literal["scale", "gate"] = "scale"
    """How measured learning progress weights a target: ``scale``, by its gain over the targets' median
    (clipped to ``progress_range``); ``gate``, 1 while unmeasured or once its accuracy has risen
    ``learning_rise`` above its first feedback's, else ``progress_range``'s low bound (is it learning,
    not how fast: one round's gain per example reflects the data beside it, and a slow starter is not a
    lost cause)."""
    learning_rise: float = Field(0.04, ge=0.0, le=1.0)
    """With ``progress_mode: gate``, the rise that counts as learning: above validation noise (about
    0.03 for a skill near 0 % at 100 problems) so that +0.01 on a 0 % skill does not open the gate."""
    inertia: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of the last plan's split among the targets that carries into the next one (0: each round's
    split is its own). Why: one round's measurement is noisy, and a skill just learned slips when its data
    is withdrawn at once (add.carry 0.71 -> 0.67 test accuracy on 39 examples after 90, seed 3)."""
    guard_siblings: bool = True
    """Whether a slipping skill that is a target's contrast also gets ``guard_share`` (``False``: its
    doubled contrast ratio is the one response, so contrast and guard together never outnumber its
    target beyond ``max_contrast``)."""
    replay_to: Literal["mastered", "unpractised"] = "mastered"
    """Which mastered skills ``replay_share`` spreads over: all of them, or those no target practises as
    contrast (``cmp.same_lead``, which nothing else in the round exercises)."""
    focus: Literal["skill", "steps"] = "skill"
    """``steps``: a target's examples are problems containing the steps its validation errors first
    missed (``tutorkd.agents.progress.focus``); ``skill``: plain draws of the skill."""
    focus_share: float = Field(1.0, ge=0.0, le=1.0)
    """With ``focus: steps``, the share of a target's examples drawn at its missed steps."""

    @model_validator(mode="after")
    def _ordered(self) -> ProgressConfig:
        lo, hi = self.progress_range
        if lo > hi:
            raise ValueError(f"progress_range [{lo}, {hi}]: give the low bound first, e.g. [{hi}, {lo}]")
        if self.min_contrast > self.max_contrast:
            raise ValueError(f"min_contrast {self.min_contrast} exceeds max_contrast {self.max_contrast}")
        return self


class TeacherConfig(Config):
    """A teacher: a policy that plans and an engine that generates."""

    name: str
    """The teacher's name in run directories and in every example's provenance (a plug-in's too)."""
    policy: Annotated[PolicyName | PluginSpec, BeforeValidator(
        name_or_plugin("policy", get_args(PolicyName), Policy, PLUGIN_ARGS))]
    """A built-in policy, or a class of your own implementing ``tutorkd.protocols.Policy``:
    ``{import: module.path:ClassName, <option>: <value>, ...}``, built as ``Cls(inputs, **options)``
    (``inputs``: ``tutorkd.agents.teacher.BuildInputs``); its ``views`` and ``restore`` are used when
    the class defines them."""
    per_round: int = Field(1000, ge=1)
    """Examples asked for each round (the environment's budget caps the total)."""
    style: Literal["rationale", "direct", "mixed"] = "rationale"
    """Completion style: worked steps then answer, the answer only, or half each."""
    engine: Annotated[EngineName | PluginSpec, BeforeValidator(
        name_or_plugin("engine", get_args(EngineName), Engine, PLUGIN_ARGS))] = "procedural"
    """``procedural``: fresh problems from the domain; ``stat_pool``: select from a fixed pool (STAT-Sel);
    ``stat_synthesis``: new problems kept only when several solutions agree (STAT-Syn);
    ``discriminating``: like ``procedural``, but problems made like a given one expose the same bugs;
    ``items``: exactly the problems the plan names (the ``tom`` policy's chosen items); or a class of
    your own implementing ``tutorkd.protocols.Engine``, given and built as a plug-in policy is (its
    ``views`` are used when the class defines them)."""
    stat: StatConfig = StatConfig()
    skills: SkillPolicyConfig = SkillPolicyConfig()
    tpd: TPDConfig = TPDConfig()
    tom: ToMConfig = ToMConfig()
    progress: ProgressConfig = ProgressConfig()
    llm: TeacherLLMConfig | None = None
    """Required by the ``*_llm`` policies, ``stat.labeler: llm`` and ``stat.solver: llm``."""

    @model_validator(mode="after")
    def _llm_given_where_used(self) -> TeacherConfig:
        users = [u for u, on in (
            (f"policy {self.policy}", self.policy in ("skill_list_llm", "skill_tree_llm")),
            ("stat.labeler: llm", self.stat.labeler == "llm"),
            ("stat.solver: llm", self.engine == "stat_synthesis" and self.stat.solver == "llm"),
        ) if on]
        if users and self.llm is None:
            raise ValueError(f"{', '.join(users)} needs a teacher LLM: add an llm block with "
                             "model: <folder or short name>")
        if self.skills.explore_amount > self.skills.max_allocation:
            raise ValueError(f"skills.explore_amount {self.skills.explore_amount} exceeds "
                             "skills.max_allocation "
                             f"{self.skills.max_allocation}")
        if self.stat.min_agree > self.stat.solutions:
            raise ValueError(f"stat.min_agree {self.stat.min_agree} exceeds "
                             f"stat.solutions {self.stat.solutions}")
        # Why here: the facts engine refuses an item like a problem or with a step only when it generates,
        # after a round of training; these built-in policies plan such items.
        if self.engine == "facts" and (self.policy in ("error_driven", "tom", "tpd") or (
                self.policy == "progress" and self.progress.focus == "steps")):
            uses = "progress.focus: steps" if self.policy == "progress" else f"policy {self.policy}"
            raise ValueError(f"engine: facts makes plain skill items, and {uses} plans items like a "
                             "problem or at a step: use engine: procedural")
        if self.policy == "tpd" and self.tpd.variant == "bugs" and self.engine != "discriminating":
            raise ValueError("policy tpd with tpd.variant bugs needs engine: discriminating (it draws the "
                             "problems that expose each bug)")
        return self
