"""Eval suites: per-skill scores with intervals, transfer, forgetting, format errors, contamination, and
identical prompts for the base and a trained version.

Run: ``.venv/bin/pytest tests/test_eval_suite.py -q``
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from synthetic_runs import examples, heldout

from tutorkd.config import TinyStudentConfig, load_config
from tutorkd.evals.contamination import commutative_variants
from tutorkd.evals.runs import parse_student_ref
from tutorkd.evals.suite import EvalConfig, run_suite
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import Attempt, Example, Problem, StudentVersion
from tutorkd.students.student import LoRAStudent

REPO = Path(__file__).resolve().parents[1]
R1 = StudentVersion(name="r1", round=1, adapter_path=None, lora_int_id=1)


class FakeStudent:
    """A ``Student`` whose answers follow fixed rules per version.

    Base: right on ``cmp.*``, ``sub.no_borrow`` and ``multi.add_add``, wrong elsewhere. ``r1``: learned
    ``add.*`` (trained), ``sub.borrow`` and ``multi.add_sub`` (never trained: transfer), forgot
    ``cmp.same_lead``, and writes no answer at all on ``mul.by_digit`` (format errors).
    """

    def __init__(self, domain) -> None:
        self.domain = domain
        self.version = StudentVersion(name="base", round=0)

    def use(self, version: StudentVersion) -> None:
        self.version = version

    def answer(self, problems: Sequence[Problem], explanations=None) -> list[Attempt]:
        base_right = {"cmp.lead", "cmp.same_lead", "sub.no_borrow", "multi.add_add"}
        r1_right = (base_right - {"cmp.same_lead"}) | {
            "add.carry",
            "add.no_carry",
            "sub.borrow",
            "multi.add_sub",
        }
        right = r1_right if self.version.name == "r1" else base_right
        out = []
        for p in problems:
            skill = p.skill_ids[0]
            if self.version.name == "r1" and skill == "mul.by_digit":
                text = "R:7*8=56"
            else:
                text = f"A:{p.answer}" if skill in right else "A:x"
            parsed, correct = self.domain.check(p, text)
            out.append(Attempt(problem=p, output=text, parsed_answer=parsed, correct=correct))
        return out

    def train(self, examples, round, init):  # pragma: no cover - never called by a suite
        raise AssertionError("a suite must not train")


def trained_on(
    domain, skills: Sequence[str], n: int, exclude, extra: Sequence[Problem] = ()
) -> list[Example]:
    """Round-1 examples of ``n`` problems of each of ``skills`` (plus ``extra`` problems)."""
    rng = random.Random(0)
    problems = [p for s in skills for p in domain.sample(s, n, rng, exclude)] + list(extra)
    return examples(domain, problems)


def variants(sets) -> frozenset[str]:
    """Every eval question and its commutative variants: training drawn outside these has no overlap."""
    return frozenset(v for q in sets.questions for v in commutative_variants(q))


@pytest.fixture(scope="module")
def sets(domain):
    return heldout(domain)


def test_suite_scores_skills_transfer_forgetting_and_format_errors(domain, sets):
    cfg = EvalConfig(name="t", splits=("test",), strong_threshold=0.8)
    training = trained_on(domain, ["add.carry", "add.no_carry", "mul.by_digit"], 5, sets.reserved)
    report = run_suite(cfg, FakeStudent(domain), R1, domain.tree, sets, training)
    (test,) = report.splits
    by = {r.name: r for r in test.per_skill}
    n = len(sets.test["add.carry"])
    assert by["add.carry"].base.correct == 0 and by["add.carry"].student.correct == n
    assert by["add.carry"].delta == pytest.approx(1.0)
    # Format errors are counted apart from wrong answers, for both versions.
    assert (by["mul.by_digit"].student.format_errors, by["mul.by_digit"].student.wrong) == (n, 0)
    assert (by["mul.by_digit"].base.format_errors, by["mul.by_digit"].base.wrong) == (0, n)
    # Transfer: the 6 leaves never trained on; two learned, one forgotten.
    assert report.trained_per_skill["add.carry"] == 5 and report.trained_per_skill["sub.borrow"] == 0
    assert set(report.transfer_skills) == set(domain.tree.leaves()) - {
        "add.carry",
        "add.no_carry",
        "mul.by_digit",
    }
    assert test.transfer.delta == pytest.approx(1 / 6) and test.transfer.student.n == 6 * n
    # Forgetting: strong at base on validation; r1 lost cmp.same_lead.
    assert set(report.strong_skills) == {"cmp.lead", "cmp.same_lead", "sub.no_borrow", "multi.add_add"}
    assert test.forgetting.delta == pytest.approx(-0.25)
    # Branches pool their leaves; intervals bracket the estimates.
    cmp_branch = next(r for r in test.per_node if r.name == "cmp")
    assert cmp_branch.student.n == 2 * n and cmp_branch.student.correct == n
    for r in (*test.per_skill, *test.per_node, test.overall):
        for s in (r.student, r.base):
            assert s.accuracy.low <= s.accuracy.estimate <= s.accuracy.high
            assert s.correct + s.wrong + s.format_errors == s.n
    # Drawn outside the eval partition: no exact overlap (commutative near-duplicates are possible).
    assert all(s.exact == 0 for s in report.contamination.splits)


def test_suite_options_subsample_pick_transfer_and_switch_to_bootstrap(domain, sets):
    cfg = EvalConfig(
        name="t",
        splits=("val", "test"),
        max_per_skill=10,
        interval="bootstrap",
        transfer_skills=("sub.borrow",),
    )
    report = run_suite(cfg, FakeStudent(domain), R1, domain.tree, sets)
    assert [s.split for s in report.splits] == ["val", "test"]
    assert all(r.student.n == 10 for s in report.splits for r in s.per_skill)
    assert report.transfer_skills == ("sub.borrow",)
    half = next(r for r in report.splits[1].per_node if r.name == "cmp").student.accuracy
    assert half.estimate == 0.5 and 0.2 < half.low < 0.5 < half.high < 0.8  # a bootstrap interval
    with pytest.raises(ValueError, match="not leaf skills"):
        run_suite(EvalConfig(name="t", transfer_skills=("add",)), FakeStudent(domain), R1, domain.tree, sets)


def test_suite_reports_training_data_that_overlaps_the_eval_sets(domain, sets):
    leaked, other = sets.test["add.carry"][:2]
    a, b = other.question[:-1].split("+")
    swapped = domain.make("add.carry", (int(b), int(a)))  # a near-duplicate of another test question
    training = trained_on(domain, ["add.carry"], 3, variants(sets), extra=[leaked, swapped])
    report = run_suite(EvalConfig(name="t"), FakeStudent(domain), R1, domain.tree, sets, training)
    test = next(s for s in report.contamination.splits if s.split == "test")
    assert (test.exact, test.near) == (1, 1) and not report.contamination.clean
    assert {(p.eval_question, p.kind) for p in test.evidence} == {
        (leaked.question, "exact"),
        (other.question, "canonical"),
    }


class RecordingBackend:
    """A ``Backend`` that records every prompt batch and answers ``A:0`` with one logprob per character."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], SamplingConfig]] = []

    def generate(self, prompts, params, version=None) -> list[Completion]:
        self.calls.append(("base" if version is None else version.name, list(prompts), params))
        return [Completion(text="A:0", token_logprobs=(-0.1,) * 4) for _ in prompts]

    def close(self) -> None:
        pass


