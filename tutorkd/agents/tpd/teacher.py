"""The TPD teacher (teaching via principle discovery): target the bugs diagnosed in the student's errors.

Each round ``TPDPolicy`` diagnoses the feedback's validation errors against the bug library
(``tutorkd.agents.tpd.diagnosis``; skills are classified from the question text, so it works at every
structure level, open-ended included), keeps the set of active principles across rounds
(``PrincipleTracker``: a principle activates at ``min_count`` errors and retires once its errors
stop), and splits the round's examples:

- ``replay_share`` of them evenly over all skills, so skills the student has are not forgotten;
- the rest in proportion to error counts over the active principles and (``unexplained: like``, the
  default) the shown errors no active principle explains, which get new problems like each of them
  as the open-ended teacher makes (the bug library explains only a minority of a tiny neural
  student's errors, so spending everything on the principles would starve the rest);
- each principle's share, by variant:
  ``bugs`` (the paper's variant d, for trained students) over the skills of those errors, each item
  asking for problems like an *exemplar* that exposes the bug (drawn fresh from the domain), with
  ``engine: discriminating`` drawing only problems on which the bug's answer is wrong, so training
  separates the bug from the right method; ``examples`` (variant c) over the validation errors each
  principle explains (``select_examples``), each item asking for new problems like the error;
- with ``unexplained: steps``, an unexplained error whose first wrong step is a fact slip
  (``7*8=44``: most of a tiny student's errors) gets problems of its skill that have that step
  (``PlanItem.step``) instead of problems merely like it.

The validation errors themselves never become training data: the engine makes new problems, and the
verifier rejects held-out questions.

The round's diagnosis, principle history and the first wrong step of each error shown
(``tutorkd.agents.tpd.slips``: mostly fact slips like ``7*8=44``, which no buggy procedure reproduces)
are the policy's views (``diagnosis.json``, ``principles.json``, ``slips.json``); ``restore``
reloads the history, so a resumed run plans as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Container
from pathlib import Path

from tutorkd.agents.baselines.policies import Style, even_split, round_total, styled_items
from tutorkd.agents.baselines.procedural import ProceduralEngine, derive_seed
from tutorkd.agents.dataenvgym.policies import split_by_weight
from tutorkd.agents.tpd.bugs import BUGS, BUGS_BY_ID, Bug
from tutorkd.agents.tpd.diagnosis import (
    Diagnosis,
    PrincipleHistory,
    PrincipleTracker,
    TrackedPrinciple,
    diagnose,
    discriminating_problems,
    render_diagnosis,
)
from tutorkd.agents.tpd.principles import from_diagnosis, select_examples
from tutorkd.agents.tpd.slips import Slip, SlipSummary, locate_slips, render_slips
from tutorkd.config import TPDConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.io import read_json
from tutorkd.protocols import Domain, GenerationContext
from tutorkd.schema import Attempt, Example, Feedback, Plan, Problem, Record

DIAGNOSIS_FILE = "diagnosis.json"
PRINCIPLES_FILE = "principles.json"
SLIPS_FILE = "slips.json"


def arithmetic(domain: Domain) -> ArithmeticDomain:
    """``domain`` if it is the arithmetic domain; ``ValueError`` otherwise (the bug library is arithmetic)."""
    if not isinstance(domain, ArithmeticDomain):
        raise ValueError(f"TPD diagnoses with the arithmetic bug library; domain {domain.name!r} has none")
    return domain


def signature(problem: Problem) -> frozenset[str]:
    """Ids of the library bugs whose answer to ``problem`` is wrong: the errors it can expose."""
    answers = ((b.id, b.apply(problem.question)) for b in BUGS)
    return frozenset(bug for bug, ans in answers if ans is not None and ans != problem.answer)


class BugExposingSampler:
    """The arithmetic domain's draws, with ``similar`` keeping what a problem can diagnose.

    ``similar(like)`` draws problems of ``like``'s skill on which every bug that gets ``like`` wrong
    gets them wrong too (their ``signature`` contains ``like``'s), by rejection sampling; it raises
    ``RuntimeError`` (the engine's signal for an exhausted item) after ``max_draws`` candidates per
    problem. ``sample`` is the domain's own.
    """

    def __init__(self, domain: ArithmeticDomain, max_draws: int = 5000) -> None:
        self.domain, self.max_draws = domain, max_draws

    def sample(
        self, skill_id: str, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """The domain's ``sample``, unchanged."""
        return self.domain.sample(skill_id, n, rng, exclude)

    def similar(
        self, problem: Problem, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """``n`` problems of ``problem``'s skill exposing at least the bugs that ``problem`` exposes."""
        want, skill = signature(problem), self.domain.classify(problem.question)
        out: list[Problem] = []
        for _ in range(self.max_draws * n):
            if len(out) == n:
                return out
            (candidate,) = self.domain.sample(skill, 1, rng, exclude)
            if want <= signature(candidate):
                out.append(candidate)
        if len(out) == n:
            return out
        raise RuntimeError(f"found {len(out)}/{n} {skill} problems exposing {sorted(want)} in "
                           f"{self.max_draws * n} draws")


class DiscriminatingEngine:
    """The procedural engine drawing through ``BugExposingSampler``: a ``like`` item makes problems
    that expose the same bugs as its ``like`` problem; a skill item samples the skill as usual.

    ``domain`` renders the examples; ``task`` (default ``domain``) is the arithmetic domain the
    problems are drawn from, where ``domain`` wraps it in a chat student's prompt format."""

    name = "discriminating"

    def __init__(self, domain: Domain, exclude: Container[str] = frozenset(),
                 task: Domain | None = None) -> None:
        arith = arithmetic(domain if task is None else task)
        self.inner = ProceduralEngine(domain, exclude, BugExposingSampler(arith))

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """The procedural engine's examples, credited to this engine in their provenance."""
        out = []
        for ex in self.inner.generate(plan, context):
            generator = ex.provenance.generator.model_copy(update={"engine": self.name})
            provenance = ex.provenance.model_copy(update={"generator": generator})
            out.append(ex.model_copy(update={"provenance": provenance}))
        return out


class TPDPolicy:
    """Plan each round from the principles diagnosed in the student's validation errors (module doc)."""

    def __init__(self, domain: Domain, per_round: int, style: Style, config: TPDConfig) -> None:
        self.domain = arithmetic(domain)
        self.skills = self.domain.tree.leaves()
        self.per_round, self.style, self.config = per_round, style, config
        self.tracker = PrincipleTracker(config.min_count, config.retire_below)
        self.histories: dict[int, PrincipleHistory] = {}
        """Feedback round to the principle history after it; planning a round again reuses its entry."""
        self.last: tuple[Diagnosis, PrincipleHistory] | None = None
        self.slips: SlipSummary | None = None
        """Where the last plan's errors first went wrong, step by step: what the bug library cannot see."""

    def analyse(self, feedback: Feedback) -> tuple[Diagnosis, PrincipleHistory]:
        """Diagnose the feedback's errors and advance the active principles to ``feedback.round``."""
        diagnosis = diagnose(feedback.errors, self.domain)
        history = self.histories.get(feedback.round)
        if history is None:
            earlier = [r for r in self.histories if r < feedback.round]
            previous = self.histories[max(earlier)] if earlier else None
            history = self.tracker.update(previous, diagnosis, feedback.round)
            self.histories[feedback.round] = history
        return diagnosis, history

    def plan(self, feedback: Feedback) -> Plan:
        """Replay over all skills; the rest by error count over the active principles (and, unless
        ``unexplained: ignore``, the errors none explains); uniform when there is nothing to target."""
        diagnosis, history = self.analyse(feedback)
        self.last = diagnosis, history
        self.slips = locate_slips(feedback.errors, self.domain)
        total = round_total(feedback, self.per_round)
        residual = self._residual(feedback, diagnosis, history)
        weights = [t.count for t in history.active] + ([len(residual)] if residual else [])
        replay = round(total * self.config.replay_share) if weights else total
        shares = split_by_weight(total - replay, weights) if weights else []
        targets: list[tuple[str | None, Problem | None]] = []
        counts: list[int] = []
        principle_shares = shares[: len(history.active)]
        if history.active and self.config.variant == "bugs":
            for t, share in zip(history.active, principle_shares, strict=True):
                self._bug_targets(t, share, diagnosis, feedback.round, targets, counts)
        elif history.active:
            active = {t.bug_id for t in history.active}
            pset = from_diagnosis(diagnosis, feedback.errors)
            kept = tuple(p for p in pset.principles if p.bug_id in active)
            pset = pset.model_copy(update={"principles": kept})
            for problem, n in select_examples(pset, feedback.errors, sum(principle_shares)):
                targets.append((None, problem))
                counts.append(n)
        steps: list[str | None] = [None] * len(targets)
        if residual:
            slips = {slip.problem_id: slip for slip in self.slips.slips}
            for attempt in residual:
                target, step = self._residual_target(attempt, slips.get(attempt.problem.id))
                targets.append(target)
                steps.append(step)
            counts += even_split(shares[-1], len(residual))
        targets += [(s, None) for s in self.skills]
        counts += even_split(replay, len(self.skills))
        steps += [None] * len(self.skills)
        stepped = sum(1 for step in steps if step is not None)
        reasoning = self._reasoning(total, replay, shares[-1] if residual else 0, stepped)
        return Plan(items=styled_items(targets, counts, self.style, steps), reasoning=reasoning)

    def _residual_target(
        self, attempt: Attempt, slip: Slip | None
    ) -> tuple[tuple[str | None, Problem | None], str | None]:
        """An unexplained error's target and step: with ``unexplained: steps`` and a fact ``slip`` at
        its first wrong step, problems of its skill that have that step; otherwise problems like it."""
        if self.config.unexplained == "steps" and slip is not None and slip.kind == "fact":
            return (slip.skill_id, None), slip.expression
        return (None, attempt.problem), None

    def _residual(self, feedback: Feedback, diagnosis: Diagnosis, history: PrincipleHistory) -> list[Attempt]:
        """The errors shown that no active principle explains (format errors included); none if ignored."""
        if self.config.unexplained == "ignore":
            return []
        active = {t.bug_id for t in history.active}
        explained = {e.problem_id for e in diagnosis.errors if e.bug_id in active}
        return [a for a in feedback.errors if not a.correct and a.problem.id not in explained]

    def _bug_targets(self, tracked: TrackedPrinciple, share: int, diagnosis: Diagnosis, round: int,
                     targets: list[tuple[str | None, Problem | None]], counts: list[int]) -> None:
        """Split one principle's share over the skills of its errors, one exemplar per skill."""
        if share == 0:
            return
        bug = BUGS_BY_ID[tracked.bug_id]
        per_skill = Counter(e.skill_id for e in diagnosis.errors if e.bug_id == bug.id)
        skills = [s for s in bug.skills if per_skill[s]]
        for skill, n in zip(skills, split_by_weight(share, [per_skill[s] for s in skills]), strict=True):
            if n:
                targets.append((skill, self._exemplar(bug, skill, round)))
                counts.append(n)

    def _exemplar(self, bug: Bug, skill: str, round: int) -> Problem:
        """A problem of ``skill`` exposing ``bug`` and as few other bugs as possible, seeded by round."""
        rng = random.Random(derive_seed("tpd", round, bug.id, skill))
        return min(discriminating_problems(bug, skill, 4, rng, self.domain), key=lambda p: len(signature(p)))

    def _reasoning(self, total: int, replay: int, residual: int, stepped: int) -> str:
        diagnosis, history = self.last
        found = (f"diagnosis explains {diagnosis.explained}/{diagnosis.wrong} errors "
                 f"({diagnosis.coverage:.0%})")
        if replay == total:
            return f"TPD: nothing to target ({found}); {total} examples uniform over the skills."
        targeted = ", ".join(f"{t.bug_id} ({t.count})" for t in history.active) or "none"
        retired = f"; retired {', '.join(t.bug_id for t in history.retired)}" if history.retired else ""
        return (f"TPD ({self.config.variant}): {total - replay - residual} examples on the active principles "
                f"by error count: {targeted}; {residual} like the errors no active principle explains"
                f"{f' ({stepped} of them at the step their fact slip got wrong)' if stepped else ''}; "
                f"{replay} replay over {len(self.skills)} skills; {found}{retired}.")

    def views(self) -> list[tuple[str, Record]]:
        """``diagnosis.json`` (the student's diagnosed bugs with counts), ``principles.json`` (the
        principle history) and ``slips.json`` (each error's first wrong step) behind the last plan."""
        if self.last is None:
            return []
        return [(DIAGNOSIS_FILE, self.last[0]), (PRINCIPLES_FILE, self.last[1]), (SLIPS_FILE, self.slips)]

    def restore(self, folder: Path) -> None:
        """Reload the principle history saved in ``folder`` (an earlier round's; none there: fresh)."""
        path = Path(folder) / PRINCIPLES_FILE
        if path.exists():
            history = read_json(path, PrincipleHistory)
            self.histories[history.round] = history

    def render(self) -> str:
        """The last plan's diagnosis and principle history as plain text (CLI, reports)."""
        if self.last is None:
            return "TPD: nothing diagnosed yet."
        diagnosis, history = self.last
        return "\n".join([render_diagnosis(diagnosis), render_history(history), render_slips(self.slips)])


def render_history(history: PrincipleHistory) -> str:
    """A plain-text table of the active principles (since, count) and this round's changes."""
    lines = [f"after round {history.round}: {len(history.active)} active principles"
             + (f"; activated {', '.join(history.activated)}" if history.activated else "")
             + (f"; retired {', '.join(t.bug_id for t in history.retired)}" if history.retired else ""),
             f"{'bug':<26} {'since':>5} {'count':>5}  principle"]
    lines += [f"{t.bug_id:<26} {t.since:>5} {t.count:>5}  {t.text}" for t in history.active]
    return "\n".join(lines)
