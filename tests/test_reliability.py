"""Reliability of a teaching run: kills, full disks and out-of-memory leave it resumable, bit-identical.

One uninterrupted reference run (the real CLI, transformers backend, the tiny test student) is shared
by the module. Every interrupted run below uses the same config and seed and must end identical to it:
the same rounds, example ids, counts, data files, adapter weights and evaluations (the comparison is
``benchmarks/reliability.py``'s ``compare``; its full version kills the CLI at two dozen points).
The SIGKILL tests and the second uninterrupted run are in the ``slow`` tier (``make test-slow``; CI runs
it): each takes several fresh CLI processes, half a minute to a minute on two cores.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tutorkd.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reliability", REPO / "benchmarks" / "reliability.py")
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_cfg, tiny_base) -> tuple[Path, Path, dict]:
    """(config file, run directory, node timeline) of one uninterrupted two-round run (60 examples a
    round, one LoRA epoch)."""
    root = tmp_path_factory.mktemp("reference")
    cfg = reliability.write_config(root, tiny_cfg.model_copy(update={"epochs": 1}).model_dump(mode="json"))
    run_dir, timeline, _ = reliability.reference(cfg)
    return cfg, run_dir, timeline


def assert_identical(ref_dir: Path, run_dir: Path) -> None:
    result = reliability.compare(ref_dir, run_dir)
    assert result["same_rounds"] and result["rounds"] == ["base", "r1", "r2"], result
    assert (result["lost"], result["extra"], result["duplicated"]) == (0, 0, 0), result
    assert result["examples"] == 120 and result["differing_files"] == [], result
    assert result["max_metric_diff"] == 0.0, result
    assert result["stray_temp_files"] == [], result  # what torn writes left, the resume removed


@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_matches_the_uninterrupted_run(reference, tmp_path: Path) -> None:
    cfg_path, ref_dir, timeline = reference
    cfg = reliability.write_config(tmp_path, yaml.safe_load(cfg_path.read_text())["student"])
    # From outside during setup (before the first checkpoint) and mid-training in round 1, then from
    # inside, halfway through round 2's second verify write (data.jsonl); each resumed process is the
    # one killed next.
    targets = [{"slot": ("setup", 0), "share": 0.5}, {"slot": ("train", 1), "share": 0.5},
               {"slot": ("verify", 2), "nth": 2}]
    run_dir, kills = reliability.interrupted_run(cfg, timeline, targets)
    assert [k["hit"]["node"] for k in kills] == ["setup", "train", "verify"], kills
    assert any(name.startswith("rounds/r2/.data.jsonl.") for name in kills[2]["temp_files_left"]), kills
    assert_identical(ref_dir, run_dir)


# --------------------------------------------------------------------------------------------------
# Resource faults: a full disk while saving a dataset or an adapter, out of memory while training


def _enospc(*_: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def dataset_save_fails(m: pytest.MonkeyPatch) -> None:
    from datasets import Dataset

    def save_to_disk(self, path: str, *args: object, **kwargs: object) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"\0" * 1000)  # half written
        raise _enospc()

    m.setattr(Dataset, "save_to_disk", save_to_disk)


def adapter_save_fails(m: pytest.MonkeyPatch) -> None:
    from peft import PeftModel

    def save_pretrained(self, save_directory: str, *args: object, **kwargs: object) -> None:
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        (Path(save_directory) / "adapter_config.json").write_text('{"r": 8, ')  # half written
        raise _enospc()

    m.setattr(PeftModel, "save_pretrained", save_pretrained)


def data_file_write_fails(m: pytest.MonkeyPatch) -> None:
    import tutorkd.io

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if "/rounds/r2/.data.jsonl." in os.readlink(f"/proc/self/fd/{fd}"):
            raise _enospc()
        real_fsync(fd)

    m.setattr(tutorkd.io.os, "fsync", fsync)


def training_runs_out_of_memory(m: pytest.MonkeyPatch) -> None:
    import torch
    from trl import SFTTrainer

    def train(self, *args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    m.setattr(SFTTrainer, "train", train)


def nothing_half_written_looks_finished(run_dir: Path, fault: str) -> None:
    """After ``fault``, the step's last output is missing and no temporary file is left to be read."""
    r1, r2, adapters = run_dir / "rounds" / "r1", run_dir / "rounds" / "r2", run_dir / "adapters"
    if fault == "dataset_save_fails":
        assert not (r1 / "dataset").exists() and not (r1 / "verify.json").exists()
    elif fault == "adapter_save_fails":
        assert not (adapters / "r1").exists() and not (r1 / "train_stats.json").exists()
        assert not list(adapters.glob(".tmp-*"))
    elif fault == "data_file_write_fails":
        assert not (r2 / "data.jsonl").exists() and not list(r2.glob(".*.tmp"))
    else:
        assert not (adapters / "r2").exists() and not (r2 / "train_stats.json").exists()


