"""The theory-of-mind teacher (Saha et al. 2023) in a teaching run, and its LLM explainer.

``ToMPolicy`` quizzes its student each round on fresh practice problems (drawn outside the held-out
sets), unexplained and with each explanation style, and fits a ``LogisticStudentModel`` on the
answers. It then draws candidate problems, predicts each one's expected utility of an explanation
(P(right with the full rationale) - P(right alone)) and spends the round's explanation budget (its
``per_round`` examples) on the candidates with the highest (at most ``max_skill_share`` per skill; a
``replay_share`` of the budget goes evenly over all skills so that mastered skills are not
forgotten): each becomes a training example with its worked rationale, i.e. the explanation
turned into training data (the paper's multi-turn setting, with its figure's EU-based choice of
what to explain). ``ItemEngine`` turns exactly those problems
into examples. Before choosing, the policy checks its model against a second practice quiz it did
not fit on (AUC, Brier, reliability) and shows that as ``calibration.json``.

The policy needs the student, given to its constructor (``build_teacher(..., student=...)``). It reads
from the feedback only the budget and, where shown, the validation accuracy per skill (compared with
its own predictions in the view); the quiz costs student inference, never training budget.

``LLMExplainer`` is the paper's LLM teacher: a CoT prompt of demonstrations, personalized (the ToM
prompt: demonstrations whose explanation flipped this student from wrong to right) or not.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tutorkd.agents.baselines.policies import round_total
from tutorkd.agents.baselines.procedural import derive_seed
from tutorkd.agents.gains import updated_gains
from tutorkd.agents.tom.calibration import Calibration, calibration
from tutorkd.agents.tom.interventions import STYLES, Style, error_steps, explain, flip_demonstrations, order
from tutorkd.agents.tom.learning import learning_utility, skill_gain
from tutorkd.agents.tom.mental_models import LogisticStudentModel, StudentModelState
from tutorkd.config import ToMConfig
from tutorkd.io import read_json
from tutorkd.protocols import Completion, Domain, GenerationContext, SamplingConfig, Student
from tutorkd.schema import (
    Attempt,
    Example,
    Feedback,
    GeneratorParams,
    Plan,
    PlanItem,
    Problem,
    Provenance,
    Record,
)

log = logging.getLogger(__name__)

VIEW_FILE = "calibration.json"


class SkillBelief(Record):
    """The model's P(right alone) on one skill's quiz problems, and the validation accuracy shown."""

    predicted: float
    observed: float | None
    """Validation accuracy from the feedback (``None`` at the open-ended level, which shows none)."""


class ToMRound(Record):
    """What the ToM teacher believed when it planned a round (``calibration.json``)."""

    round: int
    """Feedback round the plan answers (the student version quizzed)."""
    quizzed: int
    """Student answers collected for fitting and checking the model."""
    pre: Calibration
    """Predicted P(right alone) against the check quiz's unexplained answers."""
    post: Calibration
    """Predicted P(right with the full rationale) against the check quiz's explained answers."""
    skills: dict[str, SkillBelief]
    model: StudentModelState
    selected: dict[str, int]
    """Examples chosen per skill."""
    mean_utility: float
    """Mean utility (of the kind ``cfg.utility`` names) of the chosen candidates."""
    gain: dict[str, float] = {}
    """``utility: learning``: estimated P(right alone) gained per example trained on, per skill measured."""


