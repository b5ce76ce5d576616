"""GSM8K and MATH loaders, labels, splits, the dataset domain and math-verify scoring, on local files
in the datasets' own row formats (tests/data/*_sample.jsonl, written for these tests)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from offline import config_error_offline

from tutorkd.config import ENV_SPEC, ConfigError, DatasetEnvConfig, RunConfig, load_config
from tutorkd.environments.datasets import build_dataset_domain, parse_answer
from tutorkd.environments.heldout import normalize
from tutorkd.environments.mathcheck import MathChecker
from tutorkd.environments.sources import (
    GSM8KRow,
    MathRow,
    gsm8k_problem,
    gsm8k_skill,
    last_boxed,
    load_problems,
    math_problem,
    unboxed,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def split_sample(kind: str, folder: Path, extra_train: list[dict] = ()) -> DatasetEnvConfig:
    """The sample file as train (rows 0-2 of every 4) and test (row 3 of every 4) files: each of the
    sample's five skills gets three train problems and one test problem."""
    rows = [json.loads(line) for line in (DATA / f"{kind}_sample.jsonl").read_text().splitlines()]
    train, test = folder / f"{kind}-train.jsonl", folder / f"{kind}-test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 != 3)
                     + "".join(json.dumps(r) + "\n" for r in extra_train))
    test.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 == 3))
    return DatasetEnvConfig(kind=kind, train_file=str(train), test_file=str(test), val_per_skill=1,
                            test_per_skill=5)


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory: pytest.TempPathFactory):
    domain, heldout = build_dataset_domain(split_sample("gsm8k", tmp_path_factory.mktemp("gsm8k")))
    yield domain, heldout
    domain.close()


@pytest.fixture(scope="module")
def math(tmp_path_factory: pytest.TempPathFactory):
    domain, heldout = build_dataset_domain(split_sample("math", tmp_path_factory.mktemp("math")))
    yield domain, heldout
    domain.close()


def test_a_gsm8k_row_becomes_a_problem_with_answer_rationale_and_skill() -> None:
    row = GSM8KRow(question="There are 5 shelves with 30 books each. Then 1,200 more books arrive. How many?",
                   answer="The shelves hold 5*30 = <<5*30=150>>150 books.\n"
                          "Now there are 150+1200 = <<150+1200=1350>>1350 books.\n#### 1,350")
    problem = gsm8k_problem(row)
    assert problem.answer == "1350"
    assert problem.rationale == "The shelves hold 5*30 = 150 books.\nNow there are 150+1200 = 1350 books."
    assert problem.skill_ids == ("mixed.short",)
    assert gsm8k_problem(GSM8KRow(question="q", answer="no final answer line")) is None


@pytest.mark.parametrize(("solution", "skill"), [
    ("2+3 = <<2+3=5>>5", "add_sub.short"),
    ("9*12 = <<9*12=108>>108\n108/4 = <<108/4=27>>27", "mul_div.short"),
    ("<<1+1=2>> <<2*2=4>> <<4-1=3>> <<3+3=6>>", "mixed.long"),
    ("a 5-year-old has 3 + 4 apples\nthen 7 - 2", "add_sub.short"),  # no annotations: lines are steps
])
def test_the_gsm8k_labeller_reads_operators_and_steps(solution: str, skill: str) -> None:
    assert gsm8k_skill(solution) == skill


def test_a_math_row_keeps_the_last_boxed_answer_and_its_subject_and_level() -> None:
    row = MathRow(problem="p", level="Level 4", type="Counting & Probability",
                  solution="First $\\boxed{2}$ is wrong; the answer is $\\boxed{\\frac{5}{6}}$.")
    problem = math_problem(row)
    assert problem.answer == "\\frac{5}{6}"
    assert problem.skill_ids == ("counting_and_probability.level4",)
    assert problem.rationale == "First $2$ is wrong; the answer is $\\frac{5}{6}$."
    assert last_boxed("so $\\fbox{7}$") == "7"
    assert unboxed("no box") == "no box"
    assert math_problem(row.model_copy(update={"level": "Level ?"})) is None
    assert math_problem(row.model_copy(update={"solution": "no answer"})) is None


