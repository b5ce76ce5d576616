"""Engine processes do not outlive the process that started them: ``tutorkd.llm.orphans``.

A parent process (a separate Python) starts children and guards them, then is SIGKILLed alone (never
its process group): the watchdog must kill the guarded children, and must leave them alone when the
parent released them. The last test does it with a real vLLM engine core in a child process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tutorkd.llm.orphans import descendants

PARENT = """
import subprocess, sys, time
from tutorkd.llm.orphans import Guard
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
guard = Guard([child.pid], "a sleeper")
if sys.argv[1] == "release":
    guard.release()
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def start_parent(mode: str) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def test_a_guarded_child_dies_with_its_parent_killed_alone() -> None:
    parent, child = start_parent("guard")
    assert alive(child)
    os.kill(parent.pid, signal.SIGKILL)  # the parent alone: the child is not in the signal's reach
    parent.wait()
    assert wait_dead(child), "the guarded child outlived its parent"


def test_a_released_child_is_left_alone() -> None:
    parent, child = start_parent("release")
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        time.sleep(1.0)  # what a watchdog would need to act
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


ENGINE = """
import os, sys
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
from tutorkd.llm.vllm_backend import VLLMBackend
backend = VLLMBackend(sys.argv[1], max_lora_rank=8)
print("ready", flush=True)
import time; time.sleep(300)
"""


@pytest.mark.slow
@pytest.mark.vllm
def test_a_vllm_engine_core_in_a_child_process_dies_with_the_loop(tiny_base: Path) -> None:
    pytest.importorskip("vllm")
    proc = subprocess.Popen([sys.executable, "-c", ENGINE, str(tiny_base)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # vLLM logs to stdout before it
            if line.strip() == "ready":
                break
        engine = descendants(proc.pid)
        assert engine, "no engine process: VLLM_ENABLE_V1_MULTIPROCESSING=1 should start one"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = [pid for pid in engine if not wait_dead(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert left == [], f"engine processes outlived the loop: {left}"
