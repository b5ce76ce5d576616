"""STAT (He et al. 2025, skill-targeted adaptive training) as a policy and two engines.

``StatPolicy`` builds the Missing-Skill-Profile from validation errors (``tutorkd.agents.stat.profile``)
and asks for data per missing skill in proportion to it: ``k`` problems per missing-skill occurrence,
or (``k`` unset) the profile scaled to fill the round, as STAT's subsampling to a fixed size does.

``PoolEngine`` (STAT-Sel) selects the problems from a fixed pool of existing training problems: the
``SkillPool``, seeded, drawn from the domain's training partition (the questions ``exclude`` does not
hold: ``HeldOut.reserved`` keeps half of every skill's space for evaluation), at most ``per_skill``
per skill. With the defaults it holds 8132 arithmetic problems: 1000 per skill, but 989
(``add.no_carry``), 801 (``sub.borrow``) and 342 (``mul.by_digit``) where the training half is
smaller. Each round draws without replacement and skips questions trained on earlier, so a skill's
pool can run dry; its items then get fewer examples, with a warning.

``SynthesisEngine`` (STAT-Syn) makes new problems per missing skill from reference problems of that
skill, has a ``Solver`` write several solutions to each, keeps a problem only when at least
``min_agree`` final answers agree (STAT's consistency filter), and, since every domain here has a
verifier, only when the agreed answer is the gold one. One agreeing solution becomes the example
(the verifier downstream rejects repeated question-completion pairs). In the arithmetic domain new
problems are proposed procedurally (``Domain.similar`` of a reference: same structure, new numbers,
never one of its references nor a held-out question; STAT asks for questions unlike the references,
and a small skill's pool may hold its whole training partition, so pool questions are not excluded).
With the ``ProceduralSolver`` every solution is the exact worked solution, so the consistency filter
is trivially satisfied and STAT-Syn reduces to fresh correct-by-construction problems per missing
skill; the filter does work with the ``LLMSolver`` (temperature sampling) and is tested with a noisy
solver.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Protocol

from tutorkd.agents.baselines.policies import Style, even_split, round_total, styled_items
from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.agents.dataenvgym.policies import split_by_weight
from tutorkd.agents.gains import progress_factors, updated_gains
from tutorkd.agents.stat.profile import SkillLabeler, SkillProfile, build_profile
from tutorkd.io import read_json
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Domain, GenerationContext, SamplingConfig
from tutorkd.schema import Example, Feedback, Plan, PlanItem, Problem, Record

log = logging.getLogger(__name__)

STATE_FILE = "stat_state.json"


class StatState(Record):
    """STAT's learnability ablation after one plan (``stat_state.json``, restored on resume)."""

    accuracy: dict[str, float]
    """Validation accuracy per skill of the feedback the plan answered: the next gains' baseline."""
    examples: dict[str, int]
    """Examples per skill the plan asked for."""
    gain: dict[str, float]
    """Estimated validation accuracy gained per example, per skill measured so far."""
    factors: dict[str, float]
    """The learnability factor each profile skill's count was multiplied by in this plan."""


