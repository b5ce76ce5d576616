"""The Python API: the README's example runs as written, and the API's config handling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tutorkd
from tutorkd.config import ConfigError, RunConfig, TinyStudentConfig

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The Python block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_readme_example_runs(tiny_cfg: TinyStudentConfig, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Executed as written, from the repository root (its spec paths are relative to it). Only the
    student (the test suite's small cached base instead of the default one) and where runs go differ."""
    teach = tutorkd.teach

    def small(config: dict) -> tutorkd.RunResult:
        return teach({**config, "student": tiny_cfg.model_dump(mode="json"), "runs_root": str(tmp_path)})

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(tutorkd, "teach", small)
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    (run_dir,) = list(tmp_path.iterdir())
    result = tutorkd.load_run(run_dir)
    assert printed[0] == f"{run_dir} {result.test_accuracy()}"
    assert [e.student.name for e in result.evaluations] == ["base", "r1"]
    assert result.config.teacher.name == "skill-tree" and result.config.backend.kind == "transformers"
    assert printed[1] == str(result.skill_accuracy())
    assert set(result.skill_accuracy()) == set(result.base.test.skill_accuracy())


def test_a_bad_config_raises_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"environment\.budgte"):
        tutorkd.teach({"environment": {"budgte": 10}})
    with pytest.raises(ConfigError, match="expected a RunConfig"):
        tutorkd.teach(42)  # type: ignore[arg-type]


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a tutorkd run directory"):
        tutorkd.load_run(tmp_path)


def test_a_config_instance_and_its_yaml_path_are_the_same_config(tmp_path: Path) -> None:
    import yaml

    from tutorkd.api import _validated

    spec = str(REPO / "agents" / "stat-syn.yaml")
    cfg = RunConfig.model_validate({"environment": {"rounds": 1}, "teacher": spec})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert _validated(RunConfig, path, "config") == cfg == _validated(RunConfig, cfg, "config")
