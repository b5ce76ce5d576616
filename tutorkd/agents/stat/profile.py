"""STAT's Missing-Skill-Profile: which skills the student failed to apply, counted over difficult questions.

Three steps, all on validation feedback (the environment never shows test attempts):

1. Difficult questions: the student's wrong attempts (format errors included). STAT scores each step
   with a process reward model; here every domain has an exact verifier, so "difficult" means "answered
   wrong", which is what STAT's reward filter approximates.
2. Missing skills per difficult question, from a ``SkillLabeler``: the environment's own labels
   (arithmetic at the ``skill_list``/``skill_tree`` levels), the teacher LLM with STAT's prompt
   (``LLMSkillLabeler``, any domain), or discovered skills (``tutorkd.environments.discovery``).
3. The profile: the histogram ``n_s`` of missing skills over the difficult questions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import Field

from tutorkd.llm.structured import StructuredLLM
from tutorkd.schema import Attempt, Feedback, Record, Skill

log = logging.getLogger(__name__)


class SkillLabeler(Protocol):
    """Names the skills the student failed to apply in each attempt."""

    name: str

    def missing_skills(self, attempts: Sequence[Attempt]) -> list[tuple[str, ...] | None]:
        """Per attempt, the missing skills; ``None`` where labelling failed (counted, never guessed)."""
        ...


class QuestionSkills(Record):
    """One difficult question and the skills the student failed to apply in it."""

    problem_id: str
    question: str
    skills: tuple[str, ...]
    """Empty when the labeler's output for this question was invalid."""


class SkillProfile(Record):
    """STAT's Missing-Skill-Profile of one student version, saved as ``rounds/r{k}/skill_profile.json``.

    ``rounds/r{k}`` is the round whose data the profile chose; the student profiled is the one
    evaluated at round ``student_round`` (``k - 1``).
    """

    student_round: int
    labeler: str
    difficult: int
    """Difficult (wrongly answered) validation questions the profile was built from."""
    invalid: int
    """Difficult questions whose labelling failed; they add nothing to ``counts``."""
    counts: dict[str, int]
    """Missing skill to the number of difficult questions missing it, most frequent first."""
    questions: tuple[QuestionSkills, ...]


def difficult(attempts: Sequence[Attempt]) -> list[Attempt]:
    """The attempts the student got wrong, in order (format errors count as wrong)."""
    return [a for a in attempts if not a.correct]


def build_profile(feedback: Feedback, labeler: SkillLabeler) -> SkillProfile:
    """The profile of the student behind ``feedback``, from its validation errors."""
    hard = difficult(feedback.errors)
    labels = labeler.missing_skills(hard)
    if len(labels) != len(hard):
        raise RuntimeError(f"labeler {labeler.name} returned {len(labels)} labels for {len(hard)} attempts")
    counts = Counter(s for skills in labels if skills is not None for s in dict.fromkeys(skills))
    invalid = sum(skills is None for skills in labels)
    if invalid:
        log.warning("skill profile: %d of %d difficult questions could not be labelled", invalid, len(hard))
    return SkillProfile(
        student_round=feedback.round,
        labeler=labeler.name,
        difficult=len(hard),
        invalid=invalid,
        counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        questions=tuple(
            QuestionSkills(problem_id=a.problem.id, question=a.problem.question, skills=skills or ())
            for a, skills in zip(hard, labels, strict=True)
        ),
    )


class EnvironmentLabels:
    """The environment's own skill labels: each problem's ``skill_ids`` are its missing skills.

    Open-ended feedback strips the labels, so this labeler refuses it with an error naming the fix.
    """

    name = "environment"

    def missing_skills(self, attempts: Sequence[Attempt]) -> list[tuple[str, ...] | None]:
        """Each attempt's ``problem.skill_ids``; ``ValueError`` if a problem carries none."""
        unlabelled = [a.problem.id for a in attempts if not a.problem.skill_ids]
        if unlabelled:
            raise ValueError(
                f"{len(unlabelled)} errors carry no skill label (e.g. {unlabelled[0]!r}): open-ended "
                "feedback strips them. Use an environment at level skill_list or skill_tree, or set "
                "stat.labeler: llm"
            )
        return [a.problem.skill_ids for a in attempts]


# --------------------------------------------------------------------------------------------------
# The teacher LLM as labeler (STAT, App. C.3.2; asked for JSON instead of tags)

STAT_PROMPT = (
    "[TASK] You'll be given a math question and a step-by-step solution written by a Small Language "
    "Model. Your task is to output a JSON object with: judge (whether the solution is correct or "
    "incorrect), reason (if it's incorrect, why), skills (what skill(s) the SLM should enhance in order "
    "to answer correctly, at most {max_skills}).\n"
    "[SKILL LIST] {skills}\n[QUESTION] {question}\n[MODEL SOLUTION] {solution}\n"
    "[GOLD ANSWER] {answer}\n[YOUR REASON AND SKILL(S)]\n"
)


class MissingSkillJudgement(Record):
    """What STAT's labeling prompt asks the teacher LLM for, as JSON."""

    judge: Literal["correct", "incorrect"]
    reason: str = Field(max_length=200)
    skills: tuple[str, ...] = Field(max_length=3)


class LLMSkillLabeler:
    """The teacher LLM names each difficult question's missing skills from a fixed catalogue.

    Outputs are decoded under the JSON schema (skills restricted to the catalogue) where the backend
    supports it, then re-validated: unparseable JSON, a schema failure or an unknown skill id makes
    that question's label invalid; it is counted in ``invalid`` and contributes nothing.
    """

    name = "llm"

    def __init__(self, llm: StructuredLLM, catalogue: Sequence[Skill], max_skills: int = 3) -> None:
        if not catalogue:
            raise ValueError("LLMSkillLabeler needs a non-empty skill catalogue")
        self.llm = llm
        self.catalogue = tuple(catalogue)
        self.max_skills = max_skills
        self.invalid: Counter[str] = Counter()
        """Invalid outputs by reason, over the labeler's lifetime."""

    def schema(self) -> dict:
        """The JSON schema the LLM decodes under: the judgement with skills from the catalogue."""
        schema = MissingSkillJudgement.model_json_schema()
        schema["properties"]["skills"] = {
            "type": "array",
            "items": {"type": "string", "enum": [s.id for s in self.catalogue]},
            "maxItems": self.max_skills,
        }
        return schema

    def prompt(self, attempt: Attempt) -> str:
        """STAT's missing-skill prompt for one attempt."""
        skills = "; ".join(f"{s.id}: {s.description}" for s in self.catalogue)
        return STAT_PROMPT.format(max_skills=self.max_skills, skills=skills, solution=attempt.output,
                                  question=attempt.problem.question, answer=attempt.problem.answer)

    def missing_skills(self, attempts: Sequence[Attempt]) -> list[tuple[str, ...] | None]:
        """One LLM call per attempt; ``None`` for each invalid output."""
        known = {s.id for s in self.catalogue}
        replies = self.llm.ask([self.prompt(a) for a in attempts], MissingSkillJudgement, self.schema())
        out: list[tuple[str, ...] | None] = []
        for reply in replies:
            reason = reply.error
            if reply.value is not None and not set(reply.value.skills) <= known:
                reason = "unknown_skill"
            if reason is not None:
                self.invalid[reason] += 1
                log.info("missing-skill label rejected (%s): %r", reason, reply.text[:200])
                out.append(None)
            else:
                out.append(tuple(dict.fromkeys(reply.value.skills)))
        return out