class StatPolicy:
    """Plan data per missing skill in proportion to the Missing-Skill-Profile; saves the profile.

    ``replay_share`` of the round goes evenly over all ``skills`` first (so skills the profile omits
    are not forgotten over rounds); the rest follows the profile. With no difficult question (or none
    labelled) the whole round is uniform over ``skills``, and the reasoning says so.

    ``learnability`` (an ablation, issue 17): the same profile with each skill's count multiplied by
    its measured learning progress (validation accuracy gained per example in the rounds before, over
    the median, clipped to these bounds; ``tutorkd.agents.gains``), so a skill the student is not
    learning gets less of the round than its errors ask for. Needs validation accuracy per skill in the
    feedback (``skill_list`` or ``skill_tree`` level); its state is saved as ``stat_state.json``.
    """

    def __init__(self, labeler: SkillLabeler, skills: Sequence[str], per_round: int, style: Style,
                 k: int | None = None, replay_share: float = 0.0,
                 learnability: tuple[float, float] | None = None, min_examples: int = 10,
                 smoothing: float = 0.5) -> None:
        if not 0.0 <= replay_share <= 1.0:
            raise ValueError(f"replay_share {replay_share} is outside [0, 1]")
        self.labeler, self.skills, self.k = labeler, tuple(skills), k
        self.per_round, self.style, self.replay_share = per_round, style, replay_share
        self.learnability, self.min_examples, self.smoothing = learnability, min_examples, smoothing
        self.profile: SkillProfile | None = None
        self.state: StatState | None = None

    def plan(self, feedback: Feedback) -> Plan:
        """Build the profile from ``feedback`` and split the round's examples by it (after replay)."""
        self.profile = profile = build_profile(feedback, self.labeler)
        total = round_total(feedback, self.per_round)
        skills, n = list(profile.counts), list(profile.counts.values())
        gain, factors = ({}, {}) if self.learnability is None else self.factors(feedback, skills,
                                                                                self.learnability)
        if not skills:
            counts = even_split(total, len(self.skills))
            self.remember(feedback, dict(zip(self.skills, counts, strict=True)), gain, factors)
            return Plan(items=styled_items([(s, None) for s in self.skills], counts, self.style),
                        reasoning=f"STAT: no labelled difficult question; {total} examples uniform.")
        replay = round(total * self.replay_share)
        targeted = total - replay
        if self.k is not None and self.k * sum(n) <= targeted:
            counts, rule = [self.k * c for c in n], f"{self.k} per missing-skill occurrence"
        elif factors:
            counts = split_by_weight(targeted, [c * factors[s] for s, c in zip(skills, n, strict=True)])
            rule = "in proportion to the profile times each skill's learning progress"
        else:
            counts, rule = split_by_weight(targeted, n), "in proportion to the profile"
        per_skill = dict(zip(skills, counts, strict=True))
        for skill, extra in zip(self.skills, even_split(replay, len(self.skills)), strict=True):
            per_skill[skill] = per_skill.get(skill, 0) + extra
        self.remember(feedback, per_skill, gain, factors)
        top = ", ".join(f"{s} {c}" for s, c in list(profile.counts.items())[:4])
        return Plan(items=styled_items([(s, None) for s in per_skill], list(per_skill.values()), self.style),
                    reasoning=f"STAT: {sum(counts)} examples {rule} over {len(skills)} missing skills "
                    f"from {profile.difficult} difficult questions (top: {top}), {replay} replayed "
                    f"evenly over {len(self.skills)} skills.")

    def factors(self, feedback: Feedback, skills: Sequence[str],
                bounds: tuple[float, float]) -> tuple[dict[str, float], dict[str, float]]:
        """The gains measured up to ``feedback`` and each profile skill's learnability factor."""
        if feedback.skill_accuracy is None:
            raise ValueError("STAT's learnability weighting needs validation accuracy per skill: set the "
                             "environment's level to skill_list or skill_tree, or stat.learnability: null")
        gain = {} if self.state is None else updated_gains(
            self.state.gain, self.state.accuracy, feedback.skill_accuracy, self.state.examples,
            smoothing=self.smoothing, min_examples=self.min_examples)
        return gain, progress_factors(gain, skills, bounds)

    def remember(self, feedback: Feedback, examples: dict[str, int], gain: dict[str, float],
                 factors: dict[str, float]) -> None:
        """With ``learnability``: keep what the next round's gains are measured against."""
        if self.learnability is not None and feedback.skill_accuracy is not None:
            self.state = StatState(accuracy=dict(feedback.skill_accuracy), examples=examples, gain=gain,
                                   factors=factors)

    def views(self) -> list[tuple[str, Record]]:
        """``skill_profile.json``: the profile behind the last plan (and, with ``learnability``,
        ``stat_state.json``)."""
        out: list[tuple[str, Record]] = []
        if self.profile is not None:
            out.append(("skill_profile.json", self.profile))
        if self.state is not None:
            out.append((STATE_FILE, self.state))
        return out

    def restore(self, folder: Path) -> None:
        """Load the learnability state saved in ``folder`` (none there: start afresh)."""
        path = Path(folder) / STATE_FILE
        self.state = read_json(path, StatState) if path.exists() else None


