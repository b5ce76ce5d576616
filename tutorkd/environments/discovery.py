"""Skill discovery for domains without skill labels (DataEnvGym's metacognitive pipeline).

1. The teacher LLM names the fine-grained skill each question needs (JSON ``{"skill": ...}``, decoded
   under the schema where the backend supports it, re-validated: invalid answers are counted).
2. The labels are clustered into at most ``k`` categories. DataEnvGym asks GPT-4o to cluster; here
   clustering is dependency-light and deterministic: labels are normalised (lowercase, letters only),
   embedded as L2-normalised character 3-gram counts, and grouped by spherical k-means (k-means++
   start, seeded) with numpy. A category is named by its most frequent label.
3. Every question is mapped to a category. A question whose label was invalid is clustered by its own
   (normalised) text instead, so it still lands with similar-looking questions, and is counted.

Without an LLM (``discover`` with no ``discovery.llm``) the questions themselves are clustered the same
way (``cluster_questions``): numbers and punctuation are normalised away, so questions written from the
same template or on the same topic share their character 3-grams. At most ``k`` clusters are made, as
many as keep every cluster at ``MIN_SKILL_SIZE`` problems or more (k-means is rerun with one cluster
fewer until they do), and one skill when there are fewer than twice that many problems. A cluster is
named by its most characteristic words: those whose share of the cluster's questions exceeds their share
of the other questions the most.

The result plugs into the same interfaces as a domain's own skills: ``DiscoveredSkills.labeler()`` is
a ``SkillLabeler`` for STAT's profile, and ``catalogue()`` is the skill list an LLM labeler chooses from.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tutorkd.config.environment import DiscoveryConfig
from tutorkd.llm.structured import StructuredLLM
from tutorkd.schema import Attempt, Problem, Record, Skill

log = logging.getLogger(__name__)

LABEL_PROMPT = (
    "Name the most specific skill a student needs to solve this problem, in a few words.\n"
    "Problem: {question}\n"
    'Answer with JSON: {{"skill": <skill>}}\n'
)
MIN_SKILL_SIZE = 20
"""Without an LLM, the fewest problems a discovered skill may hold: fewer leave test and validation
sets too small to tell the skill's accuracy apart from noise."""
NAME_WORDS = 3
"""Words a cluster of questions is named by."""
FUNCTION_WORDS = frozenset(
    "the and are for how many much what which who does did with that this then from each has have was "
    "were his her its their they them there into than after before will can".split())
"""Words never used in a name: they say how a question is phrased, not what it is about."""


class SkillLabel(Record):
    """The LLM's answer for one question: a short skill name in words."""

    skill: str = Field(min_length=3, max_length=60)


class Category(Record):
    """One discovered skill category."""

    id: str
    """``c0``, ``c1``, ... in order of first appearance over the questions."""
    name: str
    """Its most frequent label (ties: alphabetical); clustered questions: their most characteristic
    words."""
    labels: tuple[str, ...]
    """Every distinct label in it, sorted; empty where the questions themselves were clustered."""


class DiscoveredSkills(Record):
    """Questions mapped to discovered skill categories."""

    categories: tuple[Category, ...]
    assignment: dict[str, str]
    """Problem id to category id; every question given to ``discover_skills`` is here."""
    questions: dict[str, str]
    """Problem id to its question (open-ended feedback strips ids, so labelling goes by question)."""
    labels: dict[str, str]
    """Problem id to its normalised label (the normalised question where the LLM's label was invalid)."""
    invalid: dict[str, int]
    """Invalid LLM labels by reason (``invalid_json``, ``schema``, ``no_letters``)."""
    method: Literal["llm", "questions"] = "llm"
    """``llm``: the LLM's labels were clustered; ``questions``: no LLM, the questions themselves were
    (``cluster_questions``)."""

    def catalogue(self) -> list[Skill]:
        """The categories as skills (id, and the name plus any labels as description)."""
        return [Skill(id=c.id, description=f"{c.name} ({'; '.join(c.labels)})" if c.labels else c.name)
                for c in self.categories]

    def labeler(self) -> DiscoveredLabels:
        """A ``SkillLabeler`` that names each question's category."""
        by_question = {q: self.assignment[pid] for pid, q in self.questions.items()}
        return DiscoveredLabels(by_question)


