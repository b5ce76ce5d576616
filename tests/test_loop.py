"""End-to-end teaching loops through the real CLI: transformers and vLLM backends, config errors.

Kills and resumes are ``tests/test_reliability.py``'s: SIGKILLs at three points (setup, training in
round 1, a half-written file in round 2) and in the window between a node's saved writes and the next
checkpoint, each resumed run compared file by file with an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tutorkd.config import TinyStudentConfig
from tutorkd.evals.plots import load_round_evals
from tutorkd.io import read_jsonl
from tutorkd.schema import Example

REPO = Path(__file__).resolve().parents[1]


def small_run_config(tmp_path: Path, student: TinyStudentConfig, backend: str, rounds: int = 2,
                     seed: int = 0) -> Path:
    """A run config small enough for a test: tiny eval sets, the shared test base student, two rounds."""
    cfg = {
        "environment": {"level": "skill_tree", "test_per_skill": 20, "val_per_skill": 10, "budget": 240,
                        "rounds": rounds},
        "teacher": {"name": "uniform", "policy": "uniform", "per_round": 120},
        "student": student.model_dump(mode="json"),
        "backend": {"kind": backend},
        "seed": seed,
        "runs_root": str(tmp_path / "runs"),
    }
    path = tmp_path / f"run-{backend}-{seed}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def tutorkd(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "tutorkd.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def only_run(tmp_path: Path) -> Path:
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def example_ids(run_dir: Path) -> list[str]:
    return [e.id for path in sorted(run_dir.glob("rounds/r*/data.jsonl")) for e in read_jsonl(path, Example)]


def check_finished_run(run_dir: Path, rounds: int) -> None:
    """Everything the run directory promises is there and consistent."""
    evals = load_round_evals(run_dir)
    assert [e.student.name for e in evals] == ["base"] + [f"r{k}" for k in range(1, rounds + 1)]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == list(range(rounds + 1))
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000
    for k in range(1, rounds + 1):
        assert (run_dir / "adapters" / f"r{k}" / "adapter_config.json").exists()
        assert (run_dir / "rounds" / f"r{k}" / "dataset" / "dataset_info.json").exists()
        data = read_jsonl(run_dir / "rounds" / f"r{k}" / "data.jsonl", Example)
        assert data and all(e.provenance.round == k and e.provenance.verification.passed for e in data)
    ids = example_ids(run_dir)
    assert len(ids) == len(set(ids)) == 240


@pytest.mark.slow
def test_two_round_loop_transformers(tmp_path, tiny_cfg, tiny_base):
    """Slow tier: the default run's CLI run on the transformers backend is ``tests/test_reliability.py``'s
    reference run (two rounds, the same checks of rounds and examples, compared with resumed runs)."""
    cfg = small_run_config(tmp_path, tiny_cfg, "transformers")
    proc = tutorkd("teach", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(tmp_path)
    check_finished_run(run_dir, rounds=2)
    assert "before" in proc.stdout and "after" in proc.stdout and str(run_dir.name) in proc.stdout


@pytest.mark.vllm
def test_two_round_loop_vllm(tmp_path, tiny_cfg, tiny_base):
    cfg = small_run_config(tmp_path, tiny_cfg, "vllm")
    proc = tutorkd("teach", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(tmp_path)
    check_finished_run(run_dir, rounds=2)
    assert "before" in proc.stdout and "after" in proc.stdout and str(run_dir.name) in proc.stdout
    # A clean run leaves no traceback in its log (vLLM's chat-template warmup probe used to leave two).
    assert "Traceback" not in (run_dir / "run.log").read_text()


def test_bad_config_exits_2_with_field_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("environment:\n  level: sideways\n  budgett: 3\nteacher: agents/nope.yaml\n")
    proc = tutorkd("teach", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "environment.level" in out and "environment.budgett" in out and "teacher" in out


@pytest.mark.parametrize(("spec", "flag"), [("environments/gsm8k-qwen.yaml", "--env"),
                                             ("agents/tom.yaml", "--teacher")])
def test_a_spec_given_as_run_config_names_the_flag(tmp_path, spec, flag):
    proc = tutorkd("teach", str(REPO / spec), "--runs-root", str(tmp_path / "runs"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert flag in " ".join(out.split()) and not (tmp_path / "runs").exists()


def test_missing_config_and_bad_resume_exit_2(tmp_path):
    for args in (["teach", str(tmp_path / "missing.yaml")], ["teach", "--resume", str(tmp_path)]):
        proc = tutorkd(*args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def test_resume_with_different_config_is_refused(tmp_path, tiny_cfg, tiny_base):
    run_dir = tmp_path / "runs" / "some-run"
    run_dir.mkdir(parents=True)
    cfg = small_run_config(tmp_path, tiny_cfg, "transformers")
    from tutorkd.cli import resolve_config
    from tutorkd.rundir import save_config

    save_config(resolve_config(cfg, None, None, {}), run_dir)
    proc = tutorkd("teach", "--resume", str(run_dir), "--seed", "7")
    assert proc.returncode == 2
    assert "differs" in proc.stdout + proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"], "nothing may be written"