class ToMPolicy:
    """Explain (and train on) the candidates with the highest expected utility under a learned model.

    Implements ``tutorkd.protocols.Policy``, with ``calibration.json`` as its view. It quizzes
    ``student`` and never draws a question in ``exclude`` (the held-out sets). Everything it draws is
    seeded by (``cfg.seed``, round), so a resumed run plans exactly as an unbroken one.
    """

    def __init__(self, domain: Domain, per_round: int, cfg: ToMConfig, style: str = "rationale", *,
                 student: Student, exclude: Container[str] = frozenset()) -> None:
        if style != "rationale":
            raise ValueError(f"the tom teacher trains on explained items: style rationale, not {style!r}")
        self.domain, self.per_round, self.cfg, self.style = domain, per_round, cfg, style
        self.skills = tuple(domain.tree.leaves())
        self.student, self.exclude = student, exclude
        self.last: ToMRound | None = None

    def draw(self, per_skill: int, rng: random.Random) -> list[Problem]:
        """``per_skill`` practice problems of every skill (none held out), repeats dropped."""
        problems = [p for s in self.skills for p in self.domain.sample(s, per_skill, rng, self.exclude)]
        return list({p.question: p for p in problems}.values())

    def quiz(self, problems: Sequence[Problem]) -> tuple[list[Attempt], dict[Style, list[Attempt]]]:
        """The student's answers alone and with each explanation style; ``error_step`` explains up to
        the step its answers alone and after the first step point to."""
        n = len(problems)
        given = [None] * n + [explain(p, "full") for p in problems] + [explain(p, "first") for p in problems]
        answers = self.student.answer(list(problems) * 3, given)
        alone, styled = answers[:n], {"full": answers[n: 2 * n], "first": answers[2 * n:]}
        steps = error_steps(alone + styled["first"])
        styled["error_step"] = self.student.answer(
            problems, [explain(p, "error_step", steps.get(p.skill_ids[0], 0)) for p in problems])
        return alone, styled

    def plan(self, feedback: Feedback) -> Plan:
        """Quiz, fit, check, then ask for the ``min(per_round, budget_left)`` highest-utility candidates."""
        total = round_total(feedback, self.per_round)
        rng = random.Random(derive_seed("tom", self.cfg.seed, feedback.round))
        fit_alone, fit_styled = self.quiz(self.draw(self.cfg.quiz_per_skill, rng))
        check = self.quiz(self.draw(self.cfg.check_per_skill, rng))
        fit_set = fit_alone + [a for answers in fit_styled.values() for a in answers]
        model = LogisticStudentModel(self.skills, self.cfg.l2, self.cfg.difficulty).fit(fit_set)
        per_skill = math.ceil(self.cfg.candidates * total / len(self.skills)) if total else 0
        candidates = self.draw(per_skill, rng) if per_skill else []
        beliefs = model.predict(candidates, [model.explanation(p, "full") for p in candidates])
        # P(right alone) on the check quiz, computed once: the per-skill beliefs and the view both use it
        check_pre = model.p_correct([a.problem for a in check[0]], [None] * len(check[0]))
        believed = self.skill_beliefs(check_pre, check[0])
        gain: dict[str, float] = {}
        if self.cfg.utility == "learning":
            gain = self.gains(believed)
            pre = np.array([b.pre for b in beliefs])
            utility = learning_utility(pre, [p.skill_ids[0] for p in candidates],
                                       skill_gain(self.skills, believed, gain))
        else:
            utility = np.array([b.utility for b in beliefs])
        best = self.choose(candidates, utility, total, np.random.default_rng(rng.getrandbits(32)))
        chosen = [candidates[i] for i in best]
        mean_utility = float(utility[best].mean()) if len(best) else 0.0
        self.last = self._view(feedback, model, check, chosen, mean_utility,
                               len(fit_set) + len(check[0]) * (1 + len(STYLES)), check_pre, believed, gain)
        items = tuple(PlanItem(count=1, like=p, style=self.style) for p in chosen)
        top = ", ".join(f"{s} {n}" for s, n in Counter(p.skill_ids[0] for p in chosen).most_common(4))
        return Plan(items=items, reasoning=(
            f"ToM: quizzed the student on {self.last.quizzed} answers, fitted its model (check AUC pre "
            f"{_fmt(self.last.pre.auc)}, post {_fmt(self.last.post.auc)}); explaining the {len(chosen)} of "
            f"{len(candidates)} candidates with the highest "
            f"{'expected' if self.cfg.utility == 'immediate' else 'learning'} utility "
            f"(mean {self.last.mean_utility:.2f}; {top})."))

    def choose(self, candidates: Sequence[Problem], utility: np.ndarray, total: int,
               rng: np.random.Generator) -> list[int]:
        """Indices of ``total`` candidates: the highest-utility ones (at most ``max_skill_share`` of
        them from one skill), then ``replay_share`` of ``total`` spread evenly over the skills."""
        n_replay = round(total * self.cfg.replay_share)
        n_eu = total - n_replay
        cap = max(1, math.ceil(self.cfg.max_skill_share * n_eu))
        taken: Counter[str] = Counter()
        chosen: list[int] = []
        for i in order(utility, rng):
            if len(chosen) == n_eu:
                break
            skill = candidates[i].skill_ids[0]
            if taken[skill] < cap:
                taken[skill] += 1
                chosen.append(int(i))
        # Replay: round-robin over the skills through the rest, in random order (why: no skill the
        # student already has goes a whole round without practice).
        picked = set(chosen)
        rest = {s: [int(i) for i in rng.permutation(len(candidates))
                    if int(i) not in picked and candidates[int(i)].skill_ids[0] == s] for s in self.skills}
        while len(chosen) < total and any(rest.values()):
            for skill in self.skills:
                if rest[skill] and len(chosen) < total:
                    chosen.append(rest[skill].pop())
        return chosen

    def skill_beliefs(self, pre: np.ndarray, alone: Sequence[Attempt]) -> dict[str, float]:
        """The model's mean P(right alone) (``pre``, one per attempt of ``alone``) per skill."""
        return {s: float(np.mean([p for p, a in zip(pre, alone, strict=True) if a.problem.skill_ids[0] == s]))
                for s in self.skills}

    def gains(self, believed: dict[str, float]) -> dict[str, float]:
        """The learning model's gain estimates: the last plan's, updated with what its round taught
        (its examples per skill against the change in believed P(right alone) since then)."""
        last = self.last
        if last is None:
            return {}
        before = {s: b.predicted for s, b in last.skills.items()}
        return updated_gains(last.gain, before, believed, last.selected,
                             smoothing=self.cfg.gain_smoothing, min_examples=self.cfg.min_examples)

    def _view(self, feedback: Feedback, model: LogisticStudentModel,
              check: tuple[list[Attempt], dict[Style, list[Attempt]]], chosen: Sequence[Problem],
              mean_utility: float, quizzed: int, pre: np.ndarray, believed: dict[str, float],
              gain: dict[str, float]) -> ToMRound:
        alone, full = check[0], check[1]["full"]
        post = model.p_correct([a.problem for a in full], [a.explanation for a in full])
        shown = feedback.skill_accuracy or {}
        skills = {s: SkillBelief(predicted=believed[s], observed=shown.get(s)) for s in self.skills}
        return ToMRound(round=feedback.round, quizzed=quizzed,
                        pre=calibration(pre, [a.correct for a in alone]),
                        post=calibration(post, [a.correct for a in full]), skills=skills, model=model.state(),
                        selected=dict(Counter(p.skill_ids[0] for p in chosen)), mean_utility=mean_utility,
                        gain=gain)

    def views(self) -> list[tuple[str, Record]]:
        """``calibration.json``: the model's calibration and beliefs behind the last plan."""
        return [(VIEW_FILE, self.last)] if self.last is not None else []

    def restore(self, folder: Path) -> None:
        """Reload the view saved in ``folder`` (the previous round's directory; none there: start
        afresh): the learning model's gains and the beliefs they are measured from."""
        path = Path(folder) / VIEW_FILE
        self.last = read_json(path, ToMRound) if path.exists() else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


