"""Run the ``tutorkd`` CLI, SIGKILLing itself inside one loop node: in the middle of its nth file write.

For ``benchmarks/reliability.py``: plan, generate and verify take milliseconds, too short to hit with
a kill timed from outside. ``TUTORKD_KILL_AT=NODE:ROUND:N`` makes this process write half of the Nth
atomic write of that node into the temporary file the write would rename, then SIGKILL itself before
the rename (the torn write a crash leaves behind). A node with fewer writes dies as it returns, after
all its writes and before langgraph checkpoints it.

    TUTORKD_KILL_AT=verify:2:3 python benchmarks/kill_at_write.py teach run.yaml
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import tutorkd.io
import tutorkd.loop
from tutorkd.cli import main

TARGET: tuple[str, int] = ("", 0)
NTH = 0
current: dict = {"node": None, "writes": 0}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


real_write = tutorkd.io.atomic_write_text


def torn_write(path: str | Path, text: str) -> None:
    """``atomic_write_text``, except that the target write stops halfway and the process dies."""
    if current["node"] == TARGET:
        current["writes"] += 1
        if current["writes"] == NTH:
            path = Path(path)
            fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.write(fd, text[: len(text) // 2].encode())
            os.fsync(fd)
            print(f"kill_at_write: torn write of {path.name}", flush=True)
            die()
    real_write(path, text)


def watched(name: str):
    real = getattr(tutorkd.loop.TeachingLoop, f"_{name}")

    def run(self, state):
        k = state.round if name in ("evaluate", "finish") else state.round + 1
        current["node"], current["writes"] = (name, k), 0
        out = real(self, state)
        if current["node"] == TARGET:  # fewer than NTH writes: die after its work, before its checkpoint
            print("kill_at_write: after the node's last write", flush=True)
            die()
        current["node"] = None
        return out

    return run


# Why guarded: a vLLM engine core started as a spawned child process (VLLM_ENABLE_V1_MULTIPROCESSING=1)
# imports this file again as ``__mp_main__``; it must neither read the popped variable nor run the CLI.
if __name__ == "__main__":
    node, round_, nth = os.environ.pop("TUTORKD_KILL_AT").split(":")
    TARGET, NTH = (node, int(round_)), int(nth)
    # Why both: write_json/write_jsonl look atomic_write_text up in tutorkd.io; the loop imported its own.
    tutorkd.io.atomic_write_text = tutorkd.loop.atomic_write_text = torn_write
    for name in ("evaluate", "plan", "generate", "verify", "train", "finish"):
        setattr(tutorkd.loop.TeachingLoop, f"_{name}", watched(name))
    sys.argv = ["tutorkd", *sys.argv[1:]]
    main()
