"""``tutorkd sweep``: a 2 teachers x 2 seeds grid on a local Ray instance (the tiny test student, the
transformers backend, one small round per run). Marked ``slow``: about 4 minutes on 2 cores.

One uninterrupted sweep is shared by the module: it runs to the end, and a second invocation of the same
sweep does no work at all. Another sweep's driver is SIGKILLed (its whole process group) once a run has
finished and the next has started; no process of it may survive, and rerunning resumes the unfinished
runs and skips the finished one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tutorkd.config import ConfigError, SweepConfig, load_config

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
TEACHERS = ["uniform", "open-ended"]
SEEDS = [0, 1]
NAMES = [f"arithmetic-skill_tree-{t}-tiny-s{s}" for t in TEACHERS for s in SEEDS]


def write_sweep(root: Path, student: dict) -> Path:
    """A 2 x 2 sweep small enough for a test: 10 val/10 test problems per skill, one round of 30
    examples, one LoRA epoch, a run per CPU core."""
    spec = {
        "base": {"environment": {"kind": "arithmetic", "level": "skill_tree", "test_per_skill": 10,
                                 "val_per_skill": 10, "budget": 30, "rounds": 1},
                 "student": {**student, "epochs": 1}, "backend": {"kind": "transformers"}},
        "teachers": [str(REPO / "agents" / f"{t}.yaml") for t in TEACHERS],
        "seeds": SEEDS,
        "resources": {"num_cpus": 1},
        "sweep_root": str(root / "sweep"),
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "tutorkd.cli", "sweep", str(spec)]


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its (mtime in ns, size)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lines_by_status(out: str, names: list[str] = NAMES) -> dict[str, set[str]]:
    """The sweep's progress lines (``<status> <run name> ...``) as status -> run names."""
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] in names:
            found.setdefault(words[0], set()).add(words[1])
    return found


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_cfg,
          tiny_base) -> tuple[Path, subprocess.CompletedProcess]:
    """(sweep YAML, the finished ``tutorkd sweep`` process) of one uninterrupted sweep."""
    spec = write_sweep(tmp_path_factory.mktemp("sweep"), tiny_cfg.model_dump(mode="json"))
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(sweep_command(spec), capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    return spec, proc


@pytest.mark.slow
def test_a_sweep_runs_every_grid_point_to_the_end_on_local_ray(sweep) -> None:
    spec, proc = sweep
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    by_status = lines_by_status(out)
    assert by_status.get("started") == set(NAMES) and by_status.get("finished") == set(NAMES), out
    root = Path(load_config(SweepConfig, spec).sweep_root)
    from tutorkd.scale.sweep import run_finished

    for name in NAMES:
        run_dir = root / name
        assert run_finished(run_dir), name
        evaluated = [(run_dir / "rounds" / f"r{k}" / "eval.json").is_file() for k in (0, 1, 2)]
        assert evaluated == [True, True, False], name
        assert "=== exit code 0" in (run_dir / "sweep.log").read_text()
    cmp = json.loads((root / "compare.json").read_text())
    assert sorted(t["teacher"] for t in cmp["teachers"]) == sorted(TEACHERS)
    assert [list(t["seeds"]) for t in cmp["teachers"]] == [SEEDS, SEEDS]
    assert cmp["pairs"] and "<html" in (root / "report.html").read_text()[:500].lower()


@pytest.mark.slow
def test_a_second_invocation_does_no_work(sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, proc = sweep
    assert proc.returncode == 0
    cfg = load_config(SweepConfig, spec)
    root = Path(cfg.sweep_root)
    before = {name: files(root / name) for name in NAMES}
    import tutorkd.scale.sweep as sweep_module

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started although every run had finished")

    monkeypatch.setattr(sweep_module, "_start_ray", no_ray)
    events = []
    result = sweep_module.run_sweep(cfg, on_event=events.append)
    assert [p.status for p in result.points] == ["skipped"] * 4
    assert [(e.name, e.what) for e in events] == [(name, "skipped") for name in NAMES]
    assert result.failed == () and result.ran == ()
    assert {name: files(root / name) for name in NAMES} == before
    assert result.outputs == (root / "compare.json", root / "report.html")


def session_members(sid: int) -> list[str]:
    """Live processes (zombies aside) of the session ``sid``: a killed driver's Ray instance, workers and
    runs all stay in the session it started (Ray gives workers process groups of their own)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state, _ppid, _pgid, session = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:4]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue  # it ended while we looked
        if int(session) == sid and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_sweep_driver_then_rerunning_resumes_the_unfinished_runs(
        tmp_path: Path, tiny_cfg, tiny_base) -> None:
    spec = write_sweep(tmp_path, tiny_cfg.model_dump(mode="json"))
    root = Path(load_config(SweepConfig, spec).sweep_root)
    env = {**os.environ, "COLUMNS": "200"}
    driver = subprocess.Popen(sweep_command(spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=REPO, env=env, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(driver.stdout, lines), daemon=True).start()
    out, finished, started_after = [], set(), set()
    deadline = time.monotonic() + 600
    try:
        while not started_after and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                break
            out.append(line)
            words = line.split()
            if len(words) >= 2 and words[0] == "finished":
                finished.add(words[1])
            elif len(words) >= 2 and words[0] == "started" and finished:
                started_after.add(words[1])
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver's group: it, its Ray instance, its runs
        driver.wait()
    assert finished and started_after, "".join(out)

    deadline = time.monotonic() + 30
    while (alive := session_members(driver.pid)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not alive, alive  # every worker and run died with the driver: none holds a run's lock

    rerun = subprocess.run(sweep_command(spec), capture_output=True, text=True, timeout=900, cwd=REPO,
                           env=env)
    again = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, again
    by_status = lines_by_status(again)
    assert finished <= by_status.get("skipped", set()), again
    assert started_after <= by_status.get("resumed", set()), again  # its folder was made before the kill
    assert set().union(*by_status.values()) == set(NAMES) and "failed" not in by_status, again
    from tutorkd.scale.sweep import run_finished

    assert all(run_finished(root / name) for name in NAMES)
    assert (root / "compare.json").is_file() and (root / "report.html").is_file()


BROKEN_POLICY = """
class BrokenPolicy:
    def __init__(self, inputs):
        raise RuntimeError("this policy cannot be built")

    def plan(self, feedback):
        raise NotImplementedError
"""


@pytest.mark.slow
def test_a_failed_run_is_listed_with_its_log_and_the_others_finish(tmp_path: Path, tiny_cfg,
                                                                    tiny_base) -> None:
    (tmp_path / "broken_policy.py").write_text(BROKEN_POLICY)
    spec = write_sweep(tmp_path, tiny_cfg.model_dump(mode="json"))
    cfg = yaml.safe_load(spec.read_text())
    cfg["teachers"] = [cfg["teachers"][0],
                       {"name": "broken", "policy": {"import": "broken_policy:BrokenPolicy"}}]
    cfg["seeds"] = [0]
    spec.write_text(yaml.safe_dump(cfg))
    # Why PYTHONPATH: the plug-in is imported by the driver, when the config loads, and by each run.
    env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(sweep_command(spec), capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    name = "arithmetic-skill_tree-broken-tiny-s0"
    broken = Path(cfg["sweep_root"]) / name
    assert f"failed: {name}: tutorkd teach --resume {broken}: exit code 1" in out
    assert f"log: {broken / 'sweep.log'}" in out
    assert "RuntimeError: this policy cannot be built" in (broken / "sweep.log").read_text()
    by_status = lines_by_status(out, [NAMES[0], name])
    assert (by_status["finished"], by_status["failed"]) == ({NAMES[0]}, {name}), out
    assert (Path(cfg["sweep_root"]) / "compare.json").is_file(), out  # over the finished run


BAD_SWEEPS = [
    # (YAML text, what the error must say)
    ("teachers: [uniform]\nresources: {num_gpu: 1}\n", "resources.num_gpu: unknown field; did you mean"),
    ("teachers: [uniform]\nbase: {environment: {levle: x}}\n", "base.environment.levle: unknown field"),
    ("teachers: [uniform]\nseeds: [zero]\n", "seeds.0: Input should be a valid integer"),
    ("teachers: [uniform]\nseeds: [1, 1]\n", "seeds: Value error, a seed is listed twice"),
    ("teachers: [uniform, agents/nope.yaml]\n", "teachers.1: Value error, spec file 'agents/nope"),
    ("teachers: [uniform, uniform]\n", "teachers: Value error, two teacher specs share a name"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SWEEPS, ids=[e.split(":")[0] for _, e in BAD_SWEEPS])
def test_a_bad_sweep_config_exits_2_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid config"):
        load_config(SweepConfig, path)
    env = {**os.environ, "COLUMNS": "300"}  # one message per line
    proc = subprocess.run(sweep_command(path), capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and expected in out and "Traceback" not in out, out