class SkillPool:
    """STAT's Skill-Map: a fixed, seeded pool of existing problems per leaf skill, built on first use."""

    def __init__(self, domain: Domain, per_skill: int, seed: int, exclude: Container[str]) -> None:
        self.domain, self.per_skill, self.seed, self.exclude = domain, per_skill, seed, exclude
        self._pool: dict[str, tuple[Problem, ...]] | None = None

    def problems(self, skill: str) -> tuple[Problem, ...]:
        """The pool's problems of ``skill`` (``ValueError`` for a skill not in the domain)."""
        pool = self._build()
        if skill not in pool:
            raise ValueError(f"skill {skill!r} is not a leaf skill of domain {self.domain.name!r}")
        return pool[skill]

    def sizes(self) -> dict[str, int]:
        """Skill id to the number of pool problems."""
        return {s: len(p) for s, p in self._build().items()}

    def questions(self) -> frozenset[str]:
        """Every question in the pool."""
        return frozenset(p.question for ps in self._build().values() for p in ps)

    def _build(self) -> dict[str, tuple[Problem, ...]]:
        if self._pool is None:
            self._pool = {}
            for skill in self.domain.tree.leaves():
                rng = random.Random(f"pool:{self.seed}:{skill}")
                seen: dict[str, Problem] = {}
                while len(seen) < self.per_skill:
                    try:
                        (p,) = self.domain.sample(skill, 1, rng, _AnyOf(self.exclude, seen))
                    except RuntimeError:  # the skill's space outside the exclusions is used up
                        break
                    seen[p.question] = p
                self._pool[skill] = tuple(seen.values())
            log.info("STAT pool: %d problems (%s)", sum(map(len, self._pool.values())), self.sizes())
        return self._pool