def test_malformed_rows_are_dropped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = split_sample("gsm8k", tmp_path, extra_train=[{"question": "q?", "answer": "no marker"}])
    problems = load_problems(cfg, "train")
    assert len(problems) == 15
    assert "dropped 1 malformed rows" in caplog.text


def test_a_row_of_the_wrong_format_names_the_file(tmp_path: Path) -> None:
    cfg = split_sample("math", tmp_path)
    with pytest.raises(ConfigError, match="gsm8k_sample.jsonl: row 0 is not a math row: .*problem"):
        load_problems(cfg.model_copy(update={"train_file": str(DATA / "gsm8k_sample.jsonl")}), "train")


def test_splits_are_disjoint_fixed_and_drawn_from_the_right_split(gsm8k, tmp_path: Path) -> None:
    domain, heldout = gsm8k
    test_rows = {normalize(json.loads(line)["question"]) for line in
                 (DATA / "gsm8k_sample.jsonl").read_text().splitlines()[3::4]}
    test = {normalize(p.question) for p in heldout.test_problems()}
    val = {normalize(p.question) for p in heldout.val_problems()}
    pool = {normalize(p.question) for problems in domain.pool.values() for p in problems}
    assert test == test_rows
    assert not (test & val) and not (test & pool) and not (val & pool)
    assert len(val) == 5 and len(pool) == 10
    assert domain.tree.leaves() == ["add_sub.short", "add_sub.long", "mul_div.short", "mixed.short",
                                    "mixed.long"]
    again, heldout_again = build_dataset_domain(split_sample("gsm8k", tmp_path))
    assert heldout_again == heldout
    assert again.pool == domain.pool


def test_a_train_problem_that_repeats_a_test_question_is_dropped(tmp_path: Path) -> None:
    test_row = json.loads((DATA / "gsm8k_sample.jsonl").read_text().splitlines()[3])
    spaced = dict(test_row, question=test_row["question"].replace(" ", "  "))
    domain, heldout = build_dataset_domain(split_sample("gsm8k", tmp_path, extra_train=[spaced]))
    pool = [p for problems in domain.pool.values() for p in problems] + heldout.val_problems()
    assert normalize(test_row["question"]) not in {normalize(p.question) for p in pool}


def test_skills_with_too_few_problems_are_left_out(tmp_path: Path) -> None:
    cfg = split_sample("math", tmp_path)
    rows = Path(cfg.test_file).read_text().splitlines()
    Path(cfg.test_file).write_text("\n".join(rows[1:]) + "\n")  # algebra.level1 loses its test problem
    domain, heldout = build_dataset_domain(cfg)
    assert "algebra.level1" not in domain.tree.leaves()
    assert "algebra" in {s.id for s in domain.tree.nodes}  # algebra.level2 still holds the branch
    domain.close()


def test_sample_draws_distinct_pool_problems_and_honours_exclusions(math) -> None:
    domain, heldout = math
    rng = random.Random(0)
    pair = domain.sample("algebra.level2", 2, rng)
    assert len({p.id for p in pair}) == 2 and set(pair) <= set(domain.pool["algebra.level2"])
    (one, other) = domain.pool["algebra.level2"]
    assert domain.sample("algebra.level2", 1, rng, exclude={normalize(one.question)}) == [other]
    assert domain.sample("algebra.level2", 1, rng, exclude={other.question}) == [one]
    with pytest.raises(RuntimeError, match="nearly used up"):
        domain.sample("algebra.level2", 3, rng)
    with pytest.raises(ValueError, match="not a leaf skill"):
        domain.sample("algebra", 1, rng)


