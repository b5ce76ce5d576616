"""The error anatomy of ``benchmarks/error_anatomy.py``: a wrong answer is a fact slip only when the
student wrote the gold rationale's steps, in order, with some results wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tutorkd.environments.arithmetic import ArithmeticDomain

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def anatomy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    import error_anatomy

    return error_anatomy


@pytest.mark.parametrize(("skill", "operands", "output", "kind", "distance"), [
    ("add.carry", (37, 68), "R:7+8=15 3+6+1=11 A:115", "fact", 1),       # the tens fact off by one
    ("add.carry", (59, 68), "R:9+8=16 5+6+1=13 A:136", "fact", 1),       # two slips, each off by one
    ("add.carry", (19, 17), "R:9+7=13 1+1+1=3 A:33", "fact", 3),         # the largest slip counts
    ("add.carry", (46, 28), "R:16-8=8 3-2=1 A:18", "procedure", 0),      # another operation's steps
    ("sub.borrow", (43, 14), "R:3-4=0 4-1=3 A:30", "procedure", 0),      # no borrow
    ("add.carry", (37, 68), "R:7+8=15 3+6=9 A:95", "procedure", 0),      # the carry's +1 left out
    ("add.carry", (37, 68), "R:7+8=15 3+6+1=10 A:106", "answer", 0),     # right steps, wrong answer line
    ("add.carry", (37, 68), "A:105", "format", 0),                       # no rationale to compare
])
def test_errors_are_classified_by_their_steps(anatomy: ModuleType, skill: str, operands: tuple[int, int],
                                              output: str, kind: str, distance: int) -> None:
    gold = ArithmeticDomain().make(skill, operands).rationale
    assert anatomy.classify(gold, output) == (kind, distance)


def test_a_run_directory_is_read_round_by_round(anatomy: ModuleType, tmp_path: Path) -> None:
    problem = ArithmeticDomain().make("add.carry", (37, 68)).model_dump(mode="json")
    wrong = {"problem": problem, "correct": False, "output": "R:7+8=15 3+6+1=11 A:115"}
    right = {**wrong, "correct": True, "output": "R:7+8=15 3+6+1=10 A:105"}
    for r, attempts in ((0, [wrong, wrong]), (1, [wrong, right]), (10, [right, right])):
        (tmp_path / "rounds" / f"r{r}").mkdir(parents=True)
        (tmp_path / "rounds" / f"r{r}" / "eval.json").write_text(json.dumps({"val_attempts": attempts}))
    rows = anatomy.anatomy(tmp_path, ["add.carry"])
    assert [x["round"] for x in rows] == [0, 1, 10]  # numeric order: r10 after r1
    assert [x["per_skill"]["add.carry"]["errors"] for x in rows] == [2, 1, 0]
    first = rows[0]["per_skill"]["add.carry"]
    assert first == {"problems": 2, "errors": 2, "fact": 2, "procedure": 0, "answer": 0, "format": 0,
                     "fact_off_by_one": 2, "fact_share": 1.0}
    assert rows[2]["per_skill"]["add.carry"]["fact_share"] is None
