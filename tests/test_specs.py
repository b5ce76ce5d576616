"""Every shipped YAML spec validates, and a bad spec fails with a message naming the field path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from tutorkd.config import (
    ENV_SPEC,
    ArithmeticEnvConfig,
    Config,
    ConfigError,
    RunConfig,
    TeacherConfig,
    load_config,
)
from tutorkd.evals.suite import EvalConfig

REPO = Path(__file__).resolve().parents[1]

SPEC_MODELS: dict[str, type[Config] | TypeAdapter] = {
    "agents": TeacherConfig,
    "environments": ENV_SPEC,
    "evals": EvalConfig,
}
"""Spec folder to the config model its files must validate as."""

SPEC_FOLDERS = ("agents", "environments", "evals")
SPECS = sorted(p for folder in SPEC_FOLDERS for p in (REPO / folder).glob("**/*.y*ml"))


def test_the_baseline_specs_exist() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SPECS}
    assert {
        "agents/uniform.yaml",
        "agents/open-ended.yaml",
        "environments/arithmetic-open.yaml",
        "environments/arithmetic-list.yaml",
        "environments/arithmetic-tree.yaml",
    } <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.relative_to(REPO).as_posix() for p in SPECS])
def test_every_spec_validates_and_says_how_to_run_it(path: Path) -> None:
    folder = path.relative_to(REPO).parts[0]
    assert folder in SPEC_MODELS, f"{path}: add the config model for {folder}/ to SPEC_MODELS"
    load_config(SPEC_MODELS[folder], path)
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and "tutorkd " in header, (
        f"{path}: start with a comment saying how to run it"
    )


def test_environment_specs_cover_every_structure_level() -> None:
    levels = {
        load_config(ENV_SPEC, p).level.value
        for p in SPECS
        if p.relative_to(REPO).parts[0] == "environments"
    }
    assert levels == {"open_ended", "skill_list", "skill_tree"}


def test_a_run_config_can_name_spec_files() -> None:
    run = RunConfig.model_validate(
        {
            "environment": str(REPO / "environments/arithmetic-open.yaml"),
            "teacher": str(REPO / "agents/open-ended.yaml"),
        }
    )
    assert run.environment.level.value == "open_ended"
    assert run.teacher.policy == "error_driven"


BAD_SPECS = [
    # (model, YAML text, substrings the error must contain)
    (TeacherConfig, "name: u\npolicy: uniform\nper_rounds: 10\n", ["per_rounds", "unknown field"]),
    (TeacherConfig, "name: u\npolicy: uniform\nper_round: lots\n", ["per_round", "integer"]),
    (TeacherConfig, "name: u\npolicy: random\n", ["policy", "'random'"]),
    (TeacherConfig, "name: u\npolicy: uniform\nstyle: verbose\n", ["style", "'verbose'"]),
    (TeacherConfig, "policy: uniform\n", ["name", "Field required"]),
    (ArithmeticEnvConfig, "level: skill_forest\n", ["level", "skill_forest"]),
    (ArithmeticEnvConfig, "budget: 0\n", ["budget", "greater than or equal to 1"]),
    (RunConfig, "teacher:\n  name: u\n  policy: uniform\n  per_round: -3\n", ["teacher.per_round"]),
    (RunConfig, "environment:\n  levle: open_ended\n", ["environment.levle", "unknown field"]),
    (RunConfig, "teacher: agents/does-not-exist.yaml\n", ["teacher", "does not exist"]),
    (TeacherConfig, "- name: u\n", ["expected a mapping"]),
    (TeacherConfig, "name: [u\n", ["invalid YAML"]),
]


@pytest.mark.parametrize(("model", "text", "expected"), BAD_SPECS)
def test_a_bad_spec_names_the_field(
    tmp_path: Path, model: type[Config], text: str, expected: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(model, path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message