def test_similar_finds_the_skill_of_an_unlabelled_dataset_problem(math) -> None:
    domain, heldout = math
    val = heldout.val["number_theory.level1"][0]
    stripped = val.model_copy(update={"skill_ids": (), "id": "math:" + val.question})
    similar = domain.similar(stripped, 2, random.Random(1))
    assert {p.skill_ids for p in similar} == {("number_theory.level1",)}
    assert val not in similar
    with pytest.raises(ValueError, match="not one of the dataset's"):
        domain.similar(stripped.model_copy(update={"question": "What is 1+1?"}), 1, random.Random(1))


def test_prompt_and_completion_follow_the_plain_format(gsm8k) -> None:
    domain, _ = gsm8k
    problem = domain.pool["mul_div.short"][0]
    assert domain.prompt(problem) == f"Question: {problem.question}\nAnswer:"
    assert domain.prompt(problem, "First divide.") == f"Question: {problem.question}\nAnswer: First divide.\n"
    assert domain.completion(problem, "direct") == f" #### {problem.answer}"
    assert domain.completion(problem, "rationale") == f" {problem.rationale}\n#### {problem.answer}"
    assert domain.check(problem, domain.completion(problem, "rationale")) == (problem.answer, True)
    assert set(domain.completion(problem, "rationale")) <= set(domain.alphabet)


def test_check_parses_after_the_first_marker_and_compares_with_math_verify(gsm8k, math) -> None:
    gsm, gsm_heldout = gsm8k
    books = next(p for p in gsm_heldout.test_problems() if p.answer == "1350")
    assert gsm.check(books, " so\n#### 1,350 books\n#### 7") == ("1,350 books", False)
    assert gsm.check(books, " #### 1,350\nQuestion: next") == ("1,350", True)
    assert gsm.check(books, " 1350") == (None, False)
    domain, heldout = math
    everything = heldout.val_problems() + heldout.test_problems() + list(domain.pool["prealgebra.level2"])
    half = next(p for p in everything if p.answer == "\\frac{3}{4}")
    assert domain.check(half, " #### 0.75") == ("0.75", True)
    assert domain.check(half, " #### \\dfrac{3}{4}") == ("\\dfrac{3}{4}", True)
    assert domain.check(half, " #### 3/5") == ("3/5", False)
    assert parse_answer("#### ") == ""


def test_a_hanging_comparison_times_out_and_the_checker_recovers() -> None:
    checker = MathChecker(workers=1, timeout_s=2.0)
    try:
        # Why this pair: sympy tries to evaluate both power towers and does not come back.
        verdicts = checker.equivalent_many([("2^{2^{2^{2^{2}}}}", "3^{3^{3^{3}}}"), ("\\frac{1}{2}", "0.5")])
        assert verdicts == [False, True]
        assert checker.timeouts == 1
        assert checker.equivalent("x+3", "3+x")
    finally:
        checker.close()


def test_a_labels_file_replaces_the_shipped_skills(tmp_path: Path) -> None:
    cfg = split_sample("gsm8k", tmp_path)
    rows = [json.loads(line) for line in (DATA / "gsm8k_sample.jsonl").read_text().splitlines()]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"question": r["question"], "skill": "money.spend" if "dollar" in
                                          r["question"] else "counting.other"}) + "\n" for r in rows[:-1]))
    domain, heldout = build_dataset_domain(cfg.model_copy(update={"labels_file": str(labels)}))
    assert set(domain.tree.leaves()) == {"money.spend", "counting.other"}
    assert {s.id for s in domain.tree.nodes} == {"money", "money.spend", "counting", "counting.other"}
    assert all(p.skill_ids[0] in domain.tree.leaves() for p in heldout.test_problems())
    questions = {p.question for ps in domain.pool.values() for p in ps}
    questions |= {p.question for p in heldout.test_problems()}
    assert rows[-1]["question"] not in questions  # unlabelled: dropped
    domain.close()


