"""LoRA training as its own process group (``tutorkd.students.distributed``): two CPU ranks through
``accelerate launch`` train the same adapter as one process at the same global batch, a crashed rank
fails the training cleanly, and the configs that ask for GPUs are checked against the visible ones."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tutorkd.config import BackendConfig, ConfigError, HFStudentConfig, TinyStudentConfig
from tutorkd.config.student import check_devices
from tutorkd.students.distributed import accelerate_config
from tutorkd.students.lora import train_lora
from tutorkd.students.lora_worker import FAIL_RANK_ENV


@pytest.fixture(scope="module")
def pairs(domain) -> list[tuple[str, str]]:
    """32 direct-answer pairs of one skill: 2 steps an epoch at the tests' batch of 16."""
    problems = domain.sample("sub.borrow", 32, random.Random(7))
    return [(domain.prompt(p), domain.completion(p, "direct")) for p in problems]


def leftovers(folder: Path) -> list[str]:
    """Staging folders left in ``folder`` (a half-written adapter would be one)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def processes_mentioning(text: str) -> list[int]:
    """Ids of the live processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_two_processes_train_the_adapter_one_process_trains(tiny_base, tiny_cfg, pairs, tmp_path) -> None:
    one = train_lora(tiny_base, pairs, tmp_path / "one", tiny_cfg, seed=3)
    launch = tmp_path / "launch"
    two = train_lora(tiny_base, pairs, tmp_path / "two", tiny_cfg.model_copy(update={"train_processes": 2}),
                     seed=3, launch_dir=launch)

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())  # no tokenizer or trainer files in the adapter
    assert two.steps == one.steps == 6 and len(two.losses) == 6  # 32 pairs / batch 16, 3 epochs
    assert all(math.isfinite(x) for x in two.losses) and two.last_loss < two.first_loss
    # Same global batch, same data order, token-averaged loss: the same training, up to float sums.
    assert two.losses == pytest.approx(one.losses, rel=1e-3)
    config = yaml.safe_load((launch / "accelerate.yaml").read_text())
    assert config["distributed_type"] == "MULTI_GPU" and config["use_cpu"] and config["num_processes"] == 2
    steps = [json.loads(line) for line in (launch / "steps.jsonl").read_text().splitlines()]
    assert steps[0] == {"max_steps": 6} and [s["loss"] for s in steps[1:]] == list(two.losses)
    assert (launch / "train.log").is_file()
    assert not (launch / "job.json").exists() and leftovers(tmp_path) == []
    assert processes_mentioning(str(launch)) == []


@pytest.mark.slow
def test_a_crashed_rank_fails_the_training_with_no_adapter(tiny_base, tiny_cfg, pairs, tmp_path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv(FAIL_RANK_ENV, "1")
    launch = tmp_path / "launch"
    with pytest.raises(RuntimeError, match="failed .*launcher exit code") as failure:
        train_lora(tiny_base, pairs, tmp_path / "r1", tiny_cfg.model_copy(update={"train_processes": 2}),
                   seed=0, launch_dir=launch)
    assert str(launch / "train.log") in str(failure.value)
    assert "rank 1 fails on purpose" in (launch / "train.log").read_text()
    assert not (tmp_path / "r1").exists() and leftovers(tmp_path) == []
    assert (launch / "job.json").exists()  # kept, to look into
    assert processes_mentioning(str(launch)) == []  # rank 0, blocked in an all-reduce, was stopped too


def test_the_global_batch_must_split_over_the_processes() -> None:
    assert TinyStudentConfig(train_processes=4).batch_size == 64
    with pytest.raises(ValueError, match="batch_size 64 does not split over train_processes 3"):
        TinyStudentConfig(train_processes=3)
    with pytest.raises(ValueError, match="deepspeed_zero needs GPUs"):
        HFStudentConfig(model="m", device="cpu", deepspeed_zero=2)


def test_accelerate_configs_for_cpu_gpu_and_deepspeed() -> None:
    cpu = accelerate_config(2, "cpu", None)
    assert (cpu["distributed_type"], cpu["use_cpu"], cpu["mixed_precision"]) == ("MULTI_GPU", True, "no")
    gpu = accelerate_config(4, "cuda", None)
    assert (gpu["distributed_type"], gpu["use_cpu"], gpu["mixed_precision"]) == ("MULTI_GPU", False, "bf16")
    zero = accelerate_config(2, "cuda", 3)
    assert zero["distributed_type"] == "DEEPSPEED" and zero["deepspeed_config"]["zero_stage"] == 3
    with pytest.raises(ValueError, match="GPUs only"):
        accelerate_config(2, "cpu", 2)


@pytest.mark.parametrize(("student", "backend", "visible", "error"), [
    (TinyStudentConfig(train_processes=2), BackendConfig(), 0, None),  # the tiny student trains on the CPU
    (HFStudentConfig(model="m", train_processes=2), BackendConfig(), 0, None),  # auto without GPUs: CPU
    (HFStudentConfig(model="m", train_processes=2), BackendConfig(), 1, "student.train_processes: 2 needs 2"),
    (HFStudentConfig(model="m", device="cuda", train_processes=2), BackendConfig(), 2, None),
    (HFStudentConfig(model="m", deepspeed_zero=2), BackendConfig(), 0, "deepspeed_zero: 2 needs 1 GPU,"),
    (TinyStudentConfig(), BackendConfig(kind="openai", tensor_parallel_size=2, data_parallel_size=2), 2,
     "backend.tensor_parallel_size: 2 x backend.data_parallel_size: 2 needs 4 GPUs, but torch sees 2"),
    (TinyStudentConfig(), BackendConfig(kind="openai", tensor_parallel_size=2), 2, None),
    (TinyStudentConfig(), BackendConfig(tensor_parallel_size=2), 0,  # the in-process engine's own
     "backend.tensor_parallel_size: 2 x backend.data_parallel_size: 1 needs 2 GPUs, but torch sees 0"),
    (TinyStudentConfig(), BackendConfig(tensor_parallel_size=2), 2, None),
])
def test_gpus_asked_for_are_checked_against_the_visible_ones(student, backend, visible, error,
                                                             monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(visible))))
    if error is None:
        check_devices(student, backend)
    else:
        with pytest.raises(ConfigError, match=error.replace("(", r"\(")) as failure:
            check_devices(student, backend)
        assert "CUDA_VISIBLE_DEVICES=" in str(failure.value)


