"""The teaching environment: DataEnvGym's evaluate -> feedback -> train loop at three structure levels.

``reset`` and ``step`` (``tutorkd.protocols.Environment``) are the whole contract for simple drivers.
The langgraph loop instead calls the fine-grained parts (``tutorkd.protocols.TeachingEnvironment``:
``evaluate``, ``feedback``, ``admit``, ``train``, ``restore``) so it can checkpoint between them: it
writes the admitted examples to the run directory itself and passes that file to ``train``, and
resumes with ``restore(state)``. ``reset``/``step`` are built on the same parts.

The structure level is a behaviour of the environment, not an option of the teacher: an open-ended
environment never lets skill labels or accuracies reach the teacher.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tutorkd.config import EnvConfig
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import read_jsonl, write_jsonl
from tutorkd.protocols import Domain, Student
from tutorkd.schema import (
    Attempt,
    EnvState,
    EvalReport,
    Example,
    Feedback,
    Problem,
    RoundEval,
    SkillScore,
    SkillTree,
    StructureLevel,
    StudentVersion,
    Trained,
)

log = logging.getLogger(__name__)


class TeachingEnv:
    """Evaluates a student on fixed held-out sets, describes it to a teacher, and trains it on data.

    Implements ``tutorkd.protocols.TeachingEnvironment`` and ``Environment``. Feedback comes only from
    validation problems; test scores are recorded in ``RoundEval`` but never shown. The budget is a
    cumulative count of training examples over the whole run.
    """

    def __init__(
        self,
        domain: Domain,
        student: Student,
        config: EnvConfig,
        heldout: HeldOut,
        work_dir: Path,
    ) -> None:
        self.domain = domain
        self.student = student
        self.config = config
        self.heldout = heldout
        self.work_dir = Path(work_dir)
        self.level: StructureLevel = config.level
        self._state = EnvState(round=0, budget_used=0, student=student.version)

    @property
    def state(self) -> EnvState:
        """Rounds trained, budget used, current student version and data files so far."""
        return self._state

    # ----------------------------------------------------------------------------------------------
    # Evaluation and feedback

    def evaluate(self) -> RoundEval:
        """The current student answers every val and test problem (one batched call per split)."""
        version = self.student.version
        val = self._attempt(self.heldout.val_problems())
        test = self._attempt(self.heldout.test_problems())
        return RoundEval(
            student=version,
            val=self._report("val", version, val),
            test=self._report("test", version, test),
            val_attempts=tuple(val),
        )

    def _attempt(self, problems: list[Problem]) -> list[Attempt]:
        attempts = self.student.answer(problems)
        if [a.problem for a in attempts] != problems:
            raise RuntimeError(
                f"student returned {len(attempts)} attempts that do not match the {len(problems)} problems"
            )
        for a in attempts:
            # Why: the environment is the verifier; a student that scores itself differently is a bug.
            if self.domain.check(a.problem, a.output) != (a.parsed_answer, a.correct):
                raise RuntimeError(f"student scored {a.output!r} on {a.problem.id} unlike the domain's check")
        return attempts

    def _report(self, split: str, version: StudentVersion, attempts: Sequence[Attempt]) -> EvalReport:
        tree = self.domain.tree
        per_skill = tuple(
            _score(leaf, [a for a in attempts if leaf in a.problem.skill_ids]) for leaf in tree.leaves()
        )
        by_leaf = {s.skill_id: s for s in per_skill}
        branches = [n.id for n in tree.nodes if n.id not in by_leaf]
        per_node = tuple(_pool(b, [by_leaf[leaf] for leaf in tree.leaves_under(b)]) for b in branches)
        return EvalReport(
            split=split,
            student=version.name,
            n=len(attempts),
            correct=sum(a.correct for a in attempts),
            per_skill=per_skill,
            per_node=per_node,
        )

    def feedback(self, evaluation: RoundEval) -> Feedback:
        """What the teacher sees at this environment's structure level (validation only)."""
        errors = _spread([a for a in evaluation.val_attempts if not a.correct], self.config.max_errors_shown)
        skill_accuracy: dict[str, float] | None = None
        node_accuracy: dict[str, float] | None = None
        tree: SkillTree | None = None
        if self.level is StructureLevel.OPEN_ENDED:
            errors = [self._unlabelled(a) for a in errors]
        else:
            skill_accuracy = evaluation.val.skill_accuracy()
        if self.level is StructureLevel.SKILL_TREE:
            tree = self.domain.tree
            node_accuracy = {s.skill_id: s.accuracy for s in evaluation.val.per_node}
        state = self._state
        return Feedback(
            level=self.level,
            round=state.round,
            errors=tuple(errors),
            skill_accuracy=skill_accuracy,
            node_accuracy=node_accuracy,
            tree=tree,
            budget_used=state.budget_used,
            budget_total=self.config.budget,
            done=state.round >= self.config.rounds or state.budget_used >= self.config.budget,
        )

    def _unlabelled(self, attempt: Attempt) -> Attempt:
        # Why: arithmetic problem ids embed the skill (``arith:add.carry:...``), so the id goes too.
        problem = attempt.problem.model_copy(
            update={"skill_ids": (), "id": f"{self.domain.name}:{attempt.problem.question}"}
        )
        return attempt.model_copy(update={"problem": problem})

    # ----------------------------------------------------------------------------------------------
    # Training

    def admit(self, examples: Sequence[Example]) -> list[Example]:
        """The examples the environment accepts: held-out questions dropped, then the first
        ``budget_left`` kept. Both cuts are logged."""
        leaked = self.heldout.overlapping(examples)
        if leaked:
            log.warning(
                "dropped %d examples whose question is held out (e.g. %r)",
                len(leaked),
                leaked[0].problem.question,
            )
            leaked_ids = {ex.id for ex in leaked}
            examples = [ex for ex in examples if ex.id not in leaked_ids]
        left = max(self.config.budget - self._state.budget_used, 0)
        if len(examples) > left:
            log.info("budget: admitted %d of %d examples (%d cut)", left, len(examples), len(examples) - left)
        return list(examples[:left])

    def train(self, examples: Sequence[Example], data_file: str) -> Trained:
        """Train on ``examples`` (already admitted, and already written to ``data_file``) and advance.

        ``continue`` mode trains from the current adapter on the new data; ``retrain`` mode trains a
        fresh adapter on every earlier data file plus these examples. With no examples the round
        advances without training and the student stays as it is.
        """
        state = self._state
        if len(examples) > self.config.budget - state.budget_used:
            raise ValueError(
                f"{len(examples)} examples exceed the {self.config.budget - state.budget_used} "
                "left in the budget; pass them through admit() first"
            )
        if not examples:
            log.warning("round %d: no examples to train on; the student is unchanged", state.round + 1)
            trained = Trained(version=state.student, stats=None)
        elif self.config.train_mode == "continue":
            init = None if state.student.adapter_path is None else state.student
            trained = self.student.train(examples, round=state.round + 1, init=init)
        else:
            earlier = [ex for path in state.data_files for ex in read_jsonl(path, Example)]
            trained = self.student.train(earlier + list(examples), round=state.round + 1, init=None)
        self._state = EnvState(
            round=state.round + 1,
            budget_used=state.budget_used + len(examples),
            student=trained.version,
            data_files=(*state.data_files, str(data_file)),
        )
        return trained

    def restore(self, state: EnvState) -> None:
        """Resume from ``state``: the student serves ``state.student`` again."""
        self._state = state
        self.student.use(state.student)

    # ----------------------------------------------------------------------------------------------
    # The Environment protocol

    def reset(self) -> Feedback:
        """Evaluate the current student and describe it."""
        return self.feedback(self.evaluate())

    def step(self, examples: Sequence[Example]) -> Feedback:
        """Admit, write to ``work_dir/round<k>.jsonl``, train, re-evaluate, describe."""
        admitted = self.admit(examples)
        data_file = self.work_dir / f"round{self._state.round + 1}.jsonl"
        write_jsonl(data_file, admitted)
        self.train(admitted, str(data_file))
        return self.feedback(self.evaluate())


