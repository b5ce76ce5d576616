"""Leakage checks: exact and near-duplicate overlap between a run's training data and the eval sets.

Definitions (questions are compared after removing all whitespace, ``heldout.normalize``):

- **exact**: an eval question equal to a training question.
- **near**: not exact, but either

  1. the same after putting commutative operands in order (``canonical``): ``38+47=`` matches
     ``47+38=``, ``8*47=`` matches ``47*8=``, and in a ``+``/``-`` chain the added terms and the
     subtracted terms are each sorted (``47+38-25=`` matches ``38+47-25=``); comparisons (``?``) are
     not commutative and stay as written; or
  2. character 3-gram Jaccard similarity of at least ``JACCARD_THRESHOLD`` (0.9). Short arithmetic
     strings rarely reach it unless nearly identical; it is there for longer or free-form questions,
     where a changed character or two should still count.

Every overlap is counted per eval question (how much of the eval set is compromised) and a few pairs
are kept as evidence. The Jaccard join uses prefix filtering (Bayardo et al., 2007), so checking
thousands of training questions against thousands of eval questions takes well under a second.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from tutorkd.environments.heldout import _EXPR, _TERM, HeldOut, canonical, normalize
from tutorkd.io import read_jsonl
from tutorkd.loop import round_dir
from tutorkd.schema import Example, Record

NGRAM = 3
JACCARD_THRESHOLD = 0.9
MAX_EVIDENCE = 5
"""Overlapping (training, eval) pairs kept per split as evidence."""



class OverlapPair(Record):
    """One eval question and the training question it overlaps with."""

    eval_question: str
    train_question: str
    kind: Literal["exact", "canonical", "jaccard"]


class SplitOverlap(Record):
    """Overlap of one eval split with the training data."""

    split: str
    questions: int
    """Distinct eval questions checked."""
    exact: int
    """Eval questions that equal a training question."""
    near: int
    """Eval questions that are near-duplicates of a training question (and not exact)."""
    evidence: tuple[OverlapPair, ...] = ()


class ContaminationReport(Record):
    """Overlap of all training data of a run with every eval split."""

    train_examples: int
    train_questions: int
    """Distinct training questions."""
    splits: tuple[SplitOverlap, ...]
    definition: str = (
        f"exact: equal after removing whitespace; near: equal after ordering commutative "
        f"operands, or character {NGRAM}-gram Jaccard >= {JACCARD_THRESHOLD}"
    )

    @property
    def clean(self) -> bool:
        """No exact and no near-duplicate overlap in any split."""
        return all(s.exact == 0 and s.near == 0 for s in self.splits)


def commutative_variants(question: str) -> frozenset[str]:
    """Every way of writing ``question`` that ``canonical`` maps to the same key (itself included).

    ``47+38-25=`` gives ``47+38-25=``, ``38+47-25=``, ``47-25+38=`` and ``38-25+47=``. Excluding all
    variants of the eval questions from training data, rather than the questions alone, is what makes
    near-duplicate overlap zero by construction. Chains of more than 6 terms are returned as they are
    (their variants would be too many to list).
    """
    q = normalize(question)
    terms = _TERM.findall(q[:-1]) if _EXPR.match(q) else []
    ops = {op for op, _ in terms[1:]}
    if not terms or len(terms) > 6 or not (ops == {"*"} or ops <= {"+", "-"}):
        return frozenset({q})
    if ops == {"*"}:
        return frozenset("*".join(order) + "=" for order in itertools.permutations(n for _, n in terms))
    signed = [(op or "+", n) for op, n in terms]
    out = set()
    for order in itertools.permutations(signed):
        if order[0][0] == "-":  # a chain cannot start with a subtracted term
            continue
        out.add(order[0][1] + "".join(op + n for op, n in order[1:]) + "=")
    return frozenset(out)


def grams(text: str, n: int = NGRAM) -> frozenset[str]:
    """Character ``n``-grams of ``text`` (the text itself when shorter than ``n``)."""
    if len(text) < n:
        return frozenset({text})
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """``|a & b| / |a | b|``."""
    return len(a & b) / len(a | b) if a or b else 1.0


def similar_pairs(
    queries: Sequence[str], corpus: Sequence[str], threshold: float = JACCARD_THRESHOLD
) -> dict[int, int]:
    """For each query with a corpus string of n-gram Jaccard >= ``threshold``: query index to the
    index of the first such corpus string.

    Prefix filter: order grams rarest first; two sets with Jaccard >= t must share a gram within each
    one's first ``|s| - ceil(t |s|) + 1`` grams, so only corpus strings indexed under a query's prefix
    grams (and of compatible size) are compared exactly.
    """
    q_sets, c_sets = [grams(q) for q in queries], [grams(c) for c in corpus]
    freq = Counter(g for s in (*q_sets, *c_sets) for g in s)

    def prefix(s: frozenset[str]) -> list[str]:
        # Why the epsilon: 0.9 * 30 is 27.000000000000004 in floats, and ceil must give 27.
        keep = len(s) - math.ceil(threshold * len(s) - 1e-9) + 1
        return sorted(s, key=lambda g: (freq[g], g))[:keep]

    index: dict[str, list[int]] = {}
    for j, s in enumerate(c_sets):
        for g in prefix(s):
            index.setdefault(g, []).append(j)
    found: dict[int, int] = {}
    for i, s in enumerate(q_sets):
        candidates = sorted({j for g in prefix(s) for j in index.get(g, ())})
        for j in candidates:
            size = len(c_sets[j])
            if threshold * len(s) <= size <= len(s) / threshold and jaccard(s, c_sets[j]) >= threshold:
                found[i] = j
                break
    return found


def check_overlap(
    train_questions: Iterable[str], eval_sets: Mapping[str, Sequence[str]], train_examples: int | None = None
) -> ContaminationReport:
    """Count, per eval split, the eval questions with an exact or near duplicate in the training data.

    ``train_examples`` is only reported (defaults to the number of training questions given).
    """
    train_list = list(train_questions)
    train = sorted({normalize(q) for q in train_list})
    by_canonical = {canonical(q): q for q in train}
    train_set = set(train)
    splits = []
    for split, questions in eval_sets.items():
        evals = sorted({normalize(q) for q in questions})
        exact = [
            OverlapPair(eval_question=q, train_question=q, kind="exact") for q in evals if q in train_set
        ]
        rest = [q for q in evals if q not in train_set]
        near = [
            OverlapPair(eval_question=q, train_question=by_canonical[canonical(q)], kind="canonical")
            for q in rest
            if canonical(q) in by_canonical
        ]
        matched = {p.eval_question for p in near}
        rest = [q for q in rest if q not in matched]
        near += [
            OverlapPair(eval_question=rest[i], train_question=train[j], kind="jaccard")
            for i, j in similar_pairs(rest, train).items()
        ]
        splits.append(
            SplitOverlap(
                split=split,
                questions=len(evals),
                exact=len(exact),
                near=len(near),
                evidence=tuple((exact + near)[:MAX_EVIDENCE]),
            )
        )
    return ContaminationReport(
        train_examples=len(train_list) if train_examples is None else train_examples,
        train_questions=len(train),
        splits=tuple(splits),
    )


def eval_questions(heldout: HeldOut) -> dict[str, list[str]]:
    """Split name to the questions of every held-out problem of that split."""
    return {
        "val": [p.question for p in heldout.val_problems()],
        "test": [p.question for p in heldout.test_problems()],
    }


def run_training_examples(run_dir: Path) -> list[Example]:
    """Every example a run trained on: ``data.jsonl`` of rounds 1, 2, ... in order."""
    out: list[Example] = []
    k = 1
    while (round_dir(run_dir, k) / "data.jsonl").exists():
        out += read_jsonl(round_dir(run_dir, k) / "data.jsonl", Example)
        k += 1
    return out


def check_run(run_dir: Path, eval_sets: Mapping[str, Sequence[str]]) -> ContaminationReport:
    """``check_overlap`` of all training data of ``run_dir`` against ``eval_sets`` (split to questions)."""
    examples = run_training_examples(run_dir)
    return check_overlap([e.problem.question for e in examples], eval_sets, train_examples=len(examples))