@pytest.mark.slow
def test_a_run_whose_training_rank_crashed_resumes(tmp_path, monkeypatch) -> None:
    """The loop's train node fails on the crash, with no adapter; the run resumes and trains the round."""
    from tutorkd.config import RunConfig
    from tutorkd.lifecycle import start_run, teach_run

    student = {"hidden_size": 32, "layers": 1, "heads": 2, "pretrain_steps": 40, "pretrain_batch": 8,
               "epochs": 1, "batch_size": 8, "lora_rank": 8, "lora_alpha": 16, "cache_dir": str(tmp_path),
               "train_processes": 2}
    cfg = RunConfig.model_validate({
        "environment": {"test_per_skill": 10, "val_per_skill": 10, "budget": 18, "rounds": 1},
        "teacher": {"name": "uniform", "policy": "uniform", "per_round": 18},
        "student": student, "backend": {"kind": "transformers"}, "runs_root": str(tmp_path / "runs")})
    run_dir = start_run(cfg)
    monkeypatch.setenv(FAIL_RANK_ENV, "0")
    with pytest.raises(RuntimeError, match="rank 0 fails on purpose"):
        teach_run(cfg, run_dir, resume=False)
    assert not (run_dir / "adapters" / "r1").exists() and leftovers(run_dir / "adapters") == []
    monkeypatch.delenv(FAIL_RANK_ENV)
    teach_run(cfg, run_dir, resume=True)
    assert (run_dir / "adapters" / "r1" / "adapter_model.safetensors").is_file()
    assert (run_dir / "train" / "r1" / "accelerate.yaml").is_file()


KILLED_PARENT = """
import json, sys
from pathlib import Path
from tutorkd.config import TinyStudentConfig
from tutorkd.students.lora import train_lora
base, cfg, pairs, out, launch = sys.argv[1:]
train_lora(base, json.loads(Path(pairs).read_text()), Path(out), TinyStudentConfig.model_validate_json(cfg),
           launch_dir=Path(launch))
"""


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["loop", "launcher"])
def test_a_killed_loop_or_launcher_takes_the_ranks_with_it(killed, tiny_base, tiny_cfg, pairs,
                                                            tmp_path) -> None:
    """SIGKILL (no clean-up runs) of the loop's process stops the launcher and so the ranks; SIGKILL of the
    launcher (torchrun's agent) stops the ranks, which sit in sessions of their own."""
    # 1000 steps, minutes: a group left running would still be training when the check below ends.
    cfg = tiny_cfg.model_copy(update={"train_processes": 2, "epochs": 500})
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    launch = tmp_path / "launch"
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(tiny_base), cfg.model_dump_json(),
                               str(tmp_path / "pairs.json"), str(tmp_path / "r1"), str(launch)],
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (launch / "steps.jsonl").exists():
        assert parent.poll() is None and time.monotonic() < deadline, "the training never started"
        time.sleep(0.5)
    if killed == "loop":
        parent.kill()
    else:
        (launcher,) = processes_mentioning(str(launch / "accelerate.yaml"))
        os.kill(launcher, signal.SIGKILL)
    assert parent.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while processes_mentioning(str(launch)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(launch)) == []
    assert not (tmp_path / "r1").exists()


@pytest.mark.parametrize(("fields", "error"), [
    ({"kind": "vllm", "data_parallel_size": 2}, "no data parallelism; set kind: openai"),
    ({"kind": "transformers", "tensor_parallel_size": 2}, "shards a vLLM engine"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:8000/v1", "tensor_parallel_size": 2},
     "apply to a server tutorkd starts itself"),
])
def test_parallel_fields_where_no_engine_can_use_them_fail_with_the_fix(fields, error) -> None:
    with pytest.raises(ValueError, match=error):
        BackendConfig(**fields)


def test_the_in_process_engine_gets_tensor_parallel_size_only_above_one(monkeypatch, tmp_path) -> None:
    import vllm

    from tutorkd.llm.vllm_backend import VLLMBackend

    seen: list[dict] = []

    class Stop(Exception):
        pass

    def fake_llm(**kwargs):
        seen.append(kwargs)
        raise Stop  # Why: the arguments are the point; no engine is started

    monkeypatch.setattr(vllm, "LLM", fake_llm)
    for size in (1, 2):
        with pytest.raises(Stop):
            VLLMBackend(tmp_path, max_lora_rank=8, tensor_parallel_size=size)
    assert "tensor_parallel_size" not in seen[0] and seen[1]["tensor_parallel_size"] == 2

