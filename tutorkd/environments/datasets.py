"""Question/answer data as teaching domains: a fixed pool of problems instead of a generator.

Any data (``kind: dataset``, read by ``tutorkd.environments.tables``), and GSM8K and Hendrycks MATH as
its presets (``tutorkd.environments.sources``), load into the same ``DatasetDomain`` with the same splits.

Plain text format (no chat template, the same for every student version, so base and LoRA students
are prompted alike):

- prompt: ``Question: <question>\\nAnswer:``; with a teacher explanation, the explanation follows
  after one space and a newline ends it (``Question: ...\\nAnswer: <explanation>\\n``), and the student
  continues from there.
- completion, style ``rationale``: `` <rationale>\\n#### <answer>``; style ``direct``: `` #### <answer>``
  (GSM8K's own answer marker, used for MATH too: MATH's ``\\boxed{X}`` is written as plain ``X``
  in rationales, and ``X`` follows ``####``). A problem without a rationale (data with no rationale
  column) is written ``direct`` in either style. The tokenizer's EOS ends every completion.
- checking: the domain's ``AnswerChecker`` (``tutorkd.environments.checkers``) reads the answer after
  the first ``####`` of the student's output (no ``####`` is a format error, ``None``) and compares
  it: ``exact``, ``numeric``, ``math`` (math-verify: ``1,000`` equals ``1000`` and ``0.5`` equals
  ``\\frac{1}{2}``; GSM8K and MATH) or ``regex:PATTERN``.

Splits (all fixed by ``split_seed``, disjoint, and deduplicated by normalized question); each skill
shuffles its problems (sorted by id first) with its own seeded stream:

- data with a separate test split (GSM8K, MATH, a ``test`` split or file): test is up to
  ``test_per_skill`` problems per skill from it, never shown to the teacher; validation
  (teacher-visible feedback) up to ``val_per_skill`` per skill from the other split, at most half of
  the skill's problems there; the pool the rest. Problems whose question also appears in the test split
  are dropped from the other (counted and logged). A skill needs one test and two other problems.
- data in one split: per skill, test takes up to ``test_per_skill`` problems and at most a third,
  validation up to ``val_per_skill`` and at most a third, the pool the rest (at least a third). A skill
  needs three problems.

``sample`` and ``similar`` draw training problems from the pool only. Skills with too few problems are
left out of the tree, with a warning.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Container, Mapping, Sequence
from functools import cached_property
from typing import NamedTuple

from tutorkd.config import ConfigError, DatasetEnvConfig
from tutorkd.config.environment import QAEnvConfig
from tutorkd.environments.checkers import ANSWER_MARK, AnswerChecker
from tutorkd.environments.checkers import parse_answer as parse_answer
from tutorkd.environments.discovery import DiscoveredSkills
from tutorkd.environments.heldout import HeldOut, normalize
from tutorkd.environments.sources import load_preset
from tutorkd.environments.tables import Labelled, load_table
from tutorkd.schema import Problem, SkillTree

log = logging.getLogger(__name__)

STYLES = ("rationale", "direct")
LOADERS: dict[str, Callable[..., Labelled]] = {
    "gsm8k": load_preset,
    "math": load_preset,
    "dataset": load_table,
}
"""``environment.kind`` to the function that loads and labels its problems."""


class DatasetDomain:
    """A dataset's problems as a ``tutorkd.protocols.Domain``: the pool stands in for a generator.

    ``sample`` draws distinct pool problems of a skill; ``similar`` draws pool problems of the same skill
    as a given problem (found by its question when its labels were stripped, as in open-ended
    feedback). Both raise ``RuntimeError`` when exclusions leave too few, which engines treat as an
    exhausted skill. ``close`` releases the answer checker (math-verify's worker processes).
    """

    def __init__(self, name: str, tree: SkillTree, pool: Mapping[str, Sequence[Problem]],
                 known: Sequence[Problem], checker: AnswerChecker) -> None:
        self.name = name
        self._tree = tree
        self.pool = {skill: tuple(problems) for skill, problems in pool.items()}
        """Leaf skill id to the train problems teachers may use."""
        self._skills = {normalize(p.question): p.skill_ids for p in known}
        self._known = tuple(known)
        self.checker = checker

    @property
    def tree(self) -> SkillTree:
        """The skills of the loaded problems (see ``tutorkd.environments.sources``)."""
        return self._tree

    @cached_property
    def alphabet(self) -> str:
        """Every character of the loaded problems' prompts and completions, sorted."""
        chars = set("Question:Answer#\n 0123456789")
        for p in self._known:
            chars.update(p.question, p.answer, p.rationale or "")
        return "".join(sorted(chars))

    def sample(self, skill_id: str, n: int, rng: random.Random,
               exclude: Container[str] = frozenset()) -> list[Problem]:
        """``n`` distinct pool problems of ``skill_id``, none whose question (raw or normalized) is
        excluded."""
        if skill_id not in self.pool:
            raise ValueError(f"{skill_id!r} is not a leaf skill of {self.name}; leaves: {sorted(self.pool)}")
        problems = self.pool[skill_id]
        out: list[Problem] = []
        tried: set[int] = set()
        # Why random probes rather than a shuffle: engines call this once per example, and ``exclude``
        # is a membership test over a growing set, not something to subtract from.
        while len(out) < n and len(tried) < len(problems):
            i = rng.randrange(len(problems))
            if i in tried:
                continue
            tried.add(i)
            question = problems[i].question
            if question not in exclude and normalize(question) not in exclude:
                out.append(problems[i])
        if len(out) < n:
            raise RuntimeError(f"{self.name} skill {skill_id}: only {len(out)} of {n} pool problems are not "
                               f"excluded; the pool of {len(problems)} is nearly used up")
        return out

    def similar(self, problem: Problem, n: int, rng: random.Random,
                exclude: Container[str] = frozenset()) -> list[Problem]:
        """``n`` pool problems of the same skill as ``problem`` (never ``problem`` itself)."""
        skills = problem.skill_ids or self._skills.get(normalize(problem.question), ())
        if not skills:
            raise ValueError(f"{self.name}: problem {problem.id!r} has no skill label and its question is "
                             "not one of the dataset's; similar() can only match dataset problems")
        return self.sample(skills[0], n, rng, _Both(exclude, normalize(problem.question)))

    def check(self, problem: Problem, output: str) -> tuple[str | None, bool]:
        """(the answer the checker reads in ``output``, or ``None``; whether it equals the gold)."""
        parsed = self.checker.parse(output)
        if parsed is None:
            return None, False
        return parsed, self.checker.equivalent(problem.answer, parsed)

    def prompt(self, problem: Problem, explanation: str | None = None) -> str:
        """``Question: <q>\\nAnswer:``, then `` <explanation>\\n`` when one is given."""
        base = f"Question: {problem.question}\nAnswer:"
        return base if explanation is None else f"{base} {explanation}\n"

    def completion(self, problem: Problem, style: str) -> str:
        """`` <rationale>\\n#### <answer>`` (``rationale``) or `` #### <answer>`` (``direct``, and either
        style for a problem without a rationale)."""
        if style not in STYLES:
            raise ValueError(f"unknown completion style {style!r}; use one of {STYLES}")
        # Why direct without a rationale: data with no rationale column has only answers to teach, and
        # every teacher's default style is ``rationale``.
        if style == "direct" or problem.rationale is None:
            return f" {ANSWER_MARK} {problem.answer}"
        return f" {problem.rationale}\n{ANSWER_MARK} {problem.answer}"

    def close(self) -> None:
        """Release the answer checker (math-verify's worker processes)."""
        self.checker.close()


class _Both:
    """``exclude`` plus one more (normalized) question."""

    def __init__(self, exclude: Container[str], question: str) -> None:
        self.exclude, self.question = exclude, question

    def __contains__(self, item: object) -> bool:
        return item == self.question or item in self.exclude


class BuiltDataset(NamedTuple):
    """A dataset domain, its held-out sets, and the skills discovered for it (``None``: labelled data)."""

    domain: DatasetDomain
    heldout: HeldOut
    discovered: DiscoveredSkills | None


def build_dataset(cfg: DatasetEnvConfig | QAEnvConfig) -> BuiltDataset:
    """Load, label and split the problems of a dataset, GSM8K or MATH config (see the module docstring)."""
    data = LOADERS[cfg.kind](cfg)
    try:
        tree, heldout, pool = _split(data, cfg)
    except BaseException:
        data.checker.close()
        raise
    log.info("%s: %d skills; test %d, val %d, pool %d problems", data.name, len(pool),
             len(heldout.test_problems()), len(heldout.val_problems()), sum(len(p) for p in pool.values()))
    known = [p for part in (heldout.val, heldout.test, pool) for problems in part.values() for p in problems]
    if all(p.rationale is None for p in known):
        log.info("%s: no rationales; every training completion is the answer alone", data.name)
    return BuiltDataset(DatasetDomain(data.name, tree, pool, known, data.checker), heldout, data.discovered)


def build_dataset_domain(cfg: DatasetEnvConfig | QAEnvConfig) -> tuple[DatasetDomain, HeldOut]:
    """The domain and held-out sets of ``build_dataset``."""
    built = build_dataset(cfg)
    return built.domain, built.heldout


BySkill = dict[str, tuple[Problem, ...]]


def _split(data: Labelled, cfg: DatasetEnvConfig | QAEnvConfig) -> tuple[SkillTree, HeldOut, BySkill]:
    """The skill tree of the skills with enough problems, the held-out sets, and the pool."""
    if data.test is None:
        others, tests = _distinct(data.train), None
        if len(others) < len(data.train):
            log.warning("%s: dropped %d problems that repeat another's question", data.name,
                        len(data.train) - len(others))
        others_by, tests_by = _by_skill(others), {}
        leaves = {s for s in others_by if len(others_by[s]) >= 3}
        need = "3 problems"
    else:
        tests = _distinct(data.test)
        test_questions = {normalize(p.question) for p in tests}
        others = _distinct([p for p in data.train if normalize(p.question) not in test_questions])
        if len(others) < len(data.train):
            log.warning("%s: dropped %d train problems that repeat a test question (or each other)",
                        data.name, len(data.train) - len(others))
        others_by, tests_by = _by_skill(others), _by_skill(tests)
        leaves = {s for s in others_by if len(others_by[s]) >= 2 and s in tests_by}
        need = "1 test, 2 train"
    dropped = sorted((set(others_by) | set(tests_by)) - leaves)
    if dropped:
        log.warning("%s: skills left out for too few problems (need %s): %s", data.name, need, dropped)
    if not leaves:
        raise ConfigError(f"environment: no {data.name} skill has enough problems ({need}); check the "
                          "data files (or labels_file)")
    tree = _prune(SkillTree(nodes=data.nodes), leaves)
    val, held_test, pool = {}, {}, {}
    for skill in tree.leaves():
        rng = random.Random(f"heldout:{cfg.split_seed}:{skill}")
        if tests is None:
            ordered = _shuffled(others_by[skill], rng)
            n_test = min(cfg.test_per_skill, len(ordered) // 3)
            n_val = min(cfg.val_per_skill, len(ordered) // 3)
            held_test[skill] = tuple(ordered[:n_test])
            val[skill], pool[skill] = tuple(ordered[n_test:n_test + n_val]), tuple(ordered[n_test + n_val:])
        else:
            shuffled_tests = _shuffled(tests_by[skill], rng)
            trains = _shuffled(others_by[skill], rng)
            n_val = min(cfg.val_per_skill, len(trains) // 2)
            held_test[skill] = tuple(shuffled_tests[: cfg.test_per_skill])
            val[skill], pool[skill] = tuple(trains[:n_val]), tuple(trains[n_val:])
    return tree, HeldOut(seed=cfg.split_seed, val=val, test=held_test), pool


def _distinct(problems: Sequence[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if normalize(p.question) not in seen:
            seen.add(normalize(p.question))
            out.append(p)
    return out


def _by_skill(problems: Sequence[Problem]) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in problems:
        out.setdefault(p.skill_ids[0], []).append(p)
    return out


def _shuffled(problems: Sequence[Problem], rng: random.Random) -> list[Problem]:
    # Why sort first: the split must not depend on the order the rows were read in.
    ordered = sorted(problems, key=lambda p: p.id)
    rng.shuffle(ordered)
    return ordered


def _prune(tree: SkillTree, leaves: set[str]) -> SkillTree:
    """``tree`` without the leaves not in ``leaves`` and the branches left with no leaf."""
    keep = {s.id for s in tree.nodes if s.id in leaves}
    keep |= {s.parent for s in tree.nodes if s.id in keep and s.parent is not None}
    return SkillTree(nodes=tuple(s for s in tree.nodes if s.id in keep))
