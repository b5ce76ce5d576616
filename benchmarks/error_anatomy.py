"""Error anatomy: are the student's weak-skill errors wrong procedures or wrong single-digit facts?

Reads finished teaching runs (the run directories a ``teaching_efficiency.py --keep-runs`` left) and
classifies every wrong validation answer of the chosen skills, each round, by comparing the student's
worked rationale with the gold one step by step (steps are the space-separated ``lhs=result`` pieces):

- ``fact``: the same steps in the same order (every left-hand side, e.g. ``7+8`` or ``3+6+1``, is the
  gold one) and only results differ: the procedure was right, a memorized fact was not;
- ``procedure``: a step's left-hand side differs or steps are missing or extra (no borrow, no ``+1``);
  conservative for facts: a miscopied digit on a left-hand side (``18-9`` for ``17-9``) counts here;
- ``answer``: the gold rationale exactly, then a wrong answer line (the copy from the steps failed);
- ``format``: no rationale (``R:... A:...``) to compare.

Meant for the column-arithmetic skills (steps ``lhs=result`` with numeric results); a comparison's steps
(``4<9``) have no result, so any error there reads as ``procedure``.

It also counts, per fact slip, how far the written result is from the gold one (``off_by_one``): a
student that writes ``9+8=16`` knows the procedure and roughly the magnitude, and needs more practice
on the fact, not another procedure. The question it answers for issue 17: whether the 0.25x gap is
one of *which* data (a procedure the teacher could target) or of *how much training* (facts that take
optimizer steps).

    .venv/bin/python benchmarks/error_anatomy.py runs/e750 [runs/u750 ...] [--skills add.carry sub.borrow]
        [--out benchmarks/results/error_anatomy.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import common

STEP_SEPARATOR = " "
KINDS = ("fact", "procedure", "answer", "format")
COUNTS = ("errors", *KINDS, "fact_off_by_one")


def share(part: int, whole: int) -> float | None:
    """``part / whole`` to 4 decimals, ``None`` when ``whole`` is 0."""
    return round(part / whole, 4) if whole else None


def steps(rationale: str) -> list[tuple[str, str]]:
    """``"7+8=15 3+6+1=10"`` -> ``[("7+8", "15"), ("3+6+1", "10")]``; a piece without ``=`` keeps ``""``."""
    out = []
    for piece in rationale.split(STEP_SEPARATOR):
        lhs, _, result = piece.partition("=")
        out.append((lhs, result))
    return out


def student_rationale(output: str) -> str | None:
    """The rationale the student wrote (between ``R:`` and `` A:``), ``None`` without one."""
    if not output.startswith("R:") or " A:" not in output:
        return None
    return output[2:output.index(" A:")]


def classify(gold: str, output: str) -> tuple[str, int]:
    """(kind, largest distance of a wrong fact's result from the gold one; 0 unless ``fact``)."""
    written = student_rationale(output)
    if written is None:
        return "format", 0
    mine, theirs = steps(written), steps(gold)
    if [lhs for lhs, _ in mine] != [lhs for lhs, _ in theirs]:
        return "procedure", 0
    slips = [(a, b) for (_, a), (_, b) in zip(mine, theirs, strict=True) if a != b]
    if not slips:
        return "answer", 0
    if not all(a.isdigit() and b.isdigit() for a, b in slips):
        return "procedure", 0
    return "fact", max(abs(int(a) - int(b)) for a, b in slips)


def anatomy(run_dir: Path, skills: list[str]) -> list[dict]:
    """Per round of one run: per skill, validation problems, errors and their kinds."""
    rows = []
    for path in sorted((run_dir / "rounds").glob("r*/eval.json"), key=lambda p: int(p.parent.name[1:])):
        attempts = json.loads(path.read_text())["val_attempts"]
        per_skill = {}
        for skill in skills:
            mine = [a for a in attempts if a["problem"]["skill_ids"][0] == skill]
            kinds: Counter[str] = Counter()
            off_by_one = 0
            for a in mine:
                if a["correct"]:
                    continue
                kind, distance = classify(a["problem"]["rationale"], a["output"])
                kinds[kind] += 1
                off_by_one += kind == "fact" and distance == 1
            errors = sum(kinds.values())
            per_skill[skill] = {"problems": len(mine), "errors": errors, **{k: kinds[k] for k in KINDS},
                                "fact_off_by_one": off_by_one, "fact_share": share(kinds["fact"], errors)}
        rows.append({"round": int(path.parent.name[1:]), "per_skill": per_skill})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+",
                        help="folders of <teacher>/<run> directories (labels: <folder name>/<teacher>)")
    parser.add_argument("--skills", nargs="+", default=["add.carry", "sub.borrow"])
    parser.add_argument("--out", type=Path, default=common.RESULTS / "error_anatomy.json")
    args = parser.parse_args()
    runs = []
    for root in args.roots:
        found = sorted(p.parent for p in root.glob("*/*/metrics.jsonl"))
        if not found:
            raise SystemExit(f"no finished runs (*/*/metrics.jsonl) under {root}")
        runs += [{"teacher": f"{root.name}/{d.parent.name}", "run": d.name, "rounds": anatomy(d, args.skills)}
                 for d in found]
    totals: dict[str, Counter[str]] = {}
    for r in runs:
        last = r["rounds"][-1]["per_skill"]
        total = totals.setdefault(r["teacher"], Counter())
        for skill in args.skills:
            total.update({k: last[skill][k] for k in COUNTS})
    summary = {t: {**dict(c), "fact_share": share(c["fact"], c["errors"]),
                   "off_by_one_share_of_facts": share(c["fact_off_by_one"], c["fact"])}
               for t, c in totals.items()}
    config = {"roots": [str(r) for r in args.roots], "skills": args.skills}
    result = {**common.header("error_anatomy"), "config": config, "summary_final_round": summary,
              "runs": runs}
    common.write_result(result, args.out)
    common.print_table(summary, title=f"final-round validation errors on {', '.join(args.skills)}, all seeds")


if __name__ == "__main__":
    main()