def test_full_disk_and_out_of_memory_leave_the_run_resumable(
    reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tutorkd.lifecycle import start_run, teach_run

    cfg_path, ref_dir, _ = reference
    fields = yaml.safe_load(cfg_path.read_text())
    cfg = RunConfig.model_validate({**fields, "runs_root": str(tmp_path / "runs")})
    run_dir = start_run(cfg)
    # Each fault hits the run where the previous resume left it: round 1's dataset, round 1's adapter,
    # round 2's data file, round 2's training.
    faults = [dataset_save_fails, adapter_save_fails, data_file_write_fails, training_runs_out_of_memory]
    for i, install in enumerate(faults):
        with monkeypatch.context() as m:
            install(m)
            with pytest.raises((OSError, RuntimeError)) as raised:
                teach_run(cfg, run_dir, resume=i > 0)
        if install is training_runs_out_of_memory:
            assert "out of memory" in str(raised.value)
        else:
            assert isinstance(raised.value, OSError) and raised.value.errno == errno.ENOSPC
        nothing_half_written_looks_finished(run_dir, install.__name__)
    teach_run(cfg, run_dir, resume=True)  # the fault is gone: resume as a new process would
    assert_identical(ref_dir, run_dir)


DIE_AFTER_SAVED_WRITES = """
import os, signal, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from tutorkd.cli import main

real_put_writes = SqliteSaver.put_writes

def put_writes(self, config, writes, task_id, task_path=""):
    real_put_writes(self, config, writes, task_id, task_path)
    if any(channel == "branch:to:verify" for channel, _ in writes):  # generate's writes are on disk
        os.kill(os.getpid(), signal.SIGKILL)

SqliteSaver.put_writes = put_writes
sys.argv = ["tutorkd", "teach", sys.argv[1]]
main()
"""


@pytest.mark.slow
def test_a_kill_after_a_nodes_writes_were_saved_but_before_the_next_checkpoint_resumes(
    reference, tmp_path: Path
) -> None:
    """langgraph saves a finished node's writes, then the next checkpoint. Killed in between, the saved
    state has no ``next`` node but a finished task: the resume must apply its writes and go on, not take
    the run for finished (it did: ``tests/test_loop.py``'s timed kill once hit this window)."""
    cfg_path, ref_dir, _ = reference
    cfg = reliability.write_config(tmp_path, yaml.safe_load(cfg_path.read_text())["student"])
    killed = subprocess.run([sys.executable, "-c", DIE_AFTER_SAVED_WRITES, str(cfg)], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    run_dir = reliability.only_run(tmp_path)
    r1 = run_dir / "rounds" / "r1"
    assert (r1 / "generated.jsonl").exists() and not (r1 / "data.jsonl").exists()
    resumed = subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", "--resume", str(run_dir)],
                             capture_output=True, text=True, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(ref_dir, run_dir)


# --------------------------------------------------------------------------------------------------
# Determinism across processes

DETERMINISM_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, "tests")
from pathlib import Path
from feedbacks import feedback
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import TeacherConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.protocols import GenerationContext
from tutorkd.verify import verify

domain = ArithmeticDomain()
heldout = HeldOut.build(domain, 20, 10, 1234)
digests = {"heldout": hashlib.sha256(heldout.model_dump_json().encode()).hexdigest()}
fb = feedback(domain, {"add.carry": 0.2, "sub.borrow": 0.5, "mul.by_digit": 0.0, "cmp.lead": 0.7})
# Every teacher that needs neither a teacher LLM nor a live student to plan.
for name in ("uniform", "open-ended", "skill-list", "skill-tree", "stat-sel", "stat-syn", "tpd",
             "tpd-examples"):
    cfg = load_config(TeacherConfig, Path("agents") / f"{name}.yaml")
    stat = cfg.stat.model_copy(update={"pool_per_skill": 60})
    cfg = cfg.model_copy(update={"per_round": 150, "stat": stat})
    teacher = build_teacher(cfg, domain, exclude=heldout.reserved)
    plan = teacher.plan(fb)
    examples = teacher.generate(plan, GenerationContext(run_id="det", round=1, teacher=cfg.name, seed=3))
    kept = verify(examples, domain, heldout.questions).kept
    text = plan.model_dump_json() + "".join(e.model_dump_json() for e in kept)
    digests[name] = [len(kept), hashlib.sha256(text.encode()).hexdigest()]
print("DIGESTS " + json.dumps(digests))
"""


def test_same_config_and_seed_give_the_same_eval_sets_and_data_in_every_process() -> None:
    runs = []
    for hash_seed in ("1", "2"):  # set iteration order differs between these two interpreters
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (line,) = [x for x in done.stdout.splitlines() if x.startswith("DIGESTS ")]
        runs.append(json.loads(line.removeprefix("DIGESTS ")))
    assert runs[0] == runs[1]
    teachers = {k: v for k, v in runs[0].items() if k != "heldout"}
    assert len(teachers) == 8 and all(n > 0 for n, _ in teachers.values()), teachers


@pytest.mark.slow
def test_two_uninterrupted_runs_write_the_same_files(reference, tmp_path: Path) -> None:
    """Same config and seed, another process: the same eval sets, datasets, adapters and evaluations.
    Slow tier (a second whole run); the default run checks the eval sets and data across processes (the
    test above), and a run resumed after four faults against the reference (the full-disk test)."""
    cfg_path, ref_dir, _ = reference
    cfg = reliability.write_config(tmp_path, yaml.safe_load(cfg_path.read_text())["student"])
    run_dir, _, _ = reliability.reference(cfg)
    assert_identical(ref_dir, run_dir)
    same = {hashlib.sha256((d / "heldout.json").read_bytes()).hexdigest() for d in (ref_dir, run_dir)}
    assert len(same) == 1


# --------------------------------------------------------------------------------------------------
# Processes a killed run leaves behind


def test_leftovers_finds_the_children_a_killed_process_left_even_outside_its_session() -> None:
    """The harness's count of processes a kill left alive (an engine core outliving its run): a child in
    the killed process's session, and one that left it with ``setsid``, found by the inherited tag alone."""
    import time

    harness = sys.modules["teach_harness"]  # the module reliability.py imported from benchmarks/
    tag = f"test-{os.getpid()}-{time.time_ns()}"
    parent = subprocess.Popen(["sh", "-c", "sleep 67 & setsid sleep 68 & wait"], start_new_session=True,
                              env={**os.environ, harness.TAG: tag})
    deadline = time.monotonic() + 10
    while len(harness.descendants(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(parent.pid, 9)  # the parent alone, as a kill inside a write does: its children live on
    parent.wait()
    # No descendants given: "sleep 68", in a session of its own, is found by the tag alone.
    left = harness.leftovers(parent.pid, tag, grace=0.2)
    assert sorted(p["cmdline"] for p in left) == ["sleep 67", "sleep 68"], left
    assert harness.leftovers(parent.pid, tag, grace=5) == []  # and both were killed (zombies do not count)
