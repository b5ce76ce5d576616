"""Bad user input to ``tutorkd teach``: one clear message, exit code 2, no traceback, nothing written.

Each case runs the real CLI in a fresh interpreter. "Nothing written" means no run directory appears
(and, for a resume, the run directory is byte-for-byte unchanged).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tutorkd.config import ConfigError, RunConfig
from tutorkd.rundir import lock_run, new_run_dir, save_config

TINY = {"pretrain_steps": 5, "pretrain_batch": 4}
"""A student that is never built: every case here fails before any model is loaded."""


def teach(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "300"}  # one message per line, however long the path
    return subprocess.run(
        [sys.executable, "-m", "tutorkd.cli", "teach", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def assert_user_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    assert out.count("error:") == 1, out
    for text in expected:
        assert text in out, (text, out)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_config(tmp_path: Path, **fields: object) -> Path:
    cfg = {"student": TINY, "runs_root": str(tmp_path / "runs"), **fields}
    return write(tmp_path / "run.yaml", yaml.safe_dump(cfg))


def missing_student_model(t: Path) -> Path:
    return run_config(t, student={"kind": "hf", "model_path": str(t / "no-model")})


def missing_teacher_model(t: Path) -> Path:
    llm = {"model": str(t / "no-teacher"), "backend": "transformers"}
    return run_config(t, teacher={"name": "t", "policy": "skill_list_llm", "llm": llm})


CASES = {
    "invalid yaml": (
        lambda t: write(t / "run.yaml", "environment: {rounds: 2\nseed: [\n"),
        ["invalid YAML", "line"],
    ),
    "unknown field": (
        lambda t: run_config(t, seeed=3),
        ["seeed: unknown field; did you mean seed? (see tutorkd config show teach)"],
    ),
    "nested unknown field": (
        lambda t: run_config(t, environment={"budgett": 3}),
        ["environment.budgett: unknown field; did you mean budget? "
         "(see tutorkd config show teach --section environment)"],
    ),
    "wrong type": (lambda t: run_config(t, seed="three"), ["seed", "integer"]),
    "wrong nested type": (lambda t: run_config(t, environment={"rounds": [2]}), ["environment.rounds"]),
    "not a mapping": (lambda t: write(t / "run.yaml", "- just\n- a list\n"), ["expected a mapping"]),
    "missing spec file": (lambda t: run_config(t, teacher="agents/nope.yaml"), ["teacher", "does not exist"]),
    "missing student model": (missing_student_model, ["student.model_path", "huggingface-cli download"]),
    "missing teacher model": (missing_teacher_model, ["teacher.llm.model", "no-teacher"]),
    "runs root under a file": (
        lambda t: run_config(t, runs_root=str(write(t / "file", "x") / "runs")),
        ["runs_root", "cannot create"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path: Path, case: str) -> None:
    make, expected = CASES[case]
    cfg = make(tmp_path)
    before = snapshot(tmp_path)
    assert_user_error(teach(str(cfg), cwd=tmp_path), *expected)
    assert snapshot(tmp_path) == before


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    assert_user_error(teach(str(tmp_path / "missing.yaml"), cwd=tmp_path), "missing.yaml", "no such file")
    assert list(tmp_path.iterdir()) == []


def test_a_config_error_found_while_building_removes_the_new_run_directory(tmp_path: Path) -> None:
    # A local dataset file that does not exist is found only when the domain is built, after the run
    # directory was made; the run never started, so its folder is removed again.
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        write(model / name, "{}")
    cfg = run_config(
        tmp_path,
        student={"kind": "hf", "model_path": str(model)},
        environment={
            "kind": "gsm8k",
            "train_file": str(tmp_path / "train.jsonl"),
            "test_file": str(tmp_path / "test.jsonl"),
        },
    )
    assert_user_error(teach(str(cfg), cwd=tmp_path))
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("args", [["--seed", "7"], ["--rounds", "9"], ["CONFIG"]])
def test_a_resume_with_another_config_is_refused_and_changes_nothing(tmp_path: Path, args: list[str]) -> None:
    cfg = RunConfig.model_validate({"student": TINY, "runs_root": str(tmp_path / "runs")})
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir)
    write(run_dir / "metrics.jsonl", '{"round": 0}\n')
    other = run_config(tmp_path, seed=5)
    before = snapshot(run_dir)
    args = [str(other) if a == "CONFIG" else a for a in args]
    assert_user_error(teach("--resume", str(run_dir), *args, cwd=tmp_path), "differs")
    assert snapshot(run_dir) == before


def test_a_second_process_on_a_running_run_is_refused(tmp_path: Path) -> None:
    cfg = RunConfig.model_validate({"student": TINY, "runs_root": str(tmp_path / "runs")})
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir)
    held = lock_run(run_dir)  # this test process plays the run that is still going
    try:
        before = snapshot(run_dir)
        assert_user_error(teach("--resume", str(run_dir), cwd=tmp_path), "another tutorkd process")
        assert snapshot(run_dir) == before
    finally:
        held.close()
    with pytest.raises(ConfigError):  # and in-process, while held
        with lock_run(run_dir):
            lock_run(run_dir)


@pytest.mark.parametrize("target", ["missing", "not a run"])
def test_a_resume_of_something_that_is_not_a_run_exits_2(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "folder"
    if target == "not a run":
        folder.mkdir()
    assert_user_error(teach("--resume", str(folder), cwd=tmp_path), "not a tutorkd run directory")


def test_a_run_directory_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RunConfig.model_validate({"student": TINY, "runs_root": str(tmp_path / "runs")})
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")  # all in the same second
    dirs = [new_run_dir(cfg) for _ in range(3)]
    assert [d.name for d in dirs] == [
        "20260101-000000-uniform-s0",
        "20260101-000000-uniform-s0-2",
        "20260101-000000-uniform-s0-3",
    ]
    # Another process taking the next name between our look and our mkdir: we move on, never share it.
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name.endswith("-s0-4"):
            real_mkdir(self)  # the other process wins this name
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    assert new_run_dir(cfg).name == "20260101-000000-uniform-s0-5"


def test_an_unwritable_runs_root_is_a_config_error(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "x")
    cfg = RunConfig.model_validate({"student": TINY, "runs_root": str(blocker / "runs")})
    with pytest.raises(ConfigError, match="runs_root"):
        new_run_dir(cfg)


def test_a_flag_overrides_one_field_of_a_spec_given_as_a_path(tmp_path: Path) -> None:
    """``--env SPEC --rounds N`` (and a run config naming a spec file) keep the spec and change one field."""
    from tutorkd.cli import resolve_config

    spec = write(tmp_path / "env.yaml", "kind: arithmetic\nlevel: open_ended\nrounds: 3\nbudget: 900\n")
    cfg = resolve_config(None, spec, None, {"environment.rounds": 1, "seed": 4})
    assert (cfg.environment.level.value, cfg.environment.rounds, cfg.environment.budget, cfg.seed) == (
        "open_ended", 1, 900, 4)
    named = run_config(tmp_path, environment=str(spec))
    assert resolve_config(named, None, None, {"environment.rounds": 2}).environment.rounds == 2


def test_a_missing_env_spec_with_a_flag_exits_2(tmp_path: Path) -> None:
    proc = teach("--env", "nope.yaml", "--rounds", "1", cwd=tmp_path)
    assert_user_error(proc, "environment", "does not exist")
    assert not (tmp_path / "runs").exists()