def test_base_and_trained_versions_get_identical_prompts(domain, sets, tmp_path):
    """DataEnvGym prompted its base few-shot and its trained students zero-shot; here both go through
    the same ``LoRAStudent.answer``, so the prompts must be the very same strings."""
    adapter = tmp_path / "adapters" / "r1"
    adapter.mkdir(parents=True)
    r1 = StudentVersion(name="r1", round=1, adapter_path=str(adapter), lora_int_id=1)
    backend = RecordingBackend()
    student = LoRAStudent(domain, backend, tmp_path, TinyStudentConfig(), work_dir=tmp_path)
    run_suite(EvalConfig(name="t", splits=("val", "test")), student, r1, domain.tree, sets)
    prompts = {(version, tuple(batch)): params for version, batch, params in backend.calls}
    assert {v for v, _ in prompts} == {"base", "r1"}
    for split in (sets.val_problems(), sets.test_problems()):
        batch = tuple(p.question for p in split)  # the fixed format: the bare question, ending in '='
        assert prompts[("base", batch)] == prompts[("r1", batch)]  # same prompts, same decoding
    assert student.version == r1


def test_shipped_eval_specs_load_and_student_refs_parse():
    specs = sorted((REPO / "evals").glob("*.yaml"))
    assert specs
    for path in specs:
        load_config(EvalConfig, path)
    assert parse_student_ref("runs/a") == (Path("runs/a"), None)
    assert parse_student_ref("runs/a:2") == (Path("runs/a"), 2)
    assert parse_student_ref("runs/a:r3") == (Path("runs/a"), 3)
    assert parse_student_ref("runs/a:base") == (Path("runs/a"), 0)