class DiscoveredLabels:
    """``SkillLabeler`` from discovered categories; a question never discovered is unlabelled (``None``)."""

    name = "discovered"

    def __init__(self, by_question: dict[str, str]) -> None:
        self.by_question = by_question

    def missing_skills(self, attempts: Sequence[Attempt]) -> list[tuple[str, ...] | None]:
        """Each attempt's category, by its question."""
        return [(self.by_question[a.problem.question],) if a.problem.question in self.by_question else None
                for a in attempts]


def normalise(text: str) -> str:
    """Lowercase, every run of non-letters turned into one space, trimmed."""
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


def label_questions(problems: Sequence[Problem], llm: StructuredLLM) -> tuple[list[str | None], Counter[str]]:
    """The normalised skill label of each problem (``None`` where the LLM's answer was invalid) and the
    invalid answers by reason."""
    schema = SkillLabel.model_json_schema()
    replies = llm.ask([LABEL_PROMPT.format(question=p.question) for p in problems], SkillLabel, schema)
    invalid: Counter[str] = Counter()
    labels: list[str | None] = []
    for p, reply in zip(problems, replies, strict=True):
        label = normalise(reply.value.skill) if reply.value is not None else ""
        if reply.error is not None or not label:
            reason = reply.error or "no_letters"
            invalid[reason] += 1
            log.info("skill label for %s rejected (%s): %r", p.id, reason, reply.text[:200])
            labels.append(None)
        else:
            labels.append(label)
    return labels, invalid


def ngram_vectors(texts: Sequence[str], n: int = 3) -> np.ndarray:
    """L2-normalised character ``n``-gram count vectors of ``texts`` (padded with a space each side)."""
    grams = [Counter(f" {t} "[i:i + n] for i in range(len(t) + 3 - n)) for t in texts]
    vocab = {g: j for j, g in enumerate(sorted({g for c in grams for g in c}))}
    out = np.zeros((len(texts), max(len(vocab), 1)))
    for i, counts in enumerate(grams):
        for g, c in counts.items():
            out[i, vocab[g]] = c
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def cluster(texts: Sequence[str], k: int, seed: int = 0, iterations: int = 50) -> list[int]:
    """Cluster index of each text: spherical k-means over ``ngram_vectors``, at most ``k`` clusters,
    numbered ``0..m-1`` in order of first appearance (identical texts always share one)."""
    if k < 1:
        raise ValueError(f"need at least one category, got k={k}")
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return []
    x = ngram_vectors(distinct)
    rng = np.random.default_rng(seed)
    centres = [int(rng.integers(len(distinct)))]
    while len(centres) < min(k, len(distinct)):  # k-means++: far points are likelier next centres
        far = np.clip(1.0 - (x @ x[centres].T).max(axis=1), 0.0, None)
        if far.sum() <= 1e-12:
            break
        centres.append(int(rng.choice(len(distinct), p=far / far.sum())))
    c = x[centres]
    assign = np.zeros(len(distinct), dtype=int)
    for step in range(iterations):
        new = (x @ c.T).argmax(axis=1)
        if step and (new == assign).all():
            break
        assign = new
        for j in range(len(c)):
            members = x[assign == j]
            if len(members):
                mean = members.sum(axis=0)
                c[j] = mean / max(np.linalg.norm(mean), 1e-12)
    renumber = {int(a): i for i, a in enumerate(dict.fromkeys(int(a) for a in assign))}
    by_text = {t: renumber[int(a)] for t, a in zip(distinct, assign, strict=True)}
    return [by_text[t] for t in texts]


