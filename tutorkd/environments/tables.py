"""Question/answer data of any kind as ``Problem``s: reading it through ``datasets``, mapping its columns,
and labelling its skills (a column, a labels file, or discovery).

Where the data is (``QAEnvConfig.path``; GSM8K's and MATH's local files and hub ids go through the same
readers):

- a file: JSONL or JSON, CSV or Parquet, by its suffix; one split, ``train``;
- a folder written by ``save_to_disk`` (a ``Dataset``: one split; a ``DatasetDict``: its splits), or
  else a folder of data files named by split (``train.jsonl``, ``test.csv``, ...);
- otherwise a Hugging Face dataset id, read from the cache (``HF_HOME``) or downloaded where the
  network allows; where neither works, a ``ConfigError`` says how to fill the cache.

Rows. The ``question`` and ``answer`` columns must exist (a ``ConfigError`` names the missing one and
the columns there are); ``rationale`` and ``skill`` where configured. A row whose question, answer or
skill is empty or not text or a number, whose answer spans lines, or whose answer the checker cannot
read back from the row's own training completion (a ``numeric`` checker and a non-number, a ``regex``
that does not capture the whole answer) is malformed: dropped, counted by reason and logged. Numbers are
written in their shortest form (``3`` for ``3.0``): Arrow turns a column mixing ``3`` and ``2.5`` into
floats.

Skills: the ``skill`` column, else a ``labels_file`` (``read_labels``), else discovered over every
question (``tutorkd.environments.discovery.discover``; the result is kept as ``Labelled.discovered``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tutorkd.config import ConfigError
from tutorkd.config.environment import QAEnvConfig
from tutorkd.environments.checkers import ANSWER_MARK, AnswerChecker, build_checker
from tutorkd.environments.discovery import DiscoveredSkills, discover
from tutorkd.environments.heldout import normalize
from tutorkd.schema import Problem, Skill

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
"""File suffix to the ``datasets`` builder that reads it."""


@dataclass(frozen=True)
class Labelled:
    """A dataset's problems with their skills and answer checker, ready to be split."""

    name: str
    train: list[Problem]
    """Problems that validation and pool problems are drawn from (test problems too without ``test``)."""
    test: list[Problem] | None
    """Problems of a separate test split; ``None``: there is one split, divided by the split seed."""
    nodes: tuple[Skill, ...]
    """Skill nodes covering every leaf the problems are labelled with."""
    checker: AnswerChecker
    discovered: DiscoveredSkills | None = None
    """The skills discovered for unlabelled data, to be saved with the run."""


def problem_id(kind: str, question: str) -> str:
    """``<kind>:<12 hex digits>`` from the normalized question: stable across splits and row order."""
    return f"{kind}:{hashlib.sha1(normalize(question).encode()).hexdigest()[:12]}"


def file_rows(path: str) -> list[dict]:
    """The rows of one JSONL, JSON, CSV or Parquet file (``FILE_BUILDERS``)."""
    import datasets

    builder = FILE_BUILDERS.get(Path(path).suffix.lower(), "json")
    return list(datasets.load_dataset(builder, data_files=path, split="train"))


def hub_dataset(name: str, subset: str | None, split: str | None, what: str,
                local_fix: str) -> datasets.Dataset | datasets.DatasetDict:
    """``datasets.load_dataset(name, subset, split=split)``; a ``ConfigError`` naming ``what`` it is and
    the fix (fill the cache where there is network, or ``local_fix``) when it is neither cached nor
    downloadable."""
    import datasets

    try:
        return datasets.load_dataset(name, subset, split=split)
    except (ConnectionError, FileNotFoundError) as exc:
        where = f"{subset or 'default'}, {split}" if split else subset or "default"
        call = f"'{name}'" + (f", {subset!r}" if subset is not None else "")
        raise ConfigError(
            f"environment: the {what} {name} ({where}) is not available locally and could not be "
            f"downloaded ({type(exc).__name__}). Fix: on a machine with network run "
            f"`python -c \"import datasets; datasets.load_dataset({call})\"` to fill the "
            f"Hugging Face cache (HF_HOME), or {local_fix}"
        ) from None


def read_splits(location: str, subset: str | None) -> dict[str, list[dict]]:
    """Split name to rows, for a file, a folder or a hub id (see the module docstring)."""
    import datasets

    path = Path(location).expanduser()
    if path.is_file():
        return {"train": file_rows(str(path))}
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError:  # not written by save_to_disk: a folder of data files
            try:
                loaded = datasets.load_dataset(str(path))
            except FileNotFoundError as exc:
                raise ConfigError(f"path: {location} is a folder neither written by save_to_disk nor "
                                  f"holding data files named by split ({exc})") from None
    elif location.startswith((".", "/", "~")) or path.suffix.lower() in FILE_BUILDERS:
        raise ConfigError(f"path: {location} does not exist; give a JSONL, JSON, CSV or Parquet file, a "
                          "folder, or a Hugging Face dataset id")
    else:
        loaded = hub_dataset(location, subset, None, "dataset",
                             "set path to a local copy (a file, or a folder written by save_to_disk)")
    if isinstance(loaded, datasets.Dataset):  # a library type told apart, not an optional ability
        return {"train": list(loaded)}
    return {name: list(split) for name, split in loaded.items()}


