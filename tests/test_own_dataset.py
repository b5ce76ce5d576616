"""Your own question/answer data as a teaching environment (``kind: dataset``): files, folders and hub ids
read through ``datasets``, columns, malformed rows, answer checkers, splits and discovered skills, and a
whole run through the command line (teach, report, generate) on 300 word problems with no skill column
(tests/data/word_problems_300.jsonl, written by tests/data/make_word_problems.py).
"""

from __future__ import annotations

import json
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from offline import config_error_offline
from pydantic import ValidationError

from tutorkd.config import ConfigError, load_config
from tutorkd.config.environment import CHECKER_NAMES, ENV_SPEC, QAEnvConfig
from tutorkd.environments.checkers import CHECKERS, build_checker
from tutorkd.environments.datasets import build_dataset
from tutorkd.environments.heldout import normalize
from tutorkd.environments.tables import load_table

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
WORDS = DATA / "word_problems_300.jsonl"
SPEC = "environments/word-problems.yaml"
ROWS = [json.loads(line) for line in WORDS.read_text().splitlines()]


def qa(path: Path | str, **fields: object) -> QAEnvConfig:
    """A ``kind: dataset`` config over ``question``/``answer``/``rationale`` columns."""
    return QAEnvConfig.model_validate({"kind": "dataset", "path": str(path), "question": "question",
                                       "answer": "answer", "rationale": "rationale", **fields})


def shipped_spec() -> QAEnvConfig:
    """``environments/word-problems.yaml``, its data path made absolute (tests run from anywhere)."""
    return load_config(ENV_SPEC, REPO / SPEC).model_copy(update={"path": str(WORDS)})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_shipped_file_is_what_its_script_writes_and_has_no_skill_column() -> None:
    assert runpy.run_path(str(DATA / "make_word_problems.py"))["rows"]() == ROWS
    assert len(ROWS) == 300 and {tuple(r) for r in ROWS} == {("id", "question", "answer", "rationale")}


@pytest.mark.parametrize(("checker", "gold", "output", "expected"), [
    ("exact", "19", " so\n#### 19", ("19", True)),
    ("exact", "19", " #### 19.0", ("19.0", False)),
    ("exact", "19", " 19", (None, False)),
    ("numeric", "1000", " #### 1,000", ("1,000", True)),
    ("numeric", "0.5", " #### .50", (".50", True)),
    ("numeric", "1000", " #### 1e3", ("1e3", True)),
    ("numeric", "7", " #### seven", ("seven", False)),
    ("numeric", "7", " #### NaN", ("NaN", False)),
    ("regex:\\(?([A-E])\\)", "C", " (B) is wrong\n#### (C) it is", ("C", True)),
    ("regex:\\(?([A-E])\\)", "C", " #### none", (None, False)),
    ("regex:\\(?([A-E])\\)", "C", " steps\n#### ", ("", False)),  # the verifier's stripped completion
    ("math", "\\frac{1}{2}", " #### 0.5", ("0.5", True)),
])
def test_each_checker_reads_the_answer_line_and_compares(checker: str, gold: str, output: str,
                                                          expected: tuple[str | None, bool]) -> None:
    if checker == "math":
        pytest.importorskip("math_verify")
    answers = build_checker(checker)
    try:
        parsed = answers.parse(output)
        assert (parsed, parsed is not None and answers.equivalent(gold, parsed)) == expected
    finally:
        answers.close()


def test_the_config_accepts_exactly_the_registered_checkers() -> None:
    assert set(CHECKERS) == set(CHECKER_NAMES)
    for bad, message in [("fuzzy", "unknown checker"), ("regex", "unknown checker"),
                         ("exact:x", "unknown checker"), ("regex:(", "does not compile"),
                         ("regex:[A-E]", "has no group")]:
        with pytest.raises(ValidationError, match=message):
            qa(WORDS, checker=bad)
    with pytest.raises(ValidationError, match="skill column or a labels_file, not both"):
        qa(WORDS, skill="topic", labels_file="labels.jsonl")


def test_every_format_loads_the_same_problems(tmp_path: Path) -> None:
    import datasets

    rows = ROWS[:60]
    table = datasets.Dataset.from_list(rows)
    jsonl = write_jsonl(tmp_path / "words.jsonl", rows)
    table.to_csv(tmp_path / "words.csv", index=False)
    table.to_parquet(tmp_path / "words.parquet")
    table.save_to_disk(tmp_path / "saved")
    expected = {(r["question"], r["answer"], r["rationale"]) for r in rows}
    for path in (jsonl, tmp_path / "words.csv", tmp_path / "words.parquet", tmp_path / "saved"):
        loaded = load_table(qa(path, checker="numeric"))
        assert {(p.question, p.answer, p.rationale) for p in loaded.train} == expected, path
        assert loaded.test is None and all(p.id.startswith("dataset:") for p in loaded.train)


