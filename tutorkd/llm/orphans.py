"""Engine processes that must not outlive the process that started them.

vLLM's engine core, run as a child process (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, which a second
in-process engine needs), waits on its client's socket and does not notice the client's death: a tutorkd
process SIGKILLed alone (not its whole process group: the OOM killer, a kill of one pid) left the engine
core, its worker and multiprocessing's resource tracker running, orphaned, holding the cores and memory
(measured: still there 650 s later, until killed by hand; ``benchmarks/reliability.py
--vllm-multiprocessing``).

``Guard(pids)`` starts a watchdog process holding the read end of a pipe whose write end only this
process has (the descriptor is not inheritable, and the watchdog is started by exec). When this process
dies, however it dies, the pipe reports end of file and the watchdog SIGKILLs the guarded processes,
each only if it is still the same process (its start time in ``/proc`` unchanged), then exits;
``release()`` (the engine's normal close) tells it to exit without killing. Linux only (``/proc``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_WATCHDOG = r"""
import os, signal, sys

def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]

fd, targets, said = int(sys.argv[1]), [a.split(":") for a in sys.argv[2:]], b""
while chunk := os.read(fd, 64):
    said += chunk
if b"release" not in said:  # the process that started the engine died without closing it
    for pid, started in targets:
        try:
            if start_time(pid) == started:
                os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass  # it is gone already
"""


def start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22): with
    the pid it names one process, even after the pid is reused."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int | None = None) -> set[int]:
    """The live descendants of ``pid`` (this process by default), from ``/proc``."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):  # ended while we looked
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


class Guard:
    """A watchdog that SIGKILLs ``pids`` when this process dies without calling ``release``."""

    def __init__(self, pids: Iterable[int], what: str) -> None:
        targets = []
        for pid in sorted(pids):
            try:
                targets.append(f"{pid}:{start_time(pid)}")
            except FileNotFoundError:
                continue  # already gone: nothing to guard
        read, self._write = os.pipe()  # both non-inheritable; the watchdog gets ``read`` explicitly
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(read), *targets],
                                         pass_fds=(read,), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(read)
        log.info("guarding %s (pids %s) against outliving pid %d: watchdog pid %d", what,
                 " ".join(t.split(":")[0] for t in targets), os.getpid(), self.proc.pid)

    def release(self) -> None:
        """This process is closing the guarded processes itself: the watchdog exits without killing."""
        if self._write < 0:
            return
        os.write(self._write, b"release")
        os.close(self._write)
        self._write = -1
        self.proc.wait()