def discover_skills(problems: Sequence[Problem], llm: StructuredLLM, k: int,
                    seed: int = 0) -> DiscoveredSkills:
    """Label every problem with the LLM, cluster the labels into at most ``k`` categories, map them."""
    labels, invalid = label_questions(problems, llm)
    texts = [normalise(p.question) if label is None else label
             for p, label in zip(problems, labels, strict=True)]
    groups = cluster(texts, k, seed)
    categories = []
    for j in range(max(groups, default=-1) + 1):
        members = Counter(t for t, g in zip(texts, groups, strict=True) if g == j)
        name = min(members, key=lambda t: (-members[t], t))
        categories.append(Category(id=f"c{j}", name=name, labels=tuple(sorted(members))))
    log.info("discovered %d skill categories over %d questions (%d invalid labels)",
             len(categories), len(problems), sum(invalid.values()))
    return DiscoveredSkills(
        categories=tuple(categories),
        assignment={p.id: f"c{g}" for p, g in zip(problems, groups, strict=True)},
        questions={p.id: p.question for p in problems},
        labels={p.id: t for p, t in zip(problems, texts, strict=True)},
        invalid=dict(invalid),
    )


def characteristic_words(inside: Sequence[str], outside: Sequence[str], n: int = NAME_WORDS) -> list[str]:
    """The ``n`` words (of 3 letters or more, no ``FUNCTION_WORDS``) whose share of the ``inside`` texts
    exceeds their share of the ``outside`` ones the most (ties: alphabetical); only words more common
    inside."""
    def share(texts: Sequence[str]) -> Counter[str]:
        counts = Counter(w for t in texts for w in set(t.split()) if len(w) >= 3 and w not in FUNCTION_WORDS)
        return Counter({w: c / len(texts) for w, c in counts.items()}) if texts else Counter()

    within, without = share(inside), share(outside)
    scores = {w: s - without[w] for w, s in within.items() if s > without[w]}
    return sorted(scores, key=lambda w: (-scores[w], w))[:n]


def cluster_questions(problems: Sequence[Problem], k: int, seed: int = 0) -> DiscoveredSkills:
    """Skills without an LLM: the normalised questions clustered into at most ``k`` skills of at least
    ``MIN_SKILL_SIZE`` problems each (one skill for fewer than twice that many problems), each named by
    its most characteristic words (see the module docstring)."""
    texts = [normalise(p.question) for p in problems]
    groups = [0] * len(texts)
    for m in range(min(k, len(texts) // MIN_SKILL_SIZE), 1, -1):
        tried = cluster(texts, m, seed)
        if min(Counter(tried).values()) >= MIN_SKILL_SIZE:
            groups = tried
            break
    categories = []
    for j in range(max(groups, default=-1) + 1):
        inside = [t for t, g in zip(texts, groups, strict=True) if g == j]
        outside = [t for t, g in zip(texts, groups, strict=True) if g != j]
        words = characteristic_words(inside, outside) if outside else []
        categories.append(Category(id=f"c{j}", name=" ".join(words) or "all questions", labels=()))
    log.info("no discovery LLM: clustered %d questions into %d skills (%s)", len(problems), len(categories),
             "; ".join(f"{c.id}: {c.name}" for c in categories))
    return DiscoveredSkills(
        categories=tuple(categories),
        assignment={p.id: f"c{g}" for p, g in zip(problems, groups, strict=True)},
        questions={p.id: p.question for p in problems},
        labels={p.id: t for p, t in zip(problems, texts, strict=True)},
        invalid={},
        method="questions",
    )


def discover(problems: Sequence[Problem], cfg: DiscoveryConfig, seed: int = 0) -> DiscoveredSkills:
    """Skills for unlabelled ``problems``: with ``cfg.llm``, ``discover_skills`` (the LLM labels, the labels
    are clustered); without, ``cluster_questions``. At most ``cfg.skills`` either way."""
    if cfg.llm is None:
        return cluster_questions(problems, cfg.skills, seed)
    llm = StructuredLLM.from_config(cfg.llm)
    try:
        return discover_skills(problems, llm, cfg.skills, seed)
    finally:
        llm.close()


def load_problems(path: str | Path) -> list[Problem]:
    """Problems from a JSONL file of ``{"id", "question", "answer"}`` objects (no skill labels)."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if set(row) != {"id", "question", "answer"}:
                raise ValueError(f"{path}:{n}: expected keys id, question, answer; got {sorted(row)}")
            out.append(Problem(id=row["id"], question=row["question"], answer=str(row["answer"]),
                               skill_ids=()))
    return out
