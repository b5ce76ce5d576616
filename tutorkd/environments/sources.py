"""GSM8K and Hendrycks MATH rows as ``Problem``s: loading with ``datasets``, answers, rationales, skills.

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
(``tutorkd.environments.discovery``); questions it does not label are dropped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tutorkd.config import ConfigError, DatasetEnvConfig
from tutorkd.environments.heldout import normalize
from tutorkd.schema import Problem, Skill

log = logging.getLogger(__name__)

Split = Literal["train", "test"]

HUB_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gsm8k": ("openai/gsm8k", ("main",)),
    "math": ("DigitalLearningGmbH/MATH-lighteval", ("default",)),
}
"""Environment kind to (Hugging Face dataset id, subsets) used when no files or dataset are given."""

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


def problem_id(kind: str, question: str) -> str:
    """``<kind>:<12 hex digits>`` from the normalized question: stable across splits and row order."""
    return f"{kind}:{hashlib.sha1(normalize(question).encode()).hexdigest()[:12]}"


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


def load_problems(cfg: DatasetEnvConfig, split: Split) -> list[Problem]:
    """Every well-formed problem of ``split`` (malformed rows dropped, counted and logged)."""
    row_model, convert = (GSM8KRow, gsm8k_problem) if cfg.kind == "gsm8k" else (MathRow, math_problem)
    problems, malformed = [], 0
    for n, raw in enumerate(_load_rows(cfg, split)):
        try:
            problem = convert(row_model.model_validate(raw))
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


def relabel(problems: list[Problem], labels: Mapping[str, str]) -> list[Problem]:
    """``problems`` with the skill ``labels`` gives their normalized question; unlabelled ones dropped."""
    out = [p.model_copy(update={"skill_ids": (labels[normalize(p.question)],)})
           for p in problems if normalize(p.question) in labels]
    if len(out) < len(problems):
        log.warning("labels file: dropped %d of %d problems it does not label", len(problems) - len(out),
                    len(problems))
    return out


def read_labels(path: str) -> tuple[dict[str, str], tuple[Skill, ...]]:
    """Normalized question to skill id, and the skill nodes, from a labels file (module docstring)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"labels_file: {path} does not exist; give a JSONL of question/skill rows or a "
                          "DiscoveredSkills JSON")
    descriptions: dict[str, str] = {}
    if file.suffix == ".json":
        from tutorkd.environments.discovery import DiscoveredSkills

        found = DiscoveredSkills.model_validate_json(file.read_text())
        labels = {normalize(found.questions[pid]): cat for pid, cat in found.assignment.items()}
        descriptions = {c.id: c.name for c in found.categories}
    else:
        labels = {}
        for n, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if set(row) != {"question", "skill"}:
                    raise ConfigError(f"labels_file {path}:{n}: expected keys question, skill; "
                                      f"got {sorted(row)}")
                labels[normalize(row["question"])] = row["skill"]
    nodes: dict[str, Skill] = {}
    for skill in sorted(set(labels.values())):
        branch, dot, _ = skill.partition(".")
        if dot and branch not in nodes:
            nodes[branch] = Skill(id=branch, description=branch)
        nodes[skill] = Skill(id=skill, description=descriptions.get(skill, skill),
                             parent=branch if dot else None)
    return labels, tuple(nodes.values())


def skill_nodes(cfg: DatasetEnvConfig, leaves: set[str]) -> tuple[Skill, ...]:
    """The shipped or labeller skill tree of ``cfg.kind`` restricted to ``leaves``."""
    return gsm8k_tree(leaves) if cfg.kind == "gsm8k" else math_tree(leaves)


def _where(cfg: DatasetEnvConfig, split: Split) -> str:
    path = cfg.train_file if split == "train" else cfg.test_file
    return path if path is not None else f"{source(cfg)[0]} ({split})"


def source(cfg: DatasetEnvConfig) -> tuple[str, tuple[str, ...]]:
    """(Hugging Face dataset id, subsets) that ``cfg`` reads when it names no local files."""
    name, subsets = HUB_DEFAULTS[cfg.kind]
    return cfg.dataset or name, cfg.subsets or (subsets if cfg.dataset is None else (None,))


def _load_rows(cfg: DatasetEnvConfig, split: Split) -> list[dict]:
    import datasets

    path = cfg.train_file if split == "train" else cfg.test_file
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{split}_file: {path} does not exist; give a local {cfg.kind} file (JSONL, "
                              "JSON or parquet), or no train_file/test_file to read the Hugging Face dataset")
        builder = "parquet" if path.endswith(".parquet") else "json"
        return list(datasets.load_dataset(builder, data_files=path, split="train"))
    name, subsets = source(cfg)
    rows: list[dict] = []
    for subset in subsets:
        try:
            rows += list(datasets.load_dataset(name, subset, split=split))
        except (ConnectionError, FileNotFoundError) as exc:
            raise ConfigError(
                f"environment: the {cfg.kind} dataset {name} ({subset or 'default'}, {split}) is not "
                f"available locally and could not be downloaded ({type(exc).__name__}). Fix: on a machine "
                "with network run "
                f"`python -c \"import datasets; datasets.load_dataset('{name}', {subset!r})\"` to fill the "
                "Hugging Face cache (HF_HOME), or set train_file and test_file to local copies"
            ) from None
    log.info("%s %s: %d rows from %s", cfg.kind, split, len(rows), name)
    return rows