def make_env(config: EnvConfig, student: Student, work_dir: Path | None = None) -> TeachingEnv:
    """A ``TeachingEnv`` on the domain and held-out sets ``config`` describes (the domain factory), for
    users who drive their own loop with ``reset``/``step``.

    ``work_dir`` (where ``step`` writes data files) defaults to a new temporary folder.
    """
    from tutorkd.environments.factory import build_domain

    setup = build_domain(config)
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="tutorkd-env-"))
    return TeachingEnv(setup.domain, student, config, setup.heldout, work_dir)


def _score(skill_id: str, attempts: Sequence[Attempt]) -> SkillScore:
    return SkillScore(
        skill_id=skill_id,
        n=len(attempts),
        correct=sum(a.correct for a in attempts),
        format_errors=sum(a.parsed_answer is None for a in attempts),
    )


def _pool(node_id: str, scores: Sequence[SkillScore]) -> SkillScore:
    """A branch's score: its leaves' problems pooled."""
    return SkillScore(
        skill_id=node_id,
        n=sum(s.n for s in scores),
        correct=sum(s.correct for s in scores),
        format_errors=sum(s.format_errors for s in scores),
    )


def _spread(items: list[Attempt], k: int) -> list[Attempt]:
    """At most ``k`` items, evenly spaced through the list (deterministic; covers every skill block)."""
    if len(items) <= k:
        return items
    return [items[i * len(items) // k] for i in range(k)]