class ItemEngine:
    """Turns each plan item's ``like`` problem itself (not a similar one) into an example.

    Implements ``tutorkd.protocols.Engine`` for policies that choose the exact problems (``tom``).
    Items must have ``count`` 1 and a ``like`` problem with a skill label; a problem that is excluded
    (held out), was trained on earlier (``context.avoid``) or repeats is skipped with a warning.
    """

    name = "items"

    def __init__(self, domain: Domain, exclude: Container[str] = frozenset()) -> None:
        self.domain, self.exclude = domain, exclude

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """One example per item, ids ``{run_id}/r{round}/{index:06d}``."""
        examples: list[Example] = []
        seen: set[str] = set()
        skipped = 0
        for item in plan.items:
            if item.like is None or item.count != 1 or not item.like.skill_ids:
                raise ValueError(f"the items engine needs count 1 and a labelled like problem, got {item!r}")
            problem = item.like
            if any(problem.question in c for c in (self.exclude, context.avoid, seen)):
                skipped += 1
                continue
            seen.add(problem.question)
            generator = GeneratorParams(engine=self.name, seed=context.seed, style=item.style,
                                        source_problem_id=problem.id)
            examples.append(Example(
                id=f"{context.run_id}/r{context.round}/{len(examples):06d}", problem=problem,
                prompt=self.domain.prompt(problem), completion=self.domain.completion(problem, item.style),
                provenance=Provenance(run_id=context.run_id, round=context.round, teacher=context.teacher,
                                      skill_id=problem.skill_ids[0], generator=generator)))
        if skipped:
            log.warning("items engine: skipped %d of %d items (held out, trained on earlier, or repeated)",
                        skipped, len(plan.items))
        return examples


