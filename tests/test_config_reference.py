"""``tutorkd config show``/``schema`` and the did-you-mean hint of an unknown field.

The shown YAML is checked by loading it back: a reference that parses to the defaults cannot drift
from the models it is generated from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from tutorkd.cli import app
from tutorkd.config import (
    ENV_SPEC,
    ConfigError,
    DatasetEnvConfig,
    GenerateConfig,
    HFStudentConfig,
    RunConfig,
    TeacherConfig,
    TinyStudentConfig,
    load_config,
)
from tutorkd.evals.suite import EvalConfig


def config(*args: str) -> str:
    """Stdout of ``tutorkd config ARGS``, which must succeed."""
    result = CliRunner().invoke(app, ["config", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def comment_text(text: str) -> str:
    """The ``#`` comments of ``text`` as one line of words (wrapping undone)."""
    words = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    return " ".join(" ".join(words).split())


def test_show_teach_is_a_config_that_reproduces_the_default_run() -> None:
    shown = config("show")
    assert shown == config("show", "teach")
    assert RunConfig.model_validate(yaml.safe_load(shown)) == RunConfig()


def test_show_documents_every_field_with_its_type() -> None:
    docs = comment_text(shown := config("show"))

    def check(value: BaseModel) -> None:
        """Every field of ``value`` and of the configs it holds (the shown kind of a union)."""
        for name, field in type(value).model_fields.items():
            assert f"{name}:" in shown, name
            if field.description:
                assert " ".join(field.description.replace("``", "`").split()) in docs, (value, name)
            if isinstance(sub := getattr(value, name), BaseModel):
                check(sub)

    check(RunConfig())
    assert "  budget: 3000  # int, >= 1\n" in shown
    assert "  level: skill_tree  # open_ended | skill_list | skill_tree\n" in shown
    assert "  llm: null  # mapping | null; its fields: tutorkd config show teach --section teacher.llm\n" \
        in shown


def test_unions_show_the_default_kind_and_say_where_the_others_are() -> None:
    shown = config("show")
    assert "# Kinds: arithmetic (the default, shown), gsm8k, math" in shown  # then any kinds added later
    assert "#   tutorkd config show teach --section environment.gsm8k" in shown
    assert "# Kinds: tiny (the default, shown), hf" in shown
    assert "check_workers" not in shown  # a gsm8k/math field: shown only in its own section

    gsm8k = yaml.safe_load(config("show", "--section", "environment.gsm8k"))
    assert DatasetEnvConfig.model_validate(gsm8k["environment"]) == DatasetEnvConfig(kind="gsm8k")
    hf = config("show", "teach", "--section", "student.hf")
    assert "  model: null  # str | null\n" in hf
    data = yaml.safe_load(hf)["student"] | {"model": "smollm2-135m-instruct"}
    assert HFStudentConfig.model_validate(data) == HFStudentConfig(model="smollm2-135m-instruct")


def test_section_student_prints_only_that_part() -> None:
    shown = config("show", "teach", "--section", "student")
    data = yaml.safe_load(shown)
    assert list(data) == ["student"]
    assert TinyStudentConfig.model_validate(data["student"]) == TinyStudentConfig()
    assert not {"budget:", "teacher:", "backend:", "seed:"} & set(shown.split())

    stat = yaml.safe_load(config("show", "--section", "teacher.stat"))
    assert stat == {"teacher": {"stat": RunConfig().teacher.stat.model_dump(mode="json")}}


@pytest.mark.parametrize(("model", "command", "required"), [
    (GenerateConfig, "generate", {"name": "my-data", "method": "stat_syn"}),
    (EvalConfig, "eval", {"name": "my-suite"}),
])
def test_required_fields_are_commented_out_and_the_rest_are_the_defaults(
    model: type[BaseModel], command: str, required: dict
) -> None:
    shown = config("show", command)
    assert "\n# name: <str>  # required\n" in shown
    if command == "generate":
        assert "\n# method: <stat_syn | arte | persyn>  # required\n" in shown
    assert model.model_validate(yaml.safe_load(shown) | required) == model(**required)


def test_a_wrong_section_exits_2_with_the_closest_name() -> None:
    result = CliRunner().invoke(app, ["config", "show", "--section", "studnet"])
    assert result.exit_code == 2 and "did you mean student?" in result.output
    result = CliRunner().invoke(app, ["config", "show", "--section", "environment.budget"])
    assert result.exit_code == 2 and "is a field, not a section" in result.output


@pytest.mark.parametrize(("command", "model"), [
    ("teach", RunConfig), ("generate", GenerateConfig), ("eval", EvalConfig),
])
def test_schema_is_json_with_the_models_properties(
    tmp_path: Path, command: str, model: type[BaseModel]
) -> None:
    schema = json.loads(config("schema", command))
    assert schema["type"] == "object" and set(schema["properties"]) == set(model.model_fields)
    out = tmp_path / "schema.json"
    CliRunner().invoke(app, ["config", "schema", command, "--out", str(out)])
    assert json.loads(out.read_text()) == schema


def test_the_schema_accepts_the_shown_defaults_and_spec_paths() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(config("schema"))
    shown = yaml.safe_load(config("show"))
    jsonschema.validate(shown, schema)
    jsonschema.validate({**shown, "teacher": "agents/uniform.yaml"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**shown, "seeed": 1}, schema)


HINTS = [
    # (model, YAML, the message's end); SEE is the start of the command the hint names
    (RunConfig, "environment:\n  budgte: 3\n",
     "environment.budgte: unknown field; did you mean budget? (SEE teach --section environment)"),
    (RunConfig, "environment: {kind: gsm8k, budgte: 3}\nstudent: {kind: hf, model_path: m}\n",
     "did you mean budget? (SEE teach --section environment.gsm8k)"),
    (RunConfig, "teacher: {name: u, policy: uniform, stat: {kk: 1}}\n",
     "teacher.stat.kk: unknown field; did you mean k? (SEE teach --section teacher.stat)"),
    (RunConfig, "xyzzy: 1\n", "xyzzy: unknown field; remove it or check its spelling (SEE teach)"),
    (TeacherConfig, "name: u\npolicy: uniform\nper_rounds: 10\n",
     "per_rounds: unknown field; did you mean per_round? (SEE teach --section teacher)"),
    (ENV_SPEC, "kind: math\nrouns: 2\n", "did you mean rounds? (SEE teach --section environment.math)"),
    (GenerateConfig, "name: x\nmethod: arte\narte: {rationale: 4}\n",
     "arte.rationale: unknown field; did you mean rationales? (SEE generate --section arte)"),
    (EvalConfig, "name: x\nsplit: [val]\n", "split: unknown field; did you mean splits? (SEE eval)"),
]


@pytest.mark.parametrize(("model", "text", "expected"), HINTS)
def test_an_unknown_field_gets_the_closest_name_and_its_section(
    tmp_path: Path, model: object, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(model, path)
    assert expected.replace("SEE", "see tutorkd config show") in str(info.value)
    section = expected.rsplit("SEE ", 1)[1].rstrip(")").split()
    assert config("show", *section)  # the section the hint names exists


def test_a_misspelled_field_in_a_config_file_gets_the_hint_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("environment:\n  budgte: 300\n")
    proc = subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", str(path)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "300"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert ("environment.budgte: unknown field; did you mean budget? "
            "(see tutorkd config show teach --section environment)") in out
    assert not (tmp_path / "runs").exists()
