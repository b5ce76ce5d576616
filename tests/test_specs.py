"""Every shipped YAML spec validates and says how to run it, a bad spec fails with a message naming the
field path, and every config field's docstring is its pydantic description."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest
from pydantic import TypeAdapter

from tutorkd.config import (
    ENV_SPEC,
    ArithmeticEnvConfig,
    Config,
    ConfigError,
    GenerateConfig,
    RunConfig,
    SweepConfig,
    TeacherConfig,
    load_config,
)
from tutorkd.evals.suite import EvalConfig

REPO = Path(__file__).resolve().parents[1]


class SpecFolder(NamedTuple):
    """What the specs in one folder are: the model each validates as, and the command its header comment
    shows (``{path}`` stands for the spec's own path)."""

    model: type[Config] | TypeAdapter
    command: str


SPEC_FOLDERS: dict[str, SpecFolder] = {
    "agents": SpecFolder(TeacherConfig, "tutorkd teach"),
    "environments": SpecFolder(ENV_SPEC, "tutorkd teach"),
    "evals": SpecFolder(EvalConfig, "tutorkd eval {path}"),
    "examples": SpecFolder(TeacherConfig, "tutorkd teach --teacher {path}"),
    "generate": SpecFolder(GenerateConfig, "tutorkd generate {path}"),
    "recipes": SpecFolder(RunConfig, "tutorkd teach {path}"),
    "sweeps": SpecFolder(SweepConfig, "tutorkd sweep {path}"),
}
"""Every folder at the repository root with YAML specs in it (specs lie directly in their folder)."""


def yaml_files(folder: Path) -> list[Path]:
    """The YAML files directly in ``folder``, sorted."""
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


SPECS = [p for folder in SPEC_FOLDERS for p in yaml_files(REPO / folder)]


def test_every_root_folder_of_specs_has_a_model() -> None:
    # Why: a spec folder missing here would ship specs that no test ever loads.
    uncovered = [
        d.name for d in sorted(REPO.iterdir())
        if d.is_dir() and not d.name.startswith(".") and d.name not in SPEC_FOLDERS and yaml_files(d)
    ]
    assert not uncovered, f"YAML specs in {uncovered}: add each folder and its config model to SPEC_FOLDERS"


def test_every_spec_folder_has_specs() -> None:
    # Why: a renamed folder would otherwise leave its entry validating nothing.
    assert [f for f in SPEC_FOLDERS if not yaml_files(REPO / f)] == []


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
def test_every_spec_validates_and_says_how_to_run_it(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Why chdir: specs name other specs by their path from the repository root, where tutorkd is run.
    monkeypatch.chdir(REPO)
    rel = path.relative_to(REPO).as_posix()
    folder = SPEC_FOLDERS[path.parent.name]
    load_config(folder.model, path)
    header = path.read_text().split("\n\n")[0]
    command = folder.command.format(path=rel)
    assert header.startswith("#") and command in header, (
        f"{rel}: start with a comment saying how to run it ({command} ...)"
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


def config_classes() -> list[type[Config]]:
    """Every config class tutorkd defines (among the modules imported), subclasses of subclasses too."""
    found: list[type[Config]] = []
    todo: list[type[Config]] = [Config]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("tutorkd.") and sub not in found:
                found.append(sub)
                todo.append(sub)
    return found


@pytest.mark.parametrize("cls", config_classes(), ids=lambda cls: cls.__name__)
def test_every_field_docstring_is_its_description(cls: type[Config]) -> None:
    # Why: a field of a shared type (tutorkd.config.fields) takes the type's description, and pydantic
    # silently drops a docstring written under it.
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for field, doc in zip(body, body[1:], strict=False):
        if not (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)):
            continue
        text = doc.value.value if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) else None
        if isinstance(text, str):
            name = field.target.id
            assert cls.model_fields[name].description == inspect.cleandoc(text), (
                f"{cls.__name__}.{name}: its docstring is not its description; a field of a shared type "
                "takes the type's: put the text there, or in a comment if it holds for this config only"
            )
