"""GSM8K and Hendrycks MATH as teaching domains: a fixed pool of problems instead of a generator.

Plain text format (no chat template, the same for every student version, so base and LoRA students
are prompted alike):

- prompt: ``Question: <question>\\nAnswer:``; with a teacher explanation, the explanation follows
  after one space and a newline ends it (``Question: ...\\nAnswer: <explanation>\\n``), and the student
  continues from there.
- completion, style ``rationale``: `` <rationale>\\n#### <answer>``; style ``direct``: `` #### <answer>``
  (GSM8K's own answer marker, used for MATH too: MATH's ``\\boxed{X}`` is written as plain ``X``
  in rationales, and ``X`` follows ``####``). The tokenizer's EOS ends every completion.
- parsing: the answer is the text after the first ``####`` of the student's output, up to the end of
  that line, stripped; no ``####`` is a format error (``None``). Answers are compared with
  math-verify (``tutorkd.environments.mathcheck``): ``1,000`` equals ``1000`` and ``0.5`` equals
  ``\\frac{1}{2}``.

Splits (all fixed by ``split_seed``, disjoint, and deduplicated by normalized question):

- test: up to ``test_per_skill`` problems per skill from the dataset's test split, never shown to the
  teacher;
- validation (teacher-visible feedback): up to ``val_per_skill`` per skill from the train split, at
  most half of the skill's train problems;
- pool: the rest of the train split; ``sample`` and ``similar`` draw training problems from it. Train
  problems whose question also appears in the test split are dropped (counted and logged).

A skill needs at least one test problem and two train problems (one for validation, one for the
pool); skills with fewer are left out of the tree, with a warning.
"""

from __future__ import annotations

import importlib.util
import logging
import random
from collections.abc import Container, Mapping, Sequence
from functools import cached_property

from tutorkd.config import ConfigError, DatasetEnvConfig
from tutorkd.environments.heldout import HeldOut, normalize
from tutorkd.environments.mathcheck import MathChecker
from tutorkd.environments.sources import load_problems, read_labels, relabel, skill_nodes
from tutorkd.schema import Problem, SkillTree

log = logging.getLogger(__name__)

ANSWER_MARK = "####"
STYLES = ("rationale", "direct")


def parse_answer(output: str) -> str | None:
    """The text after the first ``####`` up to the end of its line, stripped; ``None`` without one."""
    _, mark, rest = output.partition(ANSWER_MARK)
    return rest.split("\n", 1)[0].strip() if mark else None


class DatasetDomain:
    """A benchmark's problems as a ``tutorkd.protocols.Domain``: the pool stands in for a generator.

    ``sample`` draws distinct pool problems of a skill; ``similar`` draws pool problems of the same skill
    as a given problem (found by its question when its labels were stripped, as in open-ended
    feedback). Both raise ``RuntimeError`` when exclusions leave too few, which engines treat as an
    exhausted skill. ``close`` stops the answer checker's worker processes.
    """

    def __init__(self, name: str, tree: SkillTree, pool: Mapping[str, Sequence[Problem]],
                 known: Sequence[Problem], checker: MathChecker) -> None:
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
        """(the answer after ``####``, or ``None``; whether math-verify finds it equal to the gold)."""
        parsed = parse_answer(output)
        if parsed is None:
            return None, False
        return parsed, self.checker.equivalent(problem.answer, parsed)

    def prompt(self, problem: Problem, explanation: str | None = None) -> str:
        """``Question: <q>\\nAnswer:``, then `` <explanation>\\n`` when one is given."""
        base = f"Question: {problem.question}\nAnswer:"
        return base if explanation is None else f"{base} {explanation}\n"

    def completion(self, problem: Problem, style: str) -> str:
        """`` <rationale>\\n#### <answer>`` (``rationale``) or `` #### <answer>`` (``direct``)."""
        if style == "direct":
            return f" {ANSWER_MARK} {problem.answer}"
        if style != "rationale":
            raise ValueError(f"unknown completion style {style!r}; use one of {STYLES}")
        if problem.rationale is None:
            raise ValueError(f"problem {problem.id} has no rationale; use style 'direct'")
        return f" {problem.rationale}\n{ANSWER_MARK} {problem.answer}"

    def close(self) -> None:
        """Stop the answer checker's worker processes."""
        self.checker.close()


class _Both:
    """``exclude`` plus one more (normalized) question."""

    def __init__(self, exclude: Container[str], question: str) -> None:
        self.exclude, self.question = exclude, question

    def __contains__(self, item: object) -> bool:
        return item == self.question or item in self.exclude


def build_dataset_domain(cfg: DatasetEnvConfig) -> tuple[DatasetDomain, HeldOut]:
    """Load, label and split a GSM8K or MATH config's problems (see the module docstring)."""
    if importlib.util.find_spec("math_verify") is None:
        raise ConfigError(f"environment: {cfg.kind} answers are checked with math-verify, which is not "
                          "installed; pip install 'tutorkd[real]'")
    train, test = load_problems(cfg, "train"), load_problems(cfg, "test")
    labelled_nodes = None
    if cfg.labels_file is not None:
        labels, labelled_nodes = read_labels(cfg.labels_file)
        train, test = relabel(train, labels), relabel(test, labels)
    test = _distinct(test)
    test_questions = {normalize(p.question) for p in test}
    clean = _distinct([p for p in train if normalize(p.question) not in test_questions])
    if len(clean) < len(train):
        log.warning("%s: dropped %d train problems that repeat a test question (or each other)", cfg.kind,
                    len(train) - len(clean))
    train_by, test_by = _by_skill(clean), _by_skill(test)
    leaves = {s for s in train_by if len(train_by[s]) >= 2 and s in test_by}
    dropped = sorted((set(train_by) | set(test_by)) - leaves)
    if dropped:
        log.warning("%s: skills left out for too few problems (need 1 test, 2 train): %s", cfg.kind, dropped)
    if not leaves:
        raise ConfigError(f"environment: no {cfg.kind} skill has both a test problem and two train problems; "
                          "check train_file/test_file (or labels_file)")
    nodes = labelled_nodes if labelled_nodes is not None else skill_nodes(cfg, leaves)
    tree = _prune(SkillTree(nodes=nodes), leaves)
    val, held_test, pool = {}, {}, {}
    for skill in tree.leaves():
        rng = random.Random(f"heldout:{cfg.split_seed}:{skill}")
        tests = _shuffled(test_by[skill], rng)
        trains = _shuffled(train_by[skill], rng)
        n_val = min(cfg.val_per_skill, len(trains) // 2)
        held_test[skill] = tuple(tests[: cfg.test_per_skill])
        val[skill], pool[skill] = tuple(trains[:n_val]), tuple(trains[n_val:])
    heldout = HeldOut(seed=cfg.split_seed, val=val, test=held_test)
    log.info("%s: %d skills; test %d, val %d, pool %d problems", cfg.kind, len(pool),
             len(heldout.test_problems()), len(heldout.val_problems()), sum(len(p) for p in pool.values()))
    checker = MathChecker(workers=cfg.check_workers, timeout_s=cfg.check_timeout_s)
    known = [p for group in (val, held_test, pool) for problems in group.values() for p in problems]
    return DatasetDomain(cfg.kind, tree, pool, known, checker), heldout


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