def test_a_test_split_is_used_where_the_data_has_one(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "files"
    write_jsonl(folder / "train.jsonl", ROWS[:240])
    write_jsonl(folder / "test.jsonl", ROWS[240:])
    test_questions = {normalize(r["question"]) for r in ROWS[240:]}
    built = build_dataset(qa(folder, checker="numeric"))
    held_test = {normalize(p.question) for p in built.heldout.test_problems()}
    others = {normalize(p.question) for p in built.heldout.val_problems()}
    others |= {normalize(p.question) for problems in built.domain.pool.values() for p in problems}
    assert held_test and held_test <= test_questions and not others & test_questions
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:240]),
                          "test": datasets.Dataset.from_list(ROWS[240:])}).save_to_disk(tmp_path / "dict")
    assert build_dataset(qa(tmp_path / "dict", checker="numeric")).heldout == built.heldout
    one_split = build_dataset(qa(folder, checker="numeric", test_split=None)).heldout
    assert {normalize(p.question) for p in one_split.test_problems()} <= {normalize(r["question"])
                                                                          for r in ROWS[:240]}


def test_one_split_is_divided_disjoint_fixed_and_independent_of_row_order(tmp_path: Path) -> None:
    cfg = shipped_spec()
    built = build_dataset(cfg)
    test = {normalize(p.question) for p in built.heldout.test_problems()}
    val = {normalize(p.question) for p in built.heldout.val_problems()}
    pool = {normalize(p.question) for problems in built.domain.pool.values() for p in problems}
    assert not (test & val) and not (test & pool) and not (val & pool)
    assert len(test | val | pool) == 300  # every skill kept, every problem somewhere
    for skill, (n_test, n_val) in built.heldout.sizes().items():
        size = n_test + n_val + len(built.domain.pool[skill])
        assert n_test == min(cfg.test_per_skill, size // 3) and n_val == min(cfg.val_per_skill, size // 3)
    shuffled = list(ROWS)
    random.Random(3).shuffle(shuffled)
    again = build_dataset(cfg.model_copy(update={"path": str(write_jsonl(tmp_path / "s.jsonl", shuffled))}))
    assert again.heldout == built.heldout and again.discovered == built.discovered
    assert again.domain.pool == built.domain.pool


def test_malformed_rows_are_dropped_counted_and_logged(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bad = [{"question": "", "answer": "1", "rationale": "r"},
           {"question": "How many?", "answer": None, "rationale": "r"},
           {"question": "Two lines?", "answer": "3\n4", "rationale": "r"},
           {"question": "In words?", "answer": "seven", "rationale": "r"}]
    path = write_jsonl(tmp_path / "bad.jsonl", ROWS[:60] + bad)
    loaded = load_table(qa(path, checker="numeric"))
    assert len(loaded.train) == 60
    assert "dropped 4 malformed rows" in caplog.text
    for reason in ("no question", "no answer", "answer spans lines", "answer unreadable by checker numeric"):
        assert reason in caplog.text
    assert len(load_table(qa(path, checker="exact")).train) == 61  # "seven" is an exact answer
    with pytest.raises(ConfigError, match="answer: column 'solution' is not in .*its columns are"):
        load_table(qa(path, answer="solution"))


def test_a_skill_column_labels_the_problems_and_nothing_is_discovered(tmp_path: Path) -> None:
    topics = ["money.shop", "time.read", "shapes.garden", "money.share", "time.travel", "food.recipe"]
    rows = [dict(r, topic=topics[i % 6]) for i, r in enumerate(ROWS)]  # the file interleaves its topics
    built = build_dataset(qa(write_jsonl(tmp_path / "t.jsonl", rows), skill="topic", checker="numeric"))
    assert built.discovered is None and set(built.domain.tree.leaves()) == set(topics)
    assert built.domain.tree.children(None) == ["food", "money", "shapes", "time"]


def test_too_few_problems_make_one_discovered_skill(tmp_path: Path) -> None:
    built = build_dataset(qa(write_jsonl(tmp_path / "few.jsonl", ROWS[:30]), checker="numeric"))
    assert [c.name for c in built.discovered.categories] == ["all questions"]
    assert built.domain.tree.leaves() == ["c0"] and built.discovered.method == "questions"


def test_missing_data_fails_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path: ./nope.jsonl does not exist"):
        load_table(qa("./nope.jsonl"))
    with pytest.raises(ConfigError, match=r"split: .* has no split 'validation'; its splits are \['train'\]"):
        load_table(qa(WORDS, split="validation"))
    out = config_error_offline(
        "from tutorkd.config.environment import QAEnvConfig\n"
        "from tutorkd.environments.tables import load_table",
        "load_table(QAEnvConfig(kind='dataset', path='someone/word-problems', question='q', answer='a'))",
        tmp_path / "hf")
    expected = "CONFIG ERROR: environment: the dataset someone/word-problems (default) is not available"
    assert expected in out
    assert "datasets.load_dataset('someone/word-problems')" in out
    assert "set path to a local copy" in out


def test_pool_examples_pass_the_verifier_and_held_out_ones_do_not(tmp_path: Path) -> None:
    from tutorkd.agents.baselines.procedural import ProceduralEngine
    from tutorkd.protocols import GenerationContext
    from tutorkd.schema import Plan, PlanItem
    from tutorkd.verify import verify

    rows = [{k: v for k, v in r.items() if k != "rationale"} for r in ROWS]  # no rationale column
    built = build_dataset(qa(write_jsonl(tmp_path / "plain.jsonl", rows), rationale=None, checker="numeric"))
    domain, heldout = built.domain, built.heldout
    engine = ProceduralEngine(domain, exclude=heldout.questions)
    plan = Plan(items=tuple(PlanItem(count=2, skill_id=leaf, style="rationale")
                            for leaf in domain.tree.leaves()))
    examples = engine.generate(plan, GenerationContext(run_id="t", round=1, teacher="t", seed=0))
    assert all(e.completion == f" #### {e.problem.answer}" for e in examples)  # no rationale: the answer
    assert len(verify(examples, domain, heldout.questions).kept) == len(examples) == 2 * len(plan.items)
    test = heldout.test_problems()[0]
    leaked = examples[0].model_copy(update={"problem": test, "prompt": domain.prompt(test),
                                            "completion": domain.completion(test, "rationale")})
    assert verify([leaked], domain, heldout.questions).counts["eval_overlap"] == 1


# The acceptance run: `tutorkd teach`, `report` and `generate` in subprocesses, as a user runs them.


def tutorkd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``tutorkd ARGS`` from the repository root (the spec names its data by a path from there); with
    ``check``, it must succeed."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "tutorkd.cli", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def word_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One round of the uniform teacher on the shipped word-problems spec, with a tiny HF student."""
    from tiny_llm import build_tiny_llm

    root = tmp_path_factory.mktemp("word-run")
    student = {"kind": "hf", "model_path": str(build_tiny_llm(root / "tiny-llm")), "max_new_tokens": 12,
               "max_length": 512, "batch_size": 4}
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"student": student, "backend": {"kind": "transformers"},
                                      "teacher": {"name": "uniform", "policy": "uniform", "per_round": 8}}))
    tutorkd("teach", str(config), "--env", SPEC, "--rounds", "1", "--runs-root", str(root / "runs"))
    (run_dir,) = (root / "runs").iterdir()
    return run_dir, student