def test_cli_eval_scores_a_real_tiny_student_version(domain, tiny_cfg, tmp_path):
    """``tutorkd eval`` end to end: a run directory with a real LoRA adapter, the transformers backend.

    The held-out sizes are those of ``tests/test_loop.py``, so both use one cached base student (the
    base's recipe includes the held-out questions it excludes); the test itself takes seconds.
    """
    from typer.testing import CliRunner

    from tutorkd.cli import app
    from tutorkd.config import ArithmeticEnvConfig, BackendConfig, RunConfig, TeacherConfig
    from tutorkd.environments.heldout import HeldOut
    from tutorkd.evals.suite import SuiteReport
    from tutorkd.io import read_json, write_jsonl
    from tutorkd.loop import round_dir
    from tutorkd.rundir import save_config
    from tutorkd.students.lora import train_lora
    from tutorkd.students.pretrain import pretrain_base

    env = ArithmeticEnvConfig(test_per_skill=20, val_per_skill=10)
    cfg = RunConfig(
        environment=env,
        teacher=TeacherConfig(name="uniform", policy="uniform"),
        student=tiny_cfg,
        backend=BackendConfig(kind="transformers"),
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(cfg, run_dir)
    sets = HeldOut.build(domain, env.test_per_skill, env.val_per_skill, env.split_seed)
    # The same cached base that `tutorkd teach` builds for this config (the eval partition excluded).
    base = pretrain_base(tiny_cfg, domain, domain.default_pretrain_mix, exclude=sets.reserved)
    data = trained_on(domain, ["add.carry"], 32, sets.reserved)
    write_jsonl(round_dir(run_dir, 1) / "data.jsonl", data)
    train_lora(base, [(e.prompt, e.completion) for e in data], run_dir / "adapters" / "r1", tiny_cfg, seed=1)
    (round_dir(run_dir, 1) / "eval.json").write_text("{}")  # marks round 1 finished; never parsed by eval

    spec = tmp_path / "suite.yaml"
    spec.write_text("name: it\nsplits: [test]\nmax_per_skill: 5\n")  # few problems: CPU generation
    result = CliRunner().invoke(app, ["eval", str(spec), "--student", str(run_dir)])
    assert result.exit_code == 0, result.output
    report = read_json(run_dir / "evals" / "it-r1.json", SuiteReport)
    assert report.student.name == "r1" and report.base.name == "base"
    test = report.splits[0]
    assert test.overall.student.n == test.overall.base.n == 9 * 5
    assert "add.carry" not in report.transfer_skills and report.trained_per_skill["add.carry"] == 32
    assert report.contamination.splits[0].exact == report.contamination.splits[1].exact == 0
    # A real adapter changes the answers: the two versions do not score identically everywhere.
    assert any(r.student.correct != r.base.correct for r in test.per_skill)
    assert "contamination test" in " ".join(result.output.split())

    # Evaluating rebuilds the student alone: a run taught by a plug-in teacher whose code is gone is still
    # evaluated (the same scores), while a plug-in student that cannot be imported is exit 2 naming it.
    import yaml

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["teacher"].update(policy={"import": "gone_lab.policies:Curriculum", "focus": 2},
                            engine={"import": "gone_lab.engines:Drills"})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    again = CliRunner().invoke(app, ["eval", str(spec), "--student", str(run_dir)])
    assert again.exit_code == 0, again.output
    assert read_json(run_dir / "evals" / "it-r1.json", SuiteReport).splits == report.splits
    saved["student"] = {"kind": "plugin", "import": "gone_lab.students:Learner"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    refused = CliRunner().invoke(app, ["eval", str(spec), "--student", str(run_dir)], terminal_width=200)
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "cannot import 'gone_lab.students'" in text, refused.output
    assert "gone_lab.policies" not in text and "Traceback" not in text
