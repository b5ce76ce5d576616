"""The pretrained-artifact cache: where it lives, build-once under a lock (threads and processes, a
killed builder included), no half-built entries, checksums that catch a damaged entry, and spec keys
that stay those of existing cache entries. No model is trained here."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tutorkd.cache import MANIFEST_FILE, SPEC_FILE, cache_root, cached_build
from tutorkd.schema import Record


class Built(Record):
    """The record a test build returns (saved as the entry's ``SPEC_FILE``)."""

    name: str


def counting_build(calls: list[Path], name: str = "x"):
    """A build that writes one file, records the folder it was given and returns ``Built(name)``."""

    def build(out: Path) -> Built:
        calls.append(out)
        (out / "weights.bin").write_bytes(b"w")
        return Built(name=name)

    return build


def entries(root: Path) -> list[str]:
    """Names under ``root`` other than lock files (entries and any leftover temporary folders)."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock-"))


def test_cache_root_prefers_the_override_then_the_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUTORKD_CACHE", raising=False)
    assert cache_root("students") == tmp_path / "home" / ".cache" / "tutorkd" / "students"
    monkeypatch.setenv("TUTORKD_CACHE", str(tmp_path / "env"))
    assert cache_root("teachers") == tmp_path / "env" / "teachers"
    # The override is the folder itself (a config's cache_dir), with no kind appended.
    assert cache_root("teachers", "~/mine") == tmp_path / "home" / "mine"


def test_a_build_runs_once_and_its_entry_is_reused(tmp_path):
    calls: list[Path] = []
    path = cached_build(tmp_path, "k1", counting_build(calls))
    assert path == tmp_path / "k1" and len(calls) == 1
    assert calls[0].parent == tmp_path and calls[0].name.startswith(".tmp-k1-")
    assert (path / "weights.bin").read_bytes() == b"w"
    assert json.loads((path / SPEC_FILE).read_text()) == {"name": "x"}

    def must_not_build(out: Path) -> Built:
        raise AssertionError("a cached entry must not be built again")

    assert cached_build(tmp_path, "k1", must_not_build) == path
    assert entries(tmp_path) == ["k1"]


def test_a_second_builder_waits_on_the_lock_and_reuses_the_first_ones_entry(tmp_path):
    calls: list[Path] = []
    building, release = threading.Event(), threading.Event()
    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def slow_build(out: Path) -> Built:
        calls.append(out)
        building.set()
        assert release.wait(10), "the test never released the first build"
        return Built(name="first")

    def run(who: str, build) -> None:
        try:
            results[who] = cached_build(tmp_path, "k", build)
        except BaseException as e:  # Why: a thread's exception does not fail the test; the assert below does.
            errors.append(e)

    first = threading.Thread(target=run, args=("first", slow_build))
    first.start()
    assert building.wait(10)
    # flock locks belong to an open file, so a second thread's open() contends like a second process.
    second = threading.Thread(target=run, args=("second", counting_build(calls, "second")))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "the second builder must wait while the first holds the lock"
    release.set()
    first.join(10)
    second.join(10)
    assert not errors and not first.is_alive() and not second.is_alive()
    assert results == {"first": tmp_path / "k", "second": tmp_path / "k"}
    assert len(calls) == 1
    assert json.loads((tmp_path / "k" / SPEC_FILE).read_text()) == {"name": "first"}
    assert entries(tmp_path) == ["k"]


def test_a_build_that_raises_leaves_no_entry_and_a_later_call_builds_it(tmp_path):
    def failing(out: Path) -> Built:
        (out / "partial").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_build(tmp_path, "k", failing)
    assert entries(tmp_path) == []
    calls: list[Path] = []
    assert cached_build(tmp_path, "k", counting_build(calls)) == tmp_path / "k" and len(calls) == 1
    assert not (tmp_path / "k" / "partial").exists()


def test_a_folder_without_its_spec_file_is_not_an_entry(tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "weights.bin").write_bytes(b"old")
    # Why an error: the stray folder is in the way of the rename, and silently replacing it could
    # delete something that is not a cache entry.
    with pytest.raises(OSError):
        cached_build(tmp_path, "k", counting_build([]))
    assert entries(tmp_path) == ["k"]


def test_default_spec_keys_are_those_of_existing_cache_entries():
    """The keys of the default configs, pinned: a change here would orphan every cached base/teacher."""
    from tutorkd.agents.arte.char_lm_pretrain import SPEC_VERSION, TAG_CHARS, TeacherSpec
    from tutorkd.config import TeacherLMConfig, TinyStudentConfig
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.environments.heldout import Reserved
    from tutorkd.students.pretrain import make_spec

    domain = ArithmeticDomain()
    mix = domain.default_pretrain_mix
    assert make_spec(TinyStudentConfig(), domain, mix, ()).key() == "932e41ef8bf7847a"
    assert make_spec(TinyStudentConfig(), domain, mix, Reserved(1)).key() == "06124839ebaa4846"
    teacher = TeacherSpec(recipe_version=SPEC_VERSION, domain=domain.name,
                          alphabet=domain.alphabet + TAG_CHARS, config=TeacherLMConfig(),
                          reserved=Reserved(1).key)
    assert teacher.key() == "c5fe949d761f6637"


# --------------------------------------------------------------------------------------------------
# Separate processes: the lock must hold across them, and a killed builder must not block the next.

WORKER = """
import json, logging, os, sys, time
from pathlib import Path
from pydantic import BaseModel
from tutorkd.cache import cached_build

class Built(BaseModel):
    name: str

root, key, runs, sync = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
mode, processes = sys.argv[5], int(sys.argv[6])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

def build(out):
    with open(runs, "a") as f:
        f.write(f"{os.getpid()} started\\n")
    (out / "weights.bin").write_bytes(str(os.getpid()).encode() * 1000)
    if mode == "hang":
        (out / "recipe.json").write_text('{"name": "dead"}')  # looks complete; must still never be read
        time.sleep(60)
    time.sleep(2)  # Why 2 s: the other process must reach the lock meanwhile, even on a busy machine
    with open(runs, "a") as f:
        f.write(f"{os.getpid()} finished {time.time()}\\n")
    return Built(name=str(os.getpid()))

# A barrier, so that the processes ask at the same moment whatever their start-up times.
(sync / f"ready-{os.getpid()}").touch()
while len(list(sync.glob("ready-*"))) < processes:
    time.sleep(0.01)
path = cached_build(root, key, build)
print(json.dumps({"pid": os.getpid(), "path": str(path), "returned": time.time(),
                  "weights": (path / "weights.bin").read_bytes().decode()[:20]}))
"""


def start_worker(tmp_path: Path, mode: str, processes: int) -> subprocess.Popen:
    """A separate Python process that calls ``cached_build(tmp_path/cache, "k", ...)``; its build logs
    to ``tmp_path/runs.log``, writes ``weights.bin`` filled with its pid, and sleeps 2 s (60 s for
    ``mode="hang"``). ``processes`` workers wait for each other before asking."""
    (tmp_path / "sync").mkdir(exist_ok=True)
    args = [str(tmp_path / "cache"), "k", str(tmp_path / "runs.log"), str(tmp_path / "sync"), mode,
            str(processes)]
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_asking_at_once_build_once_and_share_the_entry(tmp_path):
    workers = [start_worker(tmp_path, "sleep", processes=2) for _ in range(2)]
    try:
        outputs = [w.communicate(timeout=60) for w in workers]
    finally:
        for w in workers:
            w.kill()  # Why: a hung worker must not outlive a failed test (a no-op once it has exited).
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    runs = (tmp_path / "runs.log").read_text().splitlines()
    assert len(runs) == 2, runs  # one build: started, finished
    builder, finished = runs[1].split()[0], float(runs[1].split()[2])
    assert runs[0] == f"{builder} started"
    assert {r["path"] for r in results} == {str(tmp_path / "cache" / "k")}
    assert all(r["weights"] == (builder * 20)[:20] for r in results)
    # The other one waited on the lock (it did not find the entry on its fast path) until the build ended.
    waiter = next(i for i, r in enumerate(results) if str(r["pid"]) != builder)
    assert "found in cache after waiting for another builder" in outputs[waiter][1]
    assert results[waiter]["returned"] >= finished
    assert json.loads((tmp_path / "cache" / "k" / SPEC_FILE).read_text()) == {"name": builder}
    assert entries(tmp_path / "cache") == ["k"]


def test_a_builder_killed_while_holding_the_lock_leaves_no_entry_and_the_next_caller_builds(tmp_path):
    worker = start_worker(tmp_path, "hang", processes=1)
    runs = tmp_path / "runs.log"
    deadline = time.monotonic() + 30
    try:
        while not (runs.is_file() and runs.read_text()):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never started its build"
            time.sleep(0.02)
    finally:
        worker.kill()  # SIGKILL mid-build: no cleanup runs, the half-built .tmp-* folder stays behind
        worker.communicate(timeout=10)
    assert worker.returncode == -9
    root = tmp_path / "cache"
    (leftover,) = [p for p in root.iterdir() if p.name.startswith(".tmp-k-")]
    # The kernel released the dead builder's flock: taking it now does not block.
    with open(root / ".lock-k", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    calls: list[Path] = []
    assert cached_build(root, "k", counting_build(calls)) == root / "k" and len(calls) == 1
    assert calls[0] != leftover
    assert (root / "k" / "weights.bin").read_bytes() == b"w"
    assert json.loads((root / "k" / SPEC_FILE).read_text()) == {"name": "x"}
    assert not leftover.exists()  # the dead builder's half-built folder, never read, removed by the next
    assert entries(root) == ["k"]


# --------------------------------------------------------------------------------------------------
# Checksums


WEIGHTS = bytes(range(256)) * 16


def two_file_build(calls: list[Path]):
    """A build that writes ``weights.bin`` (4 KiB) and ``sub/tokenizer.json``."""

    def build(out: Path) -> Built:
        calls.append(out)
        (out / "weights.bin").write_bytes(WEIGHTS)
        (out / "sub").mkdir()
        (out / "sub" / "tokenizer.json").write_text('{"vocab": "abc"}')
        return Built(name=f"build {len(calls)}")

    return build


def test_an_entry_lists_each_file_with_its_size_and_sha256(tmp_path):
    path = cached_build(tmp_path, "k", two_file_build([]))
    lines = sorted(line.split(" ", 2) for line in (path / MANIFEST_FILE).read_text().splitlines())
    tokenizer = b'{"vocab": "abc"}'
    assert lines == [[hashlib.sha256(tokenizer).hexdigest(), str(len(tokenizer)), "sub/tokenizer.json"],
                     [hashlib.sha256(WEIGHTS).hexdigest(), str(len(WEIGHTS)), "weights.bin"]]


def truncate(entry: Path) -> None:
    with open(entry / "weights.bin", "r+b") as f:
        f.truncate(100)


def flip_a_byte(entry: Path) -> None:
    """Same size, different content: only the sha256 can tell."""
    (entry / "weights.bin").write_bytes(b"X" + WEIGHTS[1:])


def delete(entry: Path) -> None:
    (entry / "sub" / "tokenizer.json").unlink()


@pytest.mark.parametrize(("damage", "bad_file"), [(truncate, "weights.bin"), (flip_a_byte, "weights.bin"),
                                                  (delete, "sub/tokenizer.json")])
def test_a_damaged_entry_is_detected_logged_and_rebuilt(tmp_path, caplog, damage, bad_file):
    calls: list[Path] = []
    entry = cached_build(tmp_path, "k", two_file_build(calls))
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="tutorkd.cache"):
        assert cached_build(tmp_path, "k", two_file_build(calls)) == entry
    assert len(calls) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and f"{bad_file} " in warnings[0]
    assert (entry / "weights.bin").read_bytes() == WEIGHTS
    assert (entry / "sub" / "tokenizer.json").is_file()
    assert json.loads((entry / SPEC_FILE).read_text()) == {"name": "build 2"}
    assert entries(tmp_path) == ["k"]  # the corrupt folder, moved aside, was deleted


def test_a_damaged_entry_repaired_while_waiting_for_the_lock_is_not_rebuilt_again(tmp_path, caplog):
    """The check is repeated under the lock: another process may have repaired the entry meanwhile."""
    calls: list[Path] = []
    entry = cached_build(tmp_path, "k", two_file_build(calls))
    truncate(entry)
    done = threading.Event()
    with open(tmp_path / ".lock-k", "w") as lock, caplog.at_level(logging.WARNING, logger="tutorkd.cache"):
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a repairing process would
        waiter = threading.Thread(target=lambda: (cached_build(tmp_path, "k", two_file_build(calls)),
                                                  done.set()), daemon=True)
        waiter.start()
        assert not done.wait(0.3), "a damaged entry must not be returned"
        (entry / "weights.bin").write_bytes(WEIGHTS)
    waiter.join(10)
    assert done.is_set() and len(calls) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_entry_without_a_manifest_predates_checksums_and_is_used_as_is(tmp_path, caplog):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "weights.bin").write_bytes(b"old")
    (tmp_path / "k" / SPEC_FILE).write_text('{"name": "old"}')

    def must_not_build(out: Path) -> Built:
        raise AssertionError("an entry without a manifest must be used as it is")

    with caplog.at_level(logging.DEBUG, logger="tutorkd.cache"):
        assert cached_build(tmp_path, "k", must_not_build) == tmp_path / "k"
    assert any("cannot be verified" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [SPEC_FILE, "weights.bin"]


def test_a_build_leaves_the_temporary_folders_of_keys_that_share_its_prefix(tmp_path):
    root = tmp_path / "cache"
    other = root / ".tmp-k-2-abcd1234"  # key "k-2" being built by another process right now
    other.mkdir(parents=True)
    calls: list[Path] = []
    cached_build(root, "k", counting_build(calls))
    assert other.is_dir() and entries(root) == [other.name, "k"]
