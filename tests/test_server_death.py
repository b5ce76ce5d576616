"""A student's server that dies mid-request: the client retries with backoff, a restarted server is
picked up, and a run whose server stays dead stops with its resume command and resumes to the same
result once the server is back.

The server is ``fake_openai_server.py`` in its own process, SIGKILLed by itself on its Nth completion
request (requests in flight, as a crash leaves them); ``benchmarks/server_faults.py`` does the same to a
real ``vllm serve``. The comparison with an uninterrupted run is ``benchmarks/reliability.py``'s.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tutorkd.protocols import SamplingConfig

openai = pytest.importorskip("openai")

from tutorkd.llm.openai_backend import OpenAIBackend  # noqa: E402  (needs openai)
from tutorkd.llm.vllm_server import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).parent / "fake_openai_server.py"
_spec = importlib.util.spec_from_file_location("reliability", REPO / "benchmarks" / "reliability.py")
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)
sys.path.insert(0, str(SERVER.parent))
from fake_openai_server import reply_text  # noqa: E402


def start(port: int, *args: str) -> subprocess.Popen:
    """A fake server process on ``port``, returned once it listens."""
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port), *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_server_killed_mid_request_is_retried_and_a_restarted_one_answers() -> None:
    port = free_port()
    first = start(port, "--die-at", "1")
    servers = [first]

    def restart() -> None:  # what a supervisor (or the user) does: bring the server back on its port
        first.wait()
        time.sleep(0.2)
        servers.append(start(port))

    thread = threading.Thread(target=restart)
    thread.start()
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "base", max_retries=4, timeout_s=5.0,
                            concurrency=1)
    try:
        [completion] = backend.generate(["12+34="], SamplingConfig(max_tokens=4))
    finally:
        thread.join()
        for proc in servers:
            stop(proc)
    assert first.returncode == -signal.SIGKILL  # it died with the request in flight
    assert completion.text == reply_text("12+34=") and completion.failure is None


def test_a_server_that_stays_dead_raises_for_a_student_and_is_counted_for_a_teacher() -> None:
    port = free_port()
    server = start(port, "--die-at", "1")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        student = OpenAIBackend(url, "base", max_retries=2, timeout_s=5.0, concurrency=1)
        started = time.monotonic()
        with pytest.raises(openai.APIConnectionError):
            student.generate(["12+34="], SamplingConfig(max_tokens=4))
        waited = time.monotonic() - started
        teacher = OpenAIBackend(url, "base", max_retries=2, timeout_s=5.0, concurrency=1, on_failure="count")
        [completion] = teacher.generate(["12+34="], SamplingConfig(max_tokens=4))
    finally:
        stop(server)
    assert waited > 0.5  # it backed off before giving up (2 retries: at least ~0.7 s of delays)
    assert completion.failure == "connection" and completion.text == ""
    assert teacher.faults == {"connection": 1}


def run_config(root: Path, student: dict, url: str) -> Path:
    """A one-round run (30 examples, 10 val and 10 test problems per skill) served by ``url``."""
    cfg = reliability.common.run_config(
        env="arithmetic-tree", teacher="uniform", seed=0, runs_root=root / "runs",
        environment={"test_per_skill": 10, "val_per_skill": 10, "budget": 30, "rounds": 1},
        teacher_fields={"per_round": 30}, student=student,
        # Why 1 retry (default 5): the run stops as soon, to the assertions, and the test waits less
        backend={"kind": "openai", "base_url": url, "max_retries": 1})
    root.mkdir(parents=True)
    (root / "run.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return root / "run.yaml"


def teach(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "400"})


@pytest.mark.slow
def test_a_run_whose_server_dies_in_evaluation_stops_with_its_resume_command_and_resumes(
        tmp_path: Path, tiny_cfg, tiny_base) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    student = tiny_cfg.model_copy(update={"epochs": 1}).model_dump(mode="json")
    server = start(port)
    try:
        assert teach(str(run_config(tmp_path / "ref", student, url))).returncode == 0
    finally:
        stop(server)
    ref_dir = reliability.only_run(tmp_path / "ref")
    # The base evaluation sends 180 requests (90 validation, 90 test); the 200th is in round 1's.
    server = start(port, "--die-at", "200", "--requests", str(tmp_path / "requests.log"))
    try:
        stopped = teach(str(run_config(tmp_path / "kill", student, url)))
    finally:
        stop(server)
    run_dir = reliability.only_run(tmp_path / "kill")
    assert server.returncode == -signal.SIGKILL
    assert stopped.returncode != 0
    assert f"continue it with: tutorkd teach --resume {run_dir}" in stopped.stdout.replace("\n", "")
    assert reliability.pending(run_dir) == ("evaluate", 1)
    assert not (run_dir / "rounds" / "r1" / "eval.json").exists()
    assert reliability.stray_temp_files(run_dir) == []
    server = start(port)
    try:
        resumed = teach("--resume", str(run_dir))
    finally:
        stop(server)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    result = reliability.compare(ref_dir, run_dir)
    assert (result["examples"], result["lost"], result["duplicated"]) == (30, 0, 0), result
    assert result["identical"], result["differing_files"]
