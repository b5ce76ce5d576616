"""The verification filter: every generated example is re-checked before a student trains on it.

DataEnvGym measured the quality of generated data but never filtered it; here bad data is counted,
logged and dropped, and nothing that fails a check can reach the training set.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Container, Sequence

from tutorkd.environments.heldout import normalize
from tutorkd.protocols import Domain
from tutorkd.schema import Example, Verification, VerifyResult

logger = logging.getLogger(__name__)

REASONS = ("malformed", "wrong_answer", "wrong_rationale", "eval_overlap", "duplicate")
"""Rejection reasons, in the order they are checked: an example is counted under the first that fails."""


def _malformed(example: Example, domain: Domain, parsed: str | None) -> str | None:
    """Why ``example`` cannot be trained on as text, or ``None`` if its text is well formed."""
    if example.prompt != domain.prompt(example.problem):
        return f"prompt {example.prompt!r} is not the domain's prompt {domain.prompt(example.problem)!r}"
    if not parsed:
        return f"completion {example.completion!r} has no answer"
    # Why: the student's EOS follows the completion, so anything after the answer would be learnt as
    # part of it; and a character-level tokenizer cannot encode text outside the alphabet. Without its
    # answer the completion must parse to an empty one: the answer is its first (``A:``, ``####``).
    head = example.completion[: len(example.completion) - len(parsed)]
    if not example.completion.endswith(parsed) or domain.check(example.problem, head)[0] != "":
        return f"completion {example.completion!r} does not end with its first answer {parsed!r}"
    stray = set(example.prompt + example.completion) - set(domain.alphabet)
    if stray:
        return f"characters {''.join(sorted(stray))!r} are outside the domain's alphabet"
    return None


def _reject_reason(
    example: Example,
    domain: Domain,
    heldout_questions: Container[str],
    seen_questions: Container[str],
    batch: set[tuple[str, str]],
) -> tuple[str, str] | None:
    """(reason, detail) for the first check ``example`` fails, or ``None`` if it passes all of them."""
    problem = example.problem
    parsed, correct = domain.check(problem, example.completion)
    detail = _malformed(example, domain, parsed)
    if detail is not None:
        return "malformed", detail
    if not correct:
        return "wrong_answer", f"answer {parsed!r} != gold {problem.answer!r} for {problem.question!r}"
    style = example.provenance.generator.style
    try:
        expected = domain.completion(problem, style)
    except ValueError as exc:  # an unknown style, or a rationale style without a rationale
        return "malformed", f"cannot render {problem.id!r} in style {style!r}: {exc}"
    if example.completion != expected:
        return (
            "wrong_rationale",
            f"completion {example.completion!r} is not the {style} solution {expected!r}",
        )
    question = normalize(problem.question)
    if question in heldout_questions:
        return "eval_overlap", f"question {problem.question!r} is in a held-out evaluation set"
    if question in seen_questions:
        return "duplicate", f"question {problem.question!r} was trained on in an earlier round"
    if (question, example.completion) in batch:
        return "duplicate", f"{problem.question!r} -> {example.completion!r} appears earlier in this batch"
    return None


def verify(
    examples: Sequence[Example],
    domain: Domain,
    heldout_questions: Container[str],
    seen_questions: Container[str] = frozenset(),
) -> VerifyResult:
    """Split ``examples`` into kept and rejected, stamping each with its ``Verification``.

    Checks, in order: ``malformed`` (prompt is not ``domain.prompt(problem)``, or the completion has no
    answer, has text after it, or uses characters outside ``domain.alphabet``); ``wrong_answer``
    (``domain.check`` of the completion against the problem's gold fails); ``wrong_rationale`` (the
    answer is right but the completion is not ``domain.completion(problem, style)`` for the style in
    its provenance: garbled worked steps would teach wrong steps); ``eval_overlap`` (the
    question is in ``heldout_questions``); ``duplicate`` (the question is in ``seen_questions``, the
    questions trained on in earlier rounds, or the same question and completion were kept earlier in
    this batch). Questions are compared in ``heldout.normalize`` form (whitespace removed), the form
    ``HeldOut.questions`` holds; pass ``seen_questions`` normalized the same way. Bad data never
    raises: it is counted, logged and left out of ``kept``.
    """
    ok = Verification(passed=True, reason="ok")
    kept: list[Example] = []
    rejected: list[Example] = []
    counts: Counter[str] = Counter({reason: 0 for reason in REASONS})
    batch: set[tuple[str, str]] = set()
    for example in examples:
        failure = _reject_reason(example, domain, heldout_questions, seen_questions, batch)
        if failure is None:
            batch.add((normalize(example.problem.question), example.completion))
            kept.append(_stamped(example, ok))
            continue
        reason, detail = failure
        counts[reason] += 1
        logger.debug("rejected %s (%s): %s", example.id, reason, detail)
        rejected.append(_stamped(example, Verification(passed=False, reason=reason)))
    for reason in REASONS:
        if counts[reason]:
            logger.info("verify: rejected %d of %d examples as %s", counts[reason], len(examples), reason)
    logger.info("verify: kept %d of %d examples", len(kept), len(examples))
    return VerifyResult(kept=tuple(kept), rejected=tuple(rejected), counts=dict(counts))


def _stamped(example: Example, verification: Verification) -> Example:
    provenance = example.provenance.model_copy(update={"verification": verification})
    return example.model_copy(update={"provenance": provenance})
