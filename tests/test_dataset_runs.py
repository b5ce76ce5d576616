"""A dataset environment through every entry point that rebuilds a run: teach, eval, compare, report and
generate, on the GSM8K sample with a tiny Hugging Face student served by transformers.

Each command goes through the run assembly, so a GSM8K run is scored with its own domain (its skills,
its math-verify checker), never the arithmetic one; the tiny random model makes the answers wrong, which
is not what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_llm import build_tiny_llm

from tutorkd.config import DatasetEnvConfig, GenerateConfig, RunConfig, TeacherConfig
from tutorkd.evals.suite import EvalConfig

pytest.importorskip("math_verify")


def gsm8k_files(folder: Path) -> DatasetEnvConfig:
    """Word problems in GSM8K's row format, enough of two skills (add_sub.short, mul_div.short) for a
    teacher's pool: 40 train and 10 test rows each, distinct numbers."""
    def row(i: int) -> dict:
        a, b = 10 + i, 3 + i % 7
        if i % 2:
            return {"question": f"Sam has {a} apples and buys {b} more. How many apples does he have?",
                    "answer": f"He has {a}+{b}=<<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}
        return {"question": f"Each box holds {b} eggs. How many eggs are in {a} boxes?",
                "answer": f"There are {a}*{b}=<<{a}*{b}={a * b}>>{a * b} eggs.\n#### {a * b}"}

    train, test = folder / "train.jsonl", folder / "test.jsonl"
    train.write_text("".join(json.dumps(row(i)) + "\n" for i in range(80)))
    test.write_text("".join(json.dumps(row(i)) + "\n" for i in range(80, 100)))
    return DatasetEnvConfig(kind="gsm8k", train_file=str(train), test_file=str(test), val_per_skill=4,
                            test_per_skill=5, budget=8, rounds=1)


@pytest.fixture(scope="module")
def gsm8k_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, Path]:
    """One round of the uniform teacher on the GSM8K sample, with a tiny HF student."""
    from tutorkd.lifecycle import run_teaching

    root = tmp_path_factory.mktemp("gsm8k-run")
    env = gsm8k_files(root)
    student = {"kind": "hf", "model_path": str(build_tiny_llm(root / "tiny-llm")), "max_new_tokens": 12,
               "max_length": 512, "batch_size": 4}
    cfg = RunConfig.model_validate({
        "environment": env.model_dump(), "student": student, "backend": {"kind": "transformers"},
        "teacher": TeacherConfig(name="uniform", policy="uniform", per_round=8).model_dump(),
        "runs_root": str(root / "runs"),
    })
    return cfg, run_teaching(cfg)


def test_a_gsm8k_run_is_scored_with_its_own_skills(gsm8k_run) -> None:
    cfg, run_dir = gsm8k_run
    evals = [json.loads((run_dir / "rounds" / f"r{k}" / "eval.json").read_text()) for k in (0, 1)]
    from tutorkd.environments.datasets import build_dataset_domain

    domain, _ = build_dataset_domain(cfg.environment)
    domain.close()
    skills = {s["skill_id"] for s in evals[0]["test"]["per_skill"]}
    assert skills == set(domain.tree.leaves()) and "add.carry" not in skills
    assert evals[1]["student"]["name"] == "r1"
    data = [json.loads(line) for line in (run_dir / "rounds" / "r1" / "data.jsonl").read_text().splitlines()]
    assert data and all(d["problem"]["id"].startswith("gsm8k:") for d in data)


def test_eval_rebuilds_the_gsm8k_student_from_the_run(gsm8k_run) -> None:
    from tutorkd.evals.runs import evaluate_run

    _, run_dir = gsm8k_run
    report, out = evaluate_run(EvalConfig(name="gsm8k-check", splits=("test", "val")), run_dir)
    assert out == run_dir / "evals" / "gsm8k-check-r1.json" and out.is_file()
    recorded = json.loads((run_dir / "rounds" / "r1" / "eval.json").read_text())["test"]
    (test,) = [s for s in report.splits if s.split == "test"]
    # Greedy answers of the same adapter on the same problems: the suite agrees with the run's own score.
    assert test.overall.student.n == recorded["n"] and test.overall.student.correct == recorded["correct"]
    assert {r.name for r in test.per_skill} == {s["skill_id"] for s in recorded["per_skill"]}


def test_compare_and_report_read_a_gsm8k_run(gsm8k_run, tmp_path: Path) -> None:
    from tutorkd.evals.accounting import load_run
    from tutorkd.evals.compare import compare
    from tutorkd.evals.report import write_report

    _, run_dir = gsm8k_run
    cmp = compare([load_run(run_dir)])
    assert [t.teacher for t in cmp.teachers] == ["uniform"]
    html = write_report([run_dir], tmp_path / "report.html").read_text()
    base = json.loads((run_dir / "rounds" / "r0" / "eval.json").read_text())
    assert "<html" in html and base["test"]["per_skill"][0]["skill_id"] in html


def test_generate_writes_a_stat_syn_dataset_for_the_gsm8k_student(gsm8k_run, tmp_path: Path) -> None:
    from tutorkd.environments.heldout import normalize
    from tutorkd.generation.dataset import generate_dataset

    cfg, run_dir = gsm8k_run
    spec = GenerateConfig(name="gsm8k-syn", method="stat_syn", size=6, out_dir=str(tmp_path),
                          environment=cfg.environment, student=cfg.student)
    out = generate_dataset(spec)
    card = json.loads((out / "card.json").read_text())
    assert card["eval_overlap"] == 0 and 0 < card["size"] <= 6 and card["student"].startswith("hf base")
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    heldout = json.loads((run_dir / "heldout.json").read_text())
    held = {normalize(p["question"]) for split in ("val", "test") for ps in heldout[split].values()
            for p in ps}
    assert all(e["problem"]["id"].startswith("gsm8k:") for e in examples)
    assert not {normalize(e["problem"]["question"]) for e in examples} & held
