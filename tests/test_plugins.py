"""Plug-ins: a teacher policy, an engine or a student named by import path in a spec.

The example plug-in (``examples/curriculum_policy.py``) runs from ``tutorkd teach`` and from the Python
API; plug-ins are checked when the config loads (a bad one exits 2 naming the field, with no
traceback); a plug-in's ``views``/``restore`` are used when its class defines them; and a student
plug-in that serves itself runs a whole teaching loop with no engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import tutorkd
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import ConfigError, RunConfig, TeacherConfig, TinyStudentConfig, load_config
from tutorkd.config.plugins import PluginSpec
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Feedback, StructureLevel

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "curriculum.yaml"
SMALL_ENV = {"level": "skill_tree", "test_per_skill": 10, "val_per_skill": 10, "budget": 60, "rounds": 1}
"""One round of 60 examples, scored on small held-out sets."""

MYLAB = {
    "teachers.py": '''
        from tutorkd.agents.baselines.policies import UniformPolicy
        from tutorkd.agents.baselines.procedural import ProceduralEngine
        from tutorkd.schema import Record


        class Note(Record):
            text: str


        class StatefulPolicy:
            """Uniform, with views and a restore that records where it reloaded from."""

            def __init__(self, inputs, tag="x"):
                self.inner = UniformPolicy(inputs.leaves(), inputs.cfg.per_round, inputs.cfg.style)
                self.tag, self.restored = tag, []

            def plan(self, feedback):
                return self.inner.plan(feedback)

            def views(self):
                return [("note.json", Note(text=self.tag))]

            def restore(self, folder):
                self.restored.append(folder)


        class ViewedEngine:
            """The procedural engine, with a view."""

            def __init__(self, inputs):
                self.inner = ProceduralEngine(inputs.domain, inputs.exclude)

            def generate(self, plan, context):
                return self.inner.generate(plan, context)

            def views(self):
                return [("engine.json", Note(text="engine"))]


        class NoPlan:
            def __init__(self, inputs):
                pass
    ''',
    "students.py": '''
        from collections import Counter

        from tutorkd.schema import Attempt, StudentVersion, Trained, TrainStats


        class SkillLearner:
            """Serves itself: answers a skill's problems right once it trained on ``threshold`` of them."""

            def __init__(self, inputs, threshold=5):
                assert inputs.backend is None and inputs.base_dir is None  # no model_path: no engine
                self.domain, self.threshold, self.seen = inputs.domain, threshold, Counter()
                self._version = StudentVersion(name="base", round=0)

            @property
            def version(self):
                return self._version

            def answer(self, problems, explanations=None):
                attempts = []
                for p in problems:
                    known = all(self.seen[s] >= self.threshold for s in p.skill_ids)
                    output = self.domain.completion(p, "direct") if known else "A:?"
                    parsed, correct = self.domain.check(p, output)
                    attempts.append(Attempt(problem=p, output=output, parsed_answer=parsed, correct=correct))
                return attempts

            def train(self, examples, round, init):
                self.seen.update(s for e in examples for s in e.problem.skill_ids)
                self._version = StudentVersion(name=f"r{round}", round=round)
                stats = TrainStats(examples=len(examples), steps=1, seconds=0.0, first_loss=1.0,
                                   last_loss=0.0, losses=(1.0, 0.0))
                return Trained(version=self._version, stats=stats)

            def use(self, version):
                self._version = version
    ''',
}
"""A plug-in package of one's own, ``mylab``, as a user would write it outside tutorkd."""


@pytest.fixture(scope="module")
def mylab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the ``mylab`` package (written once per module: Python caches the import)."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "mylab").mkdir()
    (root / "mylab" / "__init__.py").write_text("")
    for name, text in MYLAB.items():
        (root / "mylab" / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def on_path(mylab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mylab`` and the repository root (``examples``) importable in this process."""
    monkeypatch.syspath_prepend(str(mylab_root))
    monkeypatch.syspath_prepend(str(REPO))


def teach(*args: str, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    """``tutorkd teach`` in a fresh interpreter, with ``pythonpath`` put before the inherited one."""
    path = os.pathsep.join([*map(str, pythonpath), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", *args], capture_output=True,
                          text=True, timeout=900, cwd=cwd, env=env)


def feedback(accuracy: dict[str, float]) -> Feedback:
    return Feedback(level=StructureLevel.SKILL_LIST, round=0, errors=(), skill_accuracy=accuracy,
                    budget_used=0, budget_total=3000)


# Building: the constructor contract and which abilities are used.


def test_the_example_builds_with_its_options_and_views_and_no_restore(on_path: None) -> None:
    cfg = load_config(TeacherConfig, EXAMPLE)
    assert isinstance(cfg.policy, PluginSpec) and cfg.policy.options() == {"focus": 3, "replay_share": 0.2}
    domain = ArithmeticDomain()
    teacher = build_teacher(cfg, domain)
    assert teacher.viewers == (teacher.policy,) and teacher.restorer is None  # it defines views only
    leaves = domain.tree.leaves()
    accuracy = {s: 0.9 for s in leaves} | {"mul.by_digit": 0.1, "sub.borrow": 0.2, "add.carry": 0.3}
    plan = teacher.plan(feedback(accuracy))
    counts = {i.skill_id: i.count for i in plan.items}
    assert plan.total == 1000 and sum(counts[s] for s in ("mul.by_digit", "sub.borrow", "add.carry")) > 800
    ((name, view),) = teacher.views()
    assert name == "curriculum.json" and view.focus == ("mul.by_digit", "sub.borrow", "add.carry")


def test_a_plugin_policy_with_views_and_restore_is_stateful_and_an_engine_with_views_is_viewed(
        on_path: None, tmp_path: Path) -> None:
    cfg = TeacherConfig(name="mine", policy={"import": "mylab.teachers:StatefulPolicy", "tag": "t1"},
                        engine={"import": "mylab.teachers:ViewedEngine"}, per_round=18)
    teacher = build_teacher(cfg, ArithmeticDomain())
    assert teacher.name == "mine" and teacher.restorer is teacher.policy
    teacher.restore(tmp_path)
    assert teacher.policy.restored == [tmp_path]
    assert [name for name, _ in teacher.views()] == ["note.json", "engine.json"]
    assert teacher.plan(feedback({})).total == 18


def test_a_plugin_spec_round_trips_through_the_saved_config(on_path: None) -> None:
    cfg = RunConfig.model_validate({"teacher": str(EXAMPLE)})
    dumped = cfg.model_dump(mode="json")
    policy = {"import": "examples.curriculum_policy:CurriculumPolicy", "focus": 3, "replay_share": 0.2}
    assert dumped["teacher"]["policy"] == policy  # as written, ``import`` and all
    assert RunConfig.model_validate(yaml.safe_load(yaml.safe_dump(dumped))) == cfg


def test_a_plugin_module_in_the_current_directory_is_found(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd_policy.py").write_text("class Mine:\n    def __init__(self, inputs): ...\n"
                                             "    def plan(self, feedback): ...\n")
    # Why a copy of sys.path: loading appends the working directory to it; the test leaves it as it was.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    assert TeacherConfig(name="t", policy={"import": "cwd_policy:Mine"}).policy.load().__name__ == "Mine"


# A bad plug-in: exit 2, the field's path, one message, no traceback, nothing written.

BAD = {
    "missing module": ({"policy": {"import": "mylab.nope:CurriculumPolicy"}},
                       ["teacher.policy", "cannot import 'mylab.nope'", "PYTHONPATH"]),
    "missing class": ({"policy": {"import": "examples.curriculum_policy:Curriculum"}},
                      ["teacher.policy", "has no 'Curriculum'"]),
    "class lacking plan": ({"policy": {"import": "mylab.teachers:NoPlan"}},
                           ["teacher.policy", "does not implement Policy", "lacks plan"]),
    "unknown option": ({"policy": {"import": "examples.curriculum_policy:CurriculumPolicy", "focuss": 2}},
                       ["teacher.policy", "CurriculumPolicy(inputs, **options)", "'focuss'"]),
    "engine lacking generate": ({"policy": "uniform", "engine": {"import": "mylab.teachers:NoPlan"}},
                                ["teacher.engine", "lacks generate"]),
    "no import key": ({"policy": {"module": "mylab.teachers:NoPlan"}}, ["teacher.policy", "import"]),
    "student lacking train": ({"student": {"kind": "plugin", "import": "mylab.teachers:StatefulPolicy"}},
                              ["student", "does not implement Student", "answer, train, use"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_plugin_exits_2_naming_the_field(case: str, tmp_path: Path, mylab_root: Path) -> None:
    fields, expected = BAD[case]
    teacher = {"name": "mine", **{k: v for k, v in fields.items() if k != "student"}}
    cfg = {"teacher": teacher, "runs_root": str(tmp_path / "runs"),
           **({"student": fields["student"]} if "student" in fields else {})}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = teach(str(tmp_path / "run.yaml"), cwd=tmp_path, pythonpath=[mylab_root, REPO])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and out.count("error:") == 1, out
    for text in expected:
        assert text in out, (text, out)
    assert not (tmp_path / "runs").exists()


def test_a_bad_plugin_raises_config_error_from_the_api(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"teacher\.policy.*cannot import 'mylab_missing'"):
        tutorkd.teach({"teacher": {"name": "t", "policy": {"import": "mylab_missing:P"}},
                       "runs_root": str(tmp_path)})


# Whole runs.


def test_the_example_runs_from_tutorkd_teach(tmp_path: Path, tiny_cfg: TinyStudentConfig) -> None:
    """As its header says, with the repository root on PYTHONPATH instead of being the working
    directory; the test suite's small cached base student and one small round."""
    run = {"environment": SMALL_ENV, "student": tiny_cfg.model_dump(mode="json"),
           "runs_root": str(tmp_path / "runs")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    proc = teach(str(tmp_path / "run.yaml"), "--teacher", str(EXAMPLE), "--rounds", "1", "--backend",
                 "transformers", cwd=tmp_path, pythonpath=[REPO])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["teacher"]["policy"]["import"] == "examples.curriculum_policy:CurriculumPolicy"
    view = json.loads((run_dir / "rounds" / "r1" / "curriculum.json").read_text())
    plan = json.loads((run_dir / "rounds" / "r1" / "plan.json").read_text())
    counts = {i["skill_id"]: i["count"] for i in plan["items"]}
    others = [c for s, c in counts.items() if s not in view["focus"]]
    assert sum(counts.values()) == 60 and min(counts[s] for s in view["focus"]) > max(others)
    data = [json.loads(line) for line in (run_dir / "rounds" / "r1" / "data.jsonl").read_text().splitlines()]
    assert data and {e["provenance"]["teacher"] for e in data} == {"curriculum"}
    assert (run_dir / "adapters" / "r1" / "adapter_config.json").is_file()


def test_the_example_teaches_a_plugin_student_from_the_api(tmp_path: Path, on_path: None) -> None:
    """The example policy and a student plug-in that serves itself (no engine, no model): the skills
    the curriculum focused on are exactly the ones the student has learned after the round."""
    result = tutorkd.teach({
        "environment": SMALL_ENV,
        "teacher": {"name": "curriculum", "per_round": 60, "style": "direct",
                    "policy": {"import": "examples.curriculum_policy:CurriculumPolicy", "focus": 2}},
        "student": {"kind": "plugin", "import": "mylab.students:SkillLearner", "threshold": 10},
        "runs_root": str(tmp_path),
    })
    assert isinstance(result, tutorkd.RunResult) and [e.student.name for e in result.evaluations] == [
        "base", "r1"]
    assert set(result.base.test.skill_accuracy().values()) == {0.0}
    view = json.loads((result.run_dir / "rounds" / "r1" / "curriculum.json").read_text())
    learned = {s for s, acc in result.skill_accuracy().items() if acc == 1.0}
    assert learned == set(view["focus"]) and len(learned) == 2
    assert result.config.student.options() == {"threshold": 10}
