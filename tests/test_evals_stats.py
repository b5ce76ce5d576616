"""Interval estimates, the paired tests, the learning-curve area, and the contamination check.

Run: ``.venv/bin/pytest tests/test_evals_stats.py -q``
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutorkd.evals.contamination import (
    canonical,
    check_overlap,
    commutative_variants,
    eval_questions,
    similar_pairs,
)
from tutorkd.evals.stats import bootstrap_ci, learning_curve_auc, paired_bootstrap, sign_flip_p, wilson


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        # The roots p of (p - correct/n)^2 = z^2 p (1 - p) / n with z = 1.959964 (the Wilson score
        # interval's definition), solved separately as a quadratic.
        (8, 10, 0.4901625, 0.9433178),
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
        (50, 100, 0.4038315, 0.5961685),
    ],
)
def test_wilson_matches_reference_values(correct, n, low, high):
    iv = wilson(correct, n)
    assert iv.estimate == pytest.approx(correct / n)
    assert iv.low == pytest.approx(low, abs=1e-6) and iv.high == pytest.approx(high, abs=1e-6)


@given(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_stays_in_unit_interval(pair):
    correct, n = pair
    iv = wilson(correct, n)
    assert 0.0 <= iv.low <= iv.estimate <= iv.high <= 1.0


def test_wilson_rejects_impossible_counts_and_widens_with_level():
    with pytest.raises(ValueError):
        wilson(11, 10)
    assert wilson(0, 0).low == 0.0 and wilson(0, 0).high == 1.0
    narrow, wide = wilson(30, 60, level=0.8), wilson(30, 60, level=0.99)
    assert wide.low < narrow.low and wide.high > narrow.high


def test_bootstrap_interval_covers_the_median_and_shrinks_with_more_data():
    rng = random.Random(0)
    small = [rng.gauss(0.5, 0.1) for _ in range(10)]
    large = [rng.gauss(0.5, 0.1) for _ in range(1000)]
    a, b = bootstrap_ci(small), bootstrap_ci(large)
    assert a.low <= a.estimate <= a.high
    assert (b.high - b.low) < (a.high - a.low)
    assert abs(b.estimate - 0.5) < 0.02
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)  # deterministic per seed
    one = bootstrap_ci([0.7])
    assert one.low == one.estimate == one.high == 0.7


def test_bootstrap_mean_of_binary_outcomes_is_close_to_wilson():
    outcomes = [1.0] * 60 + [0.0] * 40
    boot, wil = bootstrap_ci(outcomes, "mean", resamples=4000), wilson(60, 100)
    assert boot.estimate == pytest.approx(0.6)
    assert boot.low == pytest.approx(wil.low, abs=0.02) and boot.high == pytest.approx(wil.high, abs=0.02)


def test_paired_bootstrap_detects_a_consistent_difference_and_not_noise():
    rng = random.Random(1)
    base = [rng.uniform(0.3, 0.7) for _ in range(30)]
    better = [x + 0.05 + rng.gauss(0, 0.01) for x in base]
    test = paired_bootstrap(better, base)
    assert test.n == 30 and test.mean_diff == pytest.approx(0.05, abs=0.01)
    assert test.interval.low > 0 and test.p_value < 0.01 and test.p_sign_flip < 0.01
    noise = paired_bootstrap([x + rng.gauss(0, 0.05) for x in base], base)
    assert noise.interval.low < 0 < noise.interval.high and noise.p_value > 0.05
    with pytest.raises(ValueError):
        paired_bootstrap([0.1], [0.1, 0.2])


def test_sign_flip_p_is_exact_for_few_pairs():
    # Three positive differences: only the all-plus and all-minus sign patterns are as extreme.
    assert sign_flip_p([0.1, 0.1, 0.1]) == pytest.approx(2 / 8)
    assert paired_bootstrap([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]).p_sign_flip == pytest.approx(0.25)
    assert sign_flip_p([0.1, -0.1]) == 1.0


def test_learning_curve_auc_rewards_learning_sooner():
    assert learning_curve_auc([0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert learning_curve_auc([0.0, 1.0]) == pytest.approx(0.5)
    early, late = learning_curve_auc([0.2, 0.8, 0.8, 0.8]), learning_curve_auc([0.2, 0.2, 0.2, 0.8])
    assert early > late
    assert learning_curve_auc([0.4]) == 0.4


# --------------------------------------------------------------------------------------------------
# Contamination


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("47+38=", "38+47=", True),  # addition commutes
        ("47 + 38 =", "38+47=", True),  # whitespace is ignored
        ("47*8=", "8*47=", True),
        ("47+38-25=", "38+47-25=", True),  # the added terms commute, the subtracted one stays
        ("47+38+25=", "25+47+38=", True),
        ("85-38=", "38-85=", False),  # subtraction does not commute
        ("473?538=", "538?473=", False),  # a comparison flips its answer
        ("47+38=", "47+39=", False),
    ],
)
def test_canonical_orders_only_commutative_operands(a, b, same):
    assert (canonical(a) == canonical(b)) is same


def test_similar_pairs_finds_exactly_the_pairs_above_the_threshold():
    corpus = [
        "what is the sum of forty seven and thirty eight",
        "compare 473 and 538 digit by digit",
        "an unrelated question about subtraction",
    ]
    queries = [
        "what is the sum of forty seven and thirty eight?",
        "compare 473 and 539 digit by digit",
        "what is the product of two numbers",
    ]
    found = similar_pairs(queries, corpus, threshold=0.9)
    assert found == {0: 0}
    # The prefix filter must not lose pairs: compare with brute force at a lower threshold.
    from tutorkd.evals.contamination import grams, jaccard

    brute = {i for i, q in enumerate(queries) if any(jaccard(grams(q), grams(c)) >= 0.6 for c in corpus)}
    assert set(similar_pairs(queries, corpus, threshold=0.6)) == brute == {0, 1}


def test_check_overlap_counts_exact_and_near_per_split():
    report = check_overlap(
        ["47+38=", "12+13=", "99-11=", "47 + 38 ="],
        {"val": ["38+47=", "50+50="], "test": ["47+38=", "11-99=", "13+12="]},
    )
    val, test = report.splits
    assert (val.exact, val.near, val.questions) == (0, 1, 2)
    assert (test.exact, test.near, test.questions) == (1, 1, 3)
    assert report.train_examples == 4 and report.train_questions == 3
    assert {p.kind for p in test.evidence} == {"exact", "canonical"}
    assert not report.clean
    assert check_overlap(["10+10="], {"test": ["20+20="]}).clean


@pytest.mark.parametrize("question", ["47+38-25=", "47+38=", "47*8=", "85-38=", "473?538=", "10+20+30="])
def test_commutative_variants_are_exactly_the_questions_with_the_same_key(question):
    variants = commutative_variants(question)
    assert question in variants and {canonical(v) for v in variants} == {canonical(question)}
    assert len(variants) == {"47+38-25=": 4, "47+38=": 2, "47*8=": 2, "10+20+30=": 6}.get(question, 1)


def test_procedural_training_data_never_overlaps_the_eval_sets(domain):
    """Training data drawn outside the evaluation partition (as every engine draws it) never equals an
    eval question; excluding the commutative variants of the eval questions as well also removes
    every near-duplicate."""
    from tutorkd.environments.heldout import HeldOut

    sets = HeldOut.build(domain, 100, 30, 1234)
    variants = frozenset(v for q in sets.questions for v in commutative_variants(q))

    class Outside:
        def __contains__(self, q: object) -> bool:
            return q in sets.reserved or q in variants

    for exclude in (sets.reserved, Outside()):
        rng = random.Random(0)
        train = [p.question for s in domain.tree.leaves() for p in domain.sample(s, 300, rng, exclude)]
        report = check_overlap(train, eval_questions(sets))
        assert all(s.exact == 0 for s in report.splits)
    assert report.clean