# --------------------------------------------------------------------------------------------------
# The paper's LLM teacher


class Generator(Protocol):
    """Anything that completes prompts: a ``Backend`` or a ``StructuredLLM``."""

    def generate(self, prompts: Sequence[str], params: SamplingConfig) -> list[Completion]:
        """One completion per prompt."""
        ...


def personalized_demos(pre: Sequence[Attempt], post: Sequence[Attempt], k: int) -> list[tuple[Problem, str]]:
    """The ToM prompt's demonstrations: (problem, explanation) pairs that flipped the student to right."""
    return [(a.problem, a.explanation or "") for a in flip_demonstrations(pre, post, k)]


class LLMExplainer:
    """A teacher LLM writes explanations after CoT demonstrations ``Q: {q}\\nA: {e} So the answer is {a}``.

    Personalized when the demonstrations come from ``personalized_demos``; unpersonalized (the paper's
    blind teacher) with any other demonstrations. The explanation is the text before the first
    `` So the answer``, newline or ``A:``; one that is empty or leaves the domain's alphabet is
    malformed: counted in ``malformed``, logged, returned as ``None`` (the student then gets none).
    """

    def __init__(self, llm: Generator, demos: Sequence[tuple[Problem, str]], alphabet: str,
                 params: SamplingConfig | None = None) -> None:
        self.llm, self.demos, self.alphabet = llm, tuple(demos), set(alphabet)
        self.params = params if params is not None else SamplingConfig(max_tokens=100)  # the paper's 100
        self.malformed = 0

    def prompt(self, problem: Problem) -> str:
        """The teacher's CoT prompt for ``problem``."""
        shots = [f"Q: {p.question}\nA: {e} So the answer is {p.answer}" for p, e in self.demos]
        return "\n\n".join([*shots, f"Q: {problem.question}\nA:"])

    def explain(self, problems: Sequence[Problem]) -> list[str | None]:
        """One explanation (or ``None`` when malformed) per problem."""
        return self.read(problems, self.llm.generate([self.prompt(p) for p in problems], self.params))

    def read(self, problems: Sequence[Problem], completions: Sequence[Completion]) -> list[str | None]:
        """The explanations in the teacher's completions of ``prompt(problem)`` (``None`` when malformed,
        counted in ``malformed``): for a caller that also reads the rest of each completion."""
        out: list[str | None] = []
        for problem, completion in zip(problems, completions, strict=True):
            text = completion.text
            for end in (" So the answer", "\n", "A:"):
                text = text.split(end)[0]
            text = " ".join(text.split())
            if not text or set(text) - self.alphabet:
                self.malformed += 1
                log.debug("malformed teacher explanation for %s: %r", problem.id, completion.text[:80])
                out.append(None)
            else:
                out.append(text)
        return out