class PoolSampler:
    """STAT-Sel's ``Sampler``: a skill's problems drawn at random from its pool, so ``ProceduralEngine``
    does the selecting; nothing is drawn like a given problem."""

    def __init__(self, pool: SkillPool) -> None:
        self.pool = pool

    def sample(
        self, skill_id: str, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """``n`` draws (with replacement) from the pool of ``skill_id`` outside ``exclude``."""
        left = [p for p in self.pool.problems(skill_id) if p.question not in exclude]
        if not left:
            raise RuntimeError(f"the STAT pool of {skill_id} has no problem left outside the exclusions")
        return [rng.choice(left) for _ in range(n)]

    def similar(
        self, problem: Problem, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """Always ``ValueError``: STAT-Sel selects by skill."""
        raise ValueError("STAT-Sel selects by skill; a plan item with like= needs another engine")


def _stamped(example: Example, engine: str, completion: str | None = None) -> Example:
    """``example`` credited to ``engine``, with ``completion`` in place of its own if given."""
    generator = example.provenance.generator.model_copy(update={"engine": engine})
    update = {"provenance": example.provenance.model_copy(update={"generator": generator})}
    if completion is not None:
        update["completion"] = completion
    return example.model_copy(update=update)


class PoolEngine:
    """STAT-Sel: each plan item's problems drawn at random, without replacement, from the skill's pool."""

    name = "stat_pool"

    def __init__(self, domain: Domain, pool: SkillPool) -> None:
        self.selector = ProceduralEngine(domain, sampler=PoolSampler(pool))

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """The selected examples, in the domain's completion format."""
        return [_stamped(ex, self.name) for ex in self.selector.generate(plan, context)]


class Solution(Record):
    """One solution a solver wrote: its text and the final answer parsed from it."""

    text: str
    answer: str | None


class Solver(Protocol):
    """Writes ``n`` solutions to each problem (the consistency filter compares their answers)."""

    name: str

    def solve(self, problems: Sequence[Problem], style: str, n: int, seed: int) -> list[list[Solution]]:
        """For each problem, ``n`` solutions in ``style``."""
        ...


class ProceduralSolver:
    """The domain's exact worked solution, ``n`` times: always consistent and always right."""

    name = "procedural"

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    def solve(self, problems: Sequence[Problem], style: str, n: int, seed: int) -> list[list[Solution]]:
        """``n`` copies of ``domain.completion(problem, style)``."""
        out = []
        for p in problems:
            text = self.domain.completion(p, style)
            out.append([Solution(text=text, answer=self.domain.check(p, text)[0])] * n)
        return out


class LLMSolver:
    """The teacher LLM samples ``n`` solutions per problem from the domain's prompt at ``temperature``."""

    name = "llm"

    def __init__(self, llm: StructuredLLM, domain: Domain, temperature: float = 0.7) -> None:
        self.llm, self.domain, self.temperature = llm, domain, temperature

    def solve(self, problems: Sequence[Problem], style: str, n: int, seed: int) -> list[list[Solution]]:
        """Sampled solutions (``style`` is left to the LLM); answers parsed by ``domain.check``."""
        params = SamplingConfig(max_tokens=self.llm.params.max_tokens, temperature=self.temperature,
                                seed=seed)
        prompts = [self.domain.prompt(p) for p in problems for _ in range(n)]
        # Why rendered: the solver answers as the student does, in the domain's own prompt format (a chat
        # domain's prompts are chats already; the LLM's chat template would nest them in a second chat).
        completions = self.llm.generate(prompts, params, rendered=True)
        texts = [c.text.strip() for c in completions]
        return [[Solution(text=t, answer=self.domain.check(p, t)[0]) for t in texts[i * n:(i + 1) * n]]
                for i, p in enumerate(problems)]


def agreeing(solutions: Sequence[Solution], min_agree: int) -> tuple[str | None, list[Solution]]:
    """STAT's consistency filter: the answer given by at least ``min_agree`` solutions, and those
    solutions; ``(None, [])`` when no answer reaches it or two answers tie for the most votes."""
    top = Counter(s.answer for s in solutions if s.answer is not None).most_common(2)
    if not top or top[0][1] < min_agree or (len(top) == 2 and top[1][1] == top[0][1]):
        return None, []
    return top[0][0], [s for s in solutions if s.answer == top[0][0]]


class SynthesisStats(Record):
    """What the consistency and verification filters did to one round's proposals."""

    proposed: int
    inconsistent: int
    unverified: int
    kept: int


class SynthesisEngine:
    """STAT-Syn: new problems per missing skill from pool references, kept when solutions agree and verify."""

    name = "stat_synthesis"

    def __init__(self, domain: Domain, pool: SkillPool, solver: Solver, exclude: Container[str],
                 solutions: int = 3, min_agree: int = 2, references: int = 3) -> None:
        if min_agree > solutions:
            raise ValueError(f"min_agree {min_agree} exceeds solutions {solutions}; no problem could pass")
        self.domain, self.pool, self.solver, self.exclude = domain, pool, solver, exclude
        self.solutions, self.min_agree, self.references = solutions, min_agree, references
        self.last_stats: SynthesisStats | None = None

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Propose ``item.count`` problems per item, then filter them by agreement and the verifier."""
        items, refs_seen = [], set()
        for item in plan.items:
            if item.skill_id is None:
                raise ValueError(f"STAT-Syn needs a skill per plan item, got {item!r}")
            rng = random.Random(derive_seed(context.seed, context.round, "references", item.skill_id))
            pool = self.pool.problems(item.skill_id)
            refs = rng.sample(pool, min(self.references, len(pool)))
            refs_seen.update(r.question for r in refs)
            items += [PlanItem(count=c, skill_id=item.skill_id, like=ref, style=item.style)
                      for ref, c in zip(refs, even_split(item.count, len(refs)), strict=True) if c]
        proposer = ProceduralEngine(self.domain, _AnyOf(self.exclude, refs_seen))
        proposals = proposer.generate(Plan(items=tuple(items)), context)
        kept, inconsistent, unverified = [], 0, 0
        for style in dict.fromkeys(ex.provenance.generator.style for ex in proposals):
            batch = [ex for ex in proposals if ex.provenance.generator.style == style]
            seed = derive_seed(context.seed, context.round, "solve", style)
            solved = self.solver.solve([ex.problem for ex in batch], style, self.solutions, seed)
            for ex, sols in zip(batch, solved, strict=True):
                answer, agree = agreeing(sols, self.min_agree)
                if answer is None:
                    inconsistent += 1
                elif not self.domain.check(ex.problem, agree[0].text)[1]:
                    unverified += 1
                else:
                    kept.append(_stamped(ex, self.name, agree[0].text))
        self.last_stats = SynthesisStats(proposed=len(proposals), inconsistent=inconsistent,
                                         unverified=unverified, kept=len(kept))
        log.info("STAT-Syn round %d: %s", context.round, self.last_stats)
        return sorted(kept, key=lambda ex: ex.id)

    def views(self) -> list[tuple[str, Record]]:
        """``synthesis.json``: what the consistency and verification filters did to the last round."""
        return [("synthesis.json", self.last_stats)] if self.last_stats is not None else []