def test_a_run_on_unlabelled_data_is_scored_on_discovered_skills(word_run) -> None:
    run_dir, _ = word_run
    evals = [json.loads((run_dir / "rounds" / f"r{k}" / "eval.json").read_text()) for k in (0, 1)]
    skills = [{s["skill_id"] for s in e["test"]["per_skill"]} for e in evals]
    found = build_dataset(shipped_spec()).discovered
    assert found is not None and found.method == "questions"
    assert skills[0] == skills[1] == {c.id for c in found.categories} and len(skills[0]) > 1
    assert evals[1]["student"]["name"] == "r1"
    data = [json.loads(line) for line in (run_dir / "rounds" / "r1" / "data.jsonl").read_text().splitlines()]
    assert data and all(d["problem"]["id"].startswith("dataset:") for d in data)


def test_the_run_saves_its_discovered_skills(word_run) -> None:
    from tutorkd.environments.discovery import DiscoveredSkills

    run_dir, _ = word_run
    saved = DiscoveredSkills.model_validate_json((run_dir / "discovered_skills.json").read_text())
    per_skill = json.loads((run_dir / "rounds" / "r0" / "eval.json").read_text())["test"]["per_skill"]
    assert saved.method == "questions" and len(saved.categories) > 1
    assert {c.id for c in saved.categories} == {s["skill_id"] for s in per_skill}
    assert len(saved.assignment) == 300


def test_report_reads_the_run(word_run, tmp_path: Path) -> None:
    run_dir, _ = word_run
    html = tmp_path / "report.html"
    tutorkd("report", str(run_dir), "--out", str(html))
    assert "<html" in html.read_text() and "c0" in html.read_text()


def test_generate_writes_stat_syn_data_from_the_same_spec(word_run, tmp_path: Path) -> None:
    run_dir, student = word_run
    spec = tmp_path / "generate.yaml"
    spec.write_text(yaml.safe_dump({"name": "words-syn", "method": "stat_syn", "size": 6, "student": student,
                                    "out_dir": str(tmp_path / "out"), "environment": SPEC}))
    done = tutorkd("generate", str(spec), check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out" / "words-syn-s0"
    card = json.loads((out / "card.json").read_text())
    assert card["eval_overlap"] == 0 and 0 < card["size"] <= 6
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    heldout = json.loads((run_dir / "heldout.json").read_text())
    held = {normalize(p["question"]) for split in ("val", "test") for ps in heldout[split].values()
            for p in ps}
    assert examples and all(e["problem"]["id"].startswith("dataset:") for e in examples)
    assert not {normalize(e["problem"]["question"]) for e in examples} & held
