"""The evaluation partition: held-out sets of any size come from it, training data never does."""

from __future__ import annotations

import random

from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut, Reserved

DOMAIN = ArithmeticDomain()


def test_heldout_sets_of_any_size_lie_in_the_reserved_partition():
    reserved = Reserved(seed=7)
    for test_n, val_n in ((10, 10), (60, 20), (200, 50)):
        heldout = HeldOut.build(DOMAIN, test_n, val_n, seed=7)
        assert heldout.questions and all(q in reserved for q in heldout.questions)
        assert heldout.reserved.key == reserved.key


def test_training_draws_outside_the_partition_never_hit_any_heldout_set():
    reserved = Reserved(seed=7)
    big = HeldOut.build(DOMAIN, 200, 50, seed=7)
    rng = random.Random(0)
    for skill in DOMAIN.tree.leaves():
        drawn = DOMAIN.sample(skill, 300, rng, exclude=reserved)
        assert not any(p.question in reserved for p in drawn)
        assert not {p.question for p in drawn} & big.questions


def test_partition_is_about_half_of_each_space_and_depends_on_the_seed():
    questions = [p.question for p in DOMAIN.sample("cmp.lead", 4000, random.Random(1))]
    share = sum(q in Reserved(seed=7) for q in questions) / len(questions)
    assert 0.45 < share < 0.55
    assert [q in Reserved(seed=7) for q in questions] != [q in Reserved(seed=8) for q in questions]