def _cell(value: object) -> str | None:
    """A cell as text (a number in its shortest form), or ``None`` when it is empty or not text."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _malformed(question: str | None, answer: str | None, skill: str | None, cfg: QAEnvConfig,
               checker: AnswerChecker) -> str | None:
    """Why a row's cells make no problem, or ``None`` when they make one."""
    if question is None:
        return "no question"
    if answer is None:
        return "no answer"
    if "\n" in answer:
        return "answer spans lines"
    if cfg.skill is not None and skill is None:
        return "no skill"
    # Why: an answer the checker cannot read back from its own training completion could never be
    # scored right, and the verifier would reject every example of it.
    parsed = checker.parse(f" {ANSWER_MARK} {answer}")
    if parsed is None or not checker.equivalent(answer, parsed):
        return f"answer unreadable by checker {cfg.checker}"
    return None


def table_problems(rows: Sequence[Mapping], cfg: QAEnvConfig, checker: AnswerChecker,
                   where: str) -> list[Problem]:
    """The well-formed problems of ``rows`` (malformed ones dropped, counted by reason and logged)."""
    wanted = {"question": cfg.question, "answer": cfg.answer, "rationale": cfg.rationale, "skill": cfg.skill}
    present = set(rows[0]) if rows else set()
    for field, column in wanted.items():
        if column is not None and rows and column not in present:
            raise ConfigError(f"{field}: column {column!r} is not in {where}; its columns are "
                              f"{sorted(present)}")
    problems, malformed = [], Counter()
    for row in rows:
        question, answer = _cell(row[cfg.question]), _cell(row[cfg.answer])
        rationale = _cell(row[cfg.rationale]) if cfg.rationale else None
        skill = _cell(row[cfg.skill]) if cfg.skill else None
        reason = _malformed(question, answer, skill, cfg, checker)
        if reason is not None:
            malformed[reason] += 1
            continue
        problems.append(Problem(id=problem_id(cfg.name, question), question=question, answer=answer,
                                skill_ids=(skill,) if skill else (), rationale=rationale))
    if malformed:
        log.warning("%s: dropped %d malformed rows: %s", where, sum(malformed.values()), dict(malformed))
    return problems


def load_table(cfg: QAEnvConfig) -> Labelled:
    """The problems of a ``kind: dataset`` config, labelled, with their checker."""
    splits = read_splits(cfg.path, cfg.subset)
    if cfg.split not in splits:
        raise ConfigError(f"split: {cfg.path} has no split {cfg.split!r}; its splits are {sorted(splits)}")
    checker = build_checker(cfg.checker, cfg.check_workers, cfg.check_timeout_s)
    train = table_problems(splits[cfg.split], cfg, checker, f"{cfg.path} ({cfg.split})")
    test = None
    if cfg.test_split is not None and cfg.test_split in splits and cfg.test_split != cfg.split:
        test = table_problems(splits[cfg.test_split], cfg, checker, f"{cfg.path} ({cfg.test_split})")
    log.info("%s: %d problems from %s (%s)%s", cfg.name, len(train), cfg.path, cfg.split,
             f", test from split {cfg.test_split}" if test is not None else "; test drawn from them by seed")
    if cfg.skill is not None:
        leaves = {p.skill_ids[0] for p in [*train, *(test or [])]}
        return Labelled(cfg.name, train, test, label_nodes(leaves), checker)
    if cfg.labels_file is not None:
        labels, nodes = read_labels(cfg.labels_file)
        return Labelled(cfg.name, relabel(train, labels), None if test is None else relabel(test, labels),
                        nodes, checker)
    # Why every question, test included: a skill must mean the same on both sides of the split.
    found = discover(_distinct([*(test or []), *train]), cfg.discovery, cfg.split_seed)
    nodes = tuple(Skill(id=c.id, description=c.name) for c in found.categories)

    def assign(problems: list[Problem]) -> list[Problem]:
        return [p.model_copy(update={"skill_ids": (found.assignment[p.id],)}) for p in problems]

    return Labelled(cfg.name, assign(train), None if test is None else assign(test), nodes, checker, found)


def _distinct(problems: Sequence[Problem]) -> list[Problem]:
    """One problem per id (ids hash the normalized question), sorted by id: discovery must not depend
    on the order the rows were read in."""
    first: dict[str, Problem] = {}
    for p in problems:
        first.setdefault(p.id, p)
    return sorted(first.values(), key=lambda p: p.id)


def relabel(problems: list[Problem], labels: Mapping[str, str]) -> list[Problem]:
    """``problems`` with the skill ``labels`` gives their normalized question; unlabelled ones dropped."""
    out = [p.model_copy(update={"skill_ids": (labels[normalize(p.question)],)})
           for p in problems if normalize(p.question) in labels]
    if len(out) < len(problems):
        log.warning("labels file: dropped %d of %d problems it does not label", len(problems) - len(out),
                    len(problems))
    return out


def label_nodes(skills: set[str], descriptions: Mapping[str, str] | None = None) -> tuple[Skill, ...]:
    """Skill nodes for leaf ids, sorted: a dotted ``branch.leaf`` id gets its branch as parent."""
    descriptions = descriptions or {}
    nodes: dict[str, Skill] = {}
    for skill in sorted(skills):
        branch, dot, _ = skill.partition(".")
        if dot and branch not in nodes:
            nodes[branch] = Skill(id=branch, description=branch)
        nodes[skill] = Skill(id=skill, description=descriptions.get(skill, skill),
                             parent=branch if dot else None)
    return tuple(nodes.values())


def read_labels(path: str) -> tuple[dict[str, str], tuple[Skill, ...]]:
    """Normalized question to skill id, and the skill nodes, from a labels file: JSONL of
    ``{"question", "skill"}`` rows, or a ``DiscoveredSkills`` JSON."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"labels_file: {path} does not exist; give a JSONL of question/skill rows or a "
                          "DiscoveredSkills JSON")
    descriptions: dict[str, str] = {}
    if file.suffix == ".json":
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
    return labels, label_nodes(set(labels.values()), descriptions)
