"""Typed records that cross module boundaries.

Every record is a frozen pydantic model: environments, students, teachers and the loop exchange these
and nothing else, so a run directory can always be re-read into the same objects.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base of every boundary record: frozen, and unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------------
# Skills


class Skill(Record):
    """One node of a skill tree. Leaves are the skills problems are labelled with."""

    id: str
    """Dotted path, e.g. ``add.carry``; a branch id is a prefix of its leaves' ids."""
    description: str
    parent: str | None = None
    """Id of the parent branch; ``None`` for a top-level branch."""


class SkillTree(Record):
    """A two-or-more-level hierarchy of skills; only leaves label problems."""

    nodes: tuple[Skill, ...]

    def leaves(self) -> list[str]:
        """Ids of the skills that have no children, in declaration order."""
        parents = {s.parent for s in self.nodes}
        return [s.id for s in self.nodes if s.id not in parents]

    def children(self, node_id: str | None) -> list[str]:
        """Ids of the direct children of ``node_id`` (``None`` gives the top-level branches)."""
        return [s.id for s in self.nodes if s.parent == node_id]

    def leaves_under(self, node_id: str) -> list[str]:
        """Ids of all leaves below (or equal to) ``node_id``."""
        kids = self.children(node_id)
        if not kids:
            return [node_id]
        return [leaf for kid in kids for leaf in self.leaves_under(kid)]


# --------------------------------------------------------------------------------------------------
# Problems, attempts, examples


class Problem(Record):
    """A question with a verifiable gold answer."""

    id: str
    question: str
    """What the student is prompted with, e.g. ``47+38=``."""
    answer: str
    """Gold answer as the student must write it, e.g. ``85``."""
    skill_ids: tuple[str, ...]
    rationale: str | None = None
    """Step-by-step solution without the answer, e.g. ``7+8=15 4+3+1=8``."""


class Attempt(Record):
    """What a student did with one problem."""

    problem: Problem
    output: str
    """The raw completion."""
    parsed_answer: str | None
    """``None`` when the output has no parseable answer (a format error, not a wrong answer)."""
    correct: bool
    explanation: str | None = None
    """Teacher explanation the student was given in context, if any."""
    confidence: float | None = None
    """Probability the student assigns to its own answer tokens, when the backend reports logprobs."""


class Verification(Record):
    """Outcome of checking one generated example."""

    passed: bool
    reason: str
    """``ok`` or why it was rejected: ``wrong_answer``, ``duplicate``, ``eval_overlap``, ``malformed``..."""


class GeneratorParams(Record):
    """How an example was generated, enough to regenerate it."""

    engine: str
    """Engine name, e.g. ``procedural``."""
    seed: int
    style: str
    """``rationale`` (question, rationale, answer) or ``direct`` (question, answer)."""
    source_problem_id: str | None = None
    """For error-driven generation: the problem the example was made to resemble."""
    step: str | None = None
    """For step-targeted generation: the computation every problem had to contain (``PlanItem.step``)."""
    model: str | None = None
    """For a generator language model: which one (e.g. ``teacher-lm:<content hash>`` or its DPO-aligned
    ``...+dpo:<hash>``); ``None`` for procedural engines."""
    temperature: float | None = None
    """For a generator language model: its sampling temperature."""


class Provenance(Record):
    """Where a training example came from."""

    run_id: str
    round: int
    teacher: str
    skill_id: str | None
    generator: GeneratorParams
    verification: Verification | None = None


class Example(Record):
    """One training datum: prompt and completion, with full provenance."""

    id: str
    """Deterministic from (run, round, index): the same seed gives the same ids, resumes never duplicate."""
    problem: Problem
    prompt: str
    completion: str
    provenance: Provenance


class VerifyResult(Record):
    """Generated examples split by the verification filter, with the count of each rejection reason."""

    kept: tuple[Example, ...]
    """Examples that passed; each carries ``Verification(passed=True, reason="ok")``."""
    rejected: tuple[Example, ...]
    """Examples that failed; each carries the failing ``Verification``."""
    counts: dict[str, int]
    """Rejection reason (``malformed``, ``wrong_answer``, ``wrong_rationale``, ``eval_overlap``,
    ``duplicate``) to count."""


# --------------------------------------------------------------------------------------------------
# Evaluation and feedback


class SkillScore(Record):
    """Accuracy on one skill (a leaf or, in a tree, a branch aggregating its leaves)."""

    skill_id: str
    n: int
    correct: int
    format_errors: int = 0
    """Outputs with no parseable answer; counted in ``n`` as wrong."""

    @property
    def accuracy(self) -> float:
        """Share of the ``n`` problems answered correctly."""
        return self.correct / self.n if self.n else 0.0


