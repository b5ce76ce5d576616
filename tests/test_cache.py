"""The pretrained-artifact cache: where it lives, build-once under a lock, no half-built entries, and
spec keys that stay those of existing cache entries. No model is trained here."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tutorkd.cache import SPEC_FILE, cache_root, cached_build
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