def test_missing_local_files_fail_with_the_fix(tmp_path: Path) -> None:
    cfg = DatasetEnvConfig(kind="gsm8k", train_file=str(tmp_path / "nope.jsonl"),
                           test_file=str(tmp_path / "t"))
    with pytest.raises(ConfigError, match="train_file: .*nope.jsonl does not exist"):
        build_dataset_domain(cfg)


def test_a_dataset_that_is_not_cached_fails_with_the_fix(tmp_path: Path) -> None:
    out = config_error_offline(
        "from tutorkd.config import DatasetEnvConfig\n"
        "from tutorkd.environments.datasets import build_dataset_domain",
        "build_dataset_domain(DatasetEnvConfig(kind='gsm8k'))", tmp_path / "hf")
    expected = "CONFIG ERROR: environment: the gsm8k dataset openai/gsm8k (main, train) is not available"
    assert expected in out
    assert "datasets.load_dataset('openai/gsm8k', 'main')" in out


def test_the_shipped_real_model_specs_validate() -> None:
    assert load_config(ENV_SPEC, REPO / "environments/gsm8k-qwen.yaml").kind == "gsm8k"
    assert load_config(ENV_SPEC, REPO / "environments/math-qwen.yaml").kind == "math"
    recipe = load_config(RunConfig, REPO / "recipes/gsm8k-qwen.yaml")
    assert (recipe.environment.kind, recipe.student.kind, recipe.backend.kind) == ("gsm8k", "hf", "openai")
    assert recipe.teacher.llm is not None and recipe.teacher.llm.backend == "openai"


def test_a_dataset_environment_without_a_real_student_is_refused_on_the_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tutorkd.cli", "teach", "--env", "environments/gsm8k-qwen.yaml",
               "--runs-root", str(tmp_path)]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "needs a pretrained student" in " ".join(out.stdout.split())
    assert "Traceback" not in out.stdout + out.stderr


def test_pool_problems_pass_the_engine_and_the_verifier_and_held_out_ones_do_not(gsm8k) -> None:
    from tutorkd.agents.baselines.procedural import ProceduralEngine
    from tutorkd.protocols import GenerationContext
    from tutorkd.schema import Plan, PlanItem
    from tutorkd.verify import verify

    domain, heldout = gsm8k
    engine = ProceduralEngine(domain, exclude=heldout.questions)
    styles = ["rationale", "direct", "rationale", "direct", "rationale"]
    plan = Plan(items=tuple(PlanItem(count=2, skill_id=leaf, style=style)
                            for leaf, style in zip(domain.tree.leaves(), styles, strict=True)))
    examples = engine.generate(plan, GenerationContext(run_id="t", round=1, teacher="t", seed=0))
    assert len(examples) == 10  # each skill's pool of 2, all of it
    result = verify(examples, domain, heldout.questions)
    assert len(result.kept) == 10, result.counts
    test = heldout.test_problems()[0]
    leaked = examples[0].model_copy(update={"problem": test, "prompt": domain.prompt(test),
                                            "completion": domain.completion(test, "rationale")})
    trailing = examples[1].model_copy(update={"completion": examples[1].completion + "\nQuestion: more"})
    counts = verify([leaked, trailing], domain, heldout.questions).counts
    assert {reason: n for reason, n in counts.items() if n} == {"eval_overlap": 1, "malformed": 1}


def test_gsm8k_and_math_are_presets_of_the_dataset_environment(gsm8k, math) -> None:
    from tutorkd.environments.checkers import MathAnswers
    from tutorkd.environments.datasets import LOADERS
    from tutorkd.environments.sources import PRESETS, load_preset

    assert set(PRESETS) == {"gsm8k", "math"} and all(LOADERS[kind] is load_preset for kind in PRESETS)
    assert all(isinstance(domain.checker, MathAnswers) for domain, _ in (gsm8k, math))