class EvalReport(Record):
    """One student version evaluated on one split."""

    split: str
    """``val`` (teacher-visible feedback) or ``test`` (held out, never shown to the teacher)."""
    student: str
    """Student version name, e.g. ``base`` or ``r2``."""
    n: int
    correct: int
    per_skill: tuple[SkillScore, ...]
    per_node: tuple[SkillScore, ...] = ()
    """Branch-level aggregates, for skill-tree environments."""

    @property
    def accuracy(self) -> float:
        """Overall share correct."""
        return self.correct / self.n if self.n else 0.0

    def skill_accuracy(self) -> dict[str, float]:
        """Leaf skill id to accuracy."""
        return {s.skill_id: s.accuracy for s in self.per_skill}


class StructureLevel(str, Enum):  # noqa: UP042 (str() stays "StructureLevel.X"; code uses .value)
    """How much structure an environment reveals to the teacher (DataEnvGym's three settings)."""

    OPEN_ENDED = "open_ended"
    SKILL_LIST = "skill_list"
    SKILL_TREE = "skill_tree"


class Feedback(Record):
    """What an environment shows the teacher after each evaluation.

    Open-ended: ``errors`` only, with skill labels stripped. Skill-list: errors with skill labels and
    ``skill_accuracy``. Skill-tree: additionally ``tree`` and branch accuracies in ``node_accuracy``.
    """

    level: StructureLevel
    round: int
    errors: tuple[Attempt, ...]
    skill_accuracy: dict[str, float] | None = None
    node_accuracy: dict[str, float] | None = None
    tree: SkillTree | None = None
    budget_used: int
    budget_total: int
    done: bool = False
    """True when the environment will accept no more data (budget spent or last round)."""

    @property
    def budget_left(self) -> int:
        """Examples the teacher may still add."""
        return self.budget_total - self.budget_used


# --------------------------------------------------------------------------------------------------
# Plans


class PlanItem(Record):
    """Ask the engine for ``count`` examples of one kind."""

    count: int = Field(ge=0)
    skill_id: str | None = None
    """Target skill; ``None`` when generating from ``like`` (open-ended teachers see no labels)."""
    like: Problem | None = None
    """Make problems resembling this one (error-driven generation)."""
    step: str | None = None
    """Only problems whose worked rationale has this computation as a step (``7*8`` matches a step
    written ``7*8=56``): practice on the one step a student's slip got wrong."""
    style: str = "rationale"


class Plan(Record):
    """A teacher policy's decision for one round."""

    items: tuple[PlanItem, ...]
    reasoning: str = ""

    @property
    def total(self) -> int:
        """Examples the plan asks for."""
        return sum(i.count for i in self.items)


class StudentVersion(Record):
    """A servable student: the base model plus at most one LoRA adapter."""

    name: str
    """``base`` or ``r{round}``; also the vLLM LoRA name."""
    round: int
    adapter_path: str | None = None
    lora_int_id: int = 0
    """vLLM LoRA id, unique per version (0 means base)."""


class EnvState(Record):
    """What a teaching environment must remember between steps; enough to resume it exactly."""

    round: int
    """Rounds of training done so far (0 after ``reset``)."""
    budget_used: int
    student: StudentVersion
    data_files: tuple[str, ...] = ()
    """JSONL files of the examples trained on so far, oldest first (``retrain`` mode re-reads them)."""


class RoundEval(Record):
    """Both evaluations of one student version: validation (teacher-visible) and test (held out)."""

    student: StudentVersion
    val: EvalReport
    test: EvalReport
    val_attempts: tuple[Attempt, ...]
    """Per-problem attempts on validation: the raw material of every teacher's feedback."""


class TrainStats(Record):
    """What one LoRA training run did: enough to plot its loss and to compare rounds."""

    examples: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    losses: tuple[float, ...]
    """Training loss at every optimizer step, in order."""


class Trained(Record):
    """What one training call produced: the new student version and how its training went."""

    version: StudentVersion
    stats: TrainStats | None
    """``None`` when there was nothing to train on (the version is then the previous one)."""


class TeacherUsage(Record):
    """Tokens a teacher LLM used in one round (planning and generation together).

    A teacher that calls an LLM writes this as ``rounds/r{k}/teacher_usage.json``; procedural teachers
    write nothing, and ``tutorkd compare`` then reports no token costs for them.
    """

    tokens_in: int = 0
    """Prompt tokens sent to the teacher LLM."""
    tokens_out: int = 0
    """Tokens the teacher LLM generated."""
    calls: int = 0
