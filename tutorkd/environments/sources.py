"""GSM8K and Hendrycks MATH as presets of the dataset environment: their row formats, answers,
rationales, skills and hub defaults (``PRESETS``); reading and splitting are the dataset environment's
(``tutorkd.environments.tables``, ``tutorkd.environments.datasets``), and answers are compared by its
``math`` checker.

Sources (``DatasetEnvConfig``): by default the Hugging Face datasets ``openai/gsm8k`` (config
``main``) and ``DigitalLearningGmbH/MATH-lighteval`` (config ``default``; the original
``lighteval/MATH`` was taken down in 2025; ``EleutherAI/hendrycks_math`` works too, with one subset per
subject), read through ``datasets`` (its cache, or a download where the network allows one); or local
``train_file``/``test_file`` in the same row format (JSONL, JSON or parquet):

- GSM8K rows ``{"question", "answer"}``; the answer is a worked solution with calculator annotations
  (``48/2 = <<48/2=24>>24``) ending in ``#### 72``.
- MATH rows ``{"problem", "level", "type", "solution"}``; the solution holds the answer in its last
  ``\\boxed{...}``; ``level`` is ``Level 1`` to ``Level 5`` and ``type`` the subject.

A row without a final answer (no ``####``, no ``\\boxed``, or a MATH ``Level ?``) is malformed: it is
dropped, counted and logged, never guessed at.

Skills. MATH ships labels: the tree's branches are the seven subjects and its leaves are
``<subject>.level<n>`` (e.g. ``algebra.level3``). GSM8K has none, so a documented labeller derives one
from the reference solution: the branch is the kind of arithmetic it uses (``add_sub``: only + and -;
``mul_div``: only * and /; ``mixed``: both), the leaf adds its length (``short``: at most 3
calculation steps, ``long``: more), e.g. ``mixed.long``; steps are the ``<<...>>`` annotations (the
solution's lines where there are none) and operators are those between two numbers. Either dataset can
instead take a ``labels_file``: JSONL rows ``{"question", "skill"}`` (a dotted ``branch.leaf`` id makes
a two-level tree) or the ``DiscoveredSkills`` JSON of the skill-discovery pipeline
(``tutorkd.environments.tables.read_labels``); questions it does not label are dropped and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tutorkd.config import ConfigError, DatasetEnvConfig
from tutorkd.environments.checkers import build_checker
from tutorkd.environments.tables import Labelled, file_rows, hub_dataset, problem_id, read_labels, relabel
from tutorkd.schema import Problem, Skill

log = logging.getLogger(__name__)

Split = Literal["train", "test"]

GSM8K_BRANCHES = {
    "add_sub": "Word problems solved with addition and subtraction only.",
    "mul_div": "Word problems solved with multiplication and division only.",
    "mixed": "Word problems that combine additive and multiplicative steps.",
}
GSM8K_LENGTHS = {"short": "at most 3 calculation steps", "long": "4 or more calculation steps"}
SHORT_STEPS = 3

_CALC = re.compile(r"<<([^<>]*)>>")
_OPERATOR = re.compile(r"(?<=[\d)])\s*([-+*/])\s*(?=[\d(])")


class _Row(BaseModel):
    # Why extra="ignore": hub copies of these datasets carry extra columns (ids, splits) we do not use.
    model_config = ConfigDict(frozen=True, extra="ignore")


class GSM8KRow(_Row):
    """One GSM8K row: a word problem and its annotated solution ending in ``#### <answer>``."""

    question: str
    answer: str


class MathRow(_Row):
    """One Hendrycks MATH row."""

    problem: str
    level: str
    type: str
    solution: str


def gsm8k_skill(solution: str) -> str:
    """The labeller's leaf skill for a GSM8K solution (see the module docstring), e.g. ``mixed.long``."""
    annotations = _CALC.findall(solution)
    steps = len(annotations) or len([line for line in solution.splitlines() if line.strip()])
    ops = set(_OPERATOR.findall(solution))
    additive, multiplicative = bool(ops & {"+", "-"}), bool(ops & {"*", "/"})
    branch = "mixed" if additive and multiplicative else "mul_div" if multiplicative else "add_sub"
    return f"{branch}.{'short' if steps <= SHORT_STEPS else 'long'}"


def gsm8k_problem(row: GSM8KRow) -> Problem | None:
    """The problem of a GSM8K row (``None`` without a ``####`` answer): answer without thousands
    separators, rationale without the calculator annotations, skill from ``gsm8k_skill``."""
    body, sep, final = row.answer.rpartition("####")
    answer = final.strip().replace(",", "")
    if not sep or not answer:
        return None
    rationale = _CALC.sub("", body).strip()
    return Problem(id=problem_id("gsm8k", row.question), question=row.question.strip(), answer=answer,
                   skill_ids=(gsm8k_skill(body),), rationale=rationale)


def gsm8k_tree(leaves: set[str]) -> tuple[Skill, ...]:
    """The labeller's skill nodes restricted to ``leaves`` (and their branches)."""
    nodes = []
    for branch, description in GSM8K_BRANCHES.items():
        kept = [f"{branch}.{length}" for length in GSM8K_LENGTHS if f"{branch}.{length}" in leaves]
        if kept:
            nodes.append(Skill(id=branch, description=description))
            nodes += [Skill(id=leaf, description=f"{description[:-1]}, {GSM8K_LENGTHS[leaf.split('.')[1]]}.",
                            parent=branch) for leaf in kept]
    return tuple(nodes)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the ``{...}`` group opening at ``text[start]`` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i], i + 1
    return None


def last_boxed(solution: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in a MATH solution."""
    start = max(solution.rfind("\\boxed"), solution.rfind("\\fbox"))
    if start < 0:
        return None
    brace = solution.find("{", start)
    if brace < 0:
        return None
    group = _braced(solution, brace)
    return group[0].strip() if group is not None else None


def unboxed(solution: str) -> str:
    """The solution with every ``\\boxed{X}`` written as plain ``X`` (the answer follows ``####``)."""
    out, i = [], 0
    while (start := solution.find("\\boxed{", i)) >= 0:
        group = _braced(solution, start + len("\\boxed"))
        if group is None:
            break
        out += [solution[i:start], group[0]]
        i = group[1]
    return "".join(out) + solution[i:]


def subject_id(subject: str) -> str:
    """``Counting & Probability`` -> ``counting_and_probability``."""
    return re.sub(r"[^a-z]+", "_", subject.lower().replace("&", "and")).strip("_")


def math_problem(row: MathRow) -> Problem | None:
    """The problem of a MATH row (``None`` without a boxed answer or with an unknown level)."""
    answer = last_boxed(row.solution)
    level = re.fullmatch(r"Level (\d)", row.level.strip())
    if not answer or level is None:
        return None
    return Problem(id=problem_id("math", row.problem), question=row.problem.strip(), answer=answer,
                   skill_ids=(f"{subject_id(row.type)}.level{level.group(1)}",),
                   rationale=unboxed(row.solution).strip())


def math_tree(leaves: set[str]) -> tuple[Skill, ...]:
    """Subjects over their levels, restricted to ``leaves``, subjects and levels in sorted order."""
    nodes = []
    for subject in sorted({leaf.split(".")[0] for leaf in leaves}):
        nodes.append(Skill(id=subject, description=f"MATH {subject.replace('_', ' ')} problems."))
        nodes += [Skill(id=leaf, description=f"MATH {subject.replace('_', ' ')}, difficulty {leaf[-1]} of 5.",
                        parent=subject) for leaf in sorted(leaves) if leaf.split(".")[0] == subject]
    return tuple(nodes)


@dataclass(frozen=True)
class Preset:
    """A benchmark as a preset of the dataset environment: where it lives, its row format, how a row
    becomes a problem, its skill tree, and how answers are compared."""

    hub: str
    """Hugging Face dataset id read when a config names no files or dataset."""
    subsets: tuple[str, ...]
    row: type[_Row]
    problem: Callable[[_Row], Problem | None]
    """The problem of a row, ``None`` for a malformed one."""
    tree: Callable[[set[str]], tuple[Skill, ...]]
    """The skill nodes over a set of leaves."""
    checker: str = "math"


PRESETS: dict[str, Preset] = {
    "gsm8k": Preset("openai/gsm8k", ("main",), GSM8KRow, gsm8k_problem, gsm8k_tree),
    "math": Preset("DigitalLearningGmbH/MATH-lighteval", ("default",), MathRow, math_problem, math_tree),
}
"""``environment.kind`` to its preset."""


def load_preset(cfg: DatasetEnvConfig) -> Labelled:
    """A GSM8K or MATH config's train and test problems, labelled (its own skills or ``labels_file``),
    with the ``math`` checker."""
    preset = PRESETS[cfg.kind]
    # Why first: a missing math-verify should stop the run before a download starts.
    checker = build_checker(preset.checker, cfg.check_workers, cfg.check_timeout_s)
    train, test = load_problems(cfg, "train"), load_problems(cfg, "test")
    if cfg.labels_file is not None:
        labels, nodes = read_labels(cfg.labels_file)
        return Labelled(cfg.kind, relabel(train, labels), relabel(test, labels), nodes, checker)
    return Labelled(cfg.kind, train, test, preset.tree({p.skill_ids[0] for p in [*train, *test]}), checker)


def load_problems(cfg: DatasetEnvConfig, split: Split) -> list[Problem]:
    """Every well-formed problem of ``split`` (malformed rows dropped, counted and logged)."""
    preset = PRESETS[cfg.kind]
    problems, malformed = [], 0
    for n, raw in enumerate(_load_rows(cfg, split)):
        try:
            problem = preset.problem(preset.row.model_validate(raw))
        except ValidationError as exc:
            raise ConfigError(f"{_where(cfg, split)}: row {n} is not a {cfg.kind} row: "
                              f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None
        if problem is None:
            malformed += 1
        else:
            problems.append(problem)
    if malformed:
        log.warning("%s: dropped %d malformed rows (no final answer or level)", _where(cfg, split), malformed)
    return problems


def _where(cfg: DatasetEnvConfig, split: Split) -> str:
    path = cfg.train_file if split == "train" else cfg.test_file
    return path if path is not None else f"{source(cfg)[0]} ({split})"


def source(cfg: DatasetEnvConfig) -> tuple[str, tuple[str, ...]]:
    """(Hugging Face dataset id, subsets) that ``cfg`` reads when it names no local files."""
    preset = PRESETS[cfg.kind]
    return cfg.dataset or preset.hub, cfg.subsets or (preset.subsets if cfg.dataset is None else (None,))


def _load_rows(cfg: DatasetEnvConfig, split: Split) -> list[dict]:
    path = cfg.train_file if split == "train" else cfg.test_file
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{split}_file: {path} does not exist; give a local {cfg.kind} file (JSONL, "
                              "JSON or parquet), or no train_file/test_file to read the Hugging Face dataset")
        return file_rows(path)
    name, subsets = source(cfg)
    rows: list[dict] = []
    for subset in subsets:
        rows += list(hub_dataset(name, subset, split, f"{cfg.kind} dataset",
                                 "set train_file and test_file to local copies"))
    log.info("%s %s: %d rows from %s", cfg.kind, split, len(rows), name)
    return rows

