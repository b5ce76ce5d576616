"""A ``tutorkd teach`` child process to watch, kill and resume, and the comparison of two run directories.

The machinery of ``reliability.py`` (and of ``tests/test_reliability.py`` through it): ``Teach`` starts
the CLI in its own process group and timestamps the loop events it prints; ``node_timeline`` says when
each node of a finished run ran; ``pending`` reads from a killed run's checkpoint the node it was in;
``compare`` lists how a resumed run differs from an uninterrupted one, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

NODES = {"setup": "setup", "eval": "evaluate", "plan": "plan", "gen": "generate", "verify": "verify",
         "train": "train", "done": "finish"}
"""The CLI's step labels to loop node names."""
EVENT = re.compile(r"^r(\d+)\s+(" + "|".join(NODES) + r")\s")
HEADER = re.compile(r"^tutorkd teach\s+run ")


class Teach:
    """One ``tutorkd teach`` process in its own session; a thread timestamps its event lines."""

    def __init__(self, *args: str, nice: int = 0, kill_at: str | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}  # one event per line, unwrapped
        cli = ["-m", "tutorkd.cli"]
        if kill_at is not None:  # the CLI kills itself in the middle of a write (kill_at_write.py)
            env["TUTORKD_KILL_AT"], cli = kill_at, [str(Path(__file__).parent / "kill_at_write.py")]
        self.started = time.monotonic()
        # Why ``nice`` as a command: it execs python, so the process group is still this one process's.
        command = ["nice", "-n", str(nice)] if nice else []
        self.proc = subprocess.Popen([*command, sys.executable, *cli, "teach", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def events(self) -> list[tuple[float, tuple[str, int]]]:
        """(seconds since start, (node, round)) of each step line so far; ``header`` for the run line."""
        out = []
        for t, line in list(self.lines):
            if HEADER.match(line):
                out.append((t, ("header", 0)))
            elif m := EVENT.match(line):
                out.append((t, (NODES[m.group(2)], int(m.group(1)))))
        return out

    def wait_for(self, event: tuple[str, int], nth: int = 1, timeout: float = 900) -> float:
        """Block until the ``nth`` line of ``event`` appears; its time since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t, e in self.events() if e == event]
            if len(hits) >= nth:
                return hits[nth - 1]
            if self.proc.poll() is not None:
                self._reader.join()
                tail = "\n".join(line for _, line in self.lines[-20:])
                raise RuntimeError(f"teach exited ({self.proc.returncode}) before {event}:\n{tail}")
            time.sleep(0.002)
        raise TimeoutError(f"no {event} line within {timeout} s")

    def kill(self) -> float:
        """SIGKILL the whole process group; seconds since start (the process may have just ended: a kill
        point after the run's last step)."""
        at = time.monotonic() - self.started
        os.killpg(self.proc.pid, signal.SIGKILL)  # an unreaped zombie still has its group: never missing
        self.proc.wait()
        self._reader.join()
        return at

    def wait(self) -> int:
        """Wait for the process to end however it ends (a kill it dealt itself); its return code."""
        self.proc.wait()
        self._reader.join()
        return self.proc.returncode

    def finish(self, timeout: float = 900) -> str:
        """Wait for a normal exit; raise with the output unless it exited 0."""
        self.proc.wait(timeout=timeout)
        self._reader.join()
        out = "\n".join(line for _, line in self.lines)
        if self.proc.returncode != 0:
            raise RuntimeError(f"teach exited {self.proc.returncode}:\n{out[-3000:]}")
        return out


def slots(rounds: int) -> list[tuple[str, int]]:
    """Every (node, round) of a run in execution order; ``setup`` is before the first checkpoint."""
    out = [("setup", 0), ("evaluate", 0)]
    for k in range(1, rounds + 1):
        out += [("plan", k), ("generate", k), ("verify", k), ("train", k), ("evaluate", k)]
    return out + [("finish", rounds)]


def node_timeline(events: list[tuple[float, tuple[str, int]]]) -> dict[tuple[str, int], tuple[float, float]]:
    """Each slot's (start, end) in seconds since start, from a finished run's ``Teach.events``."""
    ends = {}
    for t, event in events:
        ends.setdefault(event, t)  # when each step first printed (setup prints two lines: see below)
    setup_end = [t for t, e in events if e == ("setup", 0)][-1]
    order = slots(max(k for _, k in ends))
    timeline, start = {("setup", 0): (ends[("header", 0)], setup_end)}, setup_end
    for slot in order[1:]:
        timeline[slot] = (start, ends[slot])
        start = ends[slot]
    return timeline


def only_run(root: Path) -> Path:
    """The one run directory under ``root/runs`` (``RuntimeError`` unless there is exactly one)."""
    runs = sorted((root / "runs").iterdir())
    if len(runs) != 1:
        raise RuntimeError(f"expected one run directory under {root / 'runs'}, found {runs}")
    return runs[0]


def pending(run_dir: Path) -> tuple[str, int]:
    """The (node, round) a killed run was in: the node its last checkpoint says runs next."""
    from tutorkd.loop import last_checkpoint

    state, next_nodes = last_checkpoint(run_dir)
    if state is None:
        return ("setup", 0)
    if not next_nodes:
        return ("done", state.round)
    node = next_nodes[0]
    return (node, state.round if node in ("evaluate", "finish") else state.round + 1)


def stray_temp_files(run_dir: Path) -> list[str]:
    """Temporary files and folders a killed write left behind (never read; a resume deletes them)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".tmp-"))


def _masked(path: Path, run_dir: Path) -> str:
    """The text of ``path`` with its run directory's path and name replaced by ``RUN``."""
    return path.read_text().replace(str(run_dir), "RUN").replace(run_dir.name, "RUN")


def _sha(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(ref: Path, run: Path) -> dict:
    """How ``run`` differs from ``ref``: lost and duplicated examples, counts, bytes, metrics."""
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.io import read_json, read_jsonl
    from tutorkd.loop import VerifyReport
    from tutorkd.schema import Example, TrainStats

    ref_evals, run_evals = load_round_evals(ref), load_round_evals(run)
    out: dict = {"rounds": [e.student.name for e in run_evals],
                 "same_rounds": [e.student.name for e in run_evals] == [e.student.name for e in ref_evals],
                 "lost": 0, "extra": 0, "duplicated": 0, "examples": 0, "differing_files": [],
                 "metric_diffs": {}}
    texts: list[tuple[str, str]] = []
    for k in range(1, len(ref_evals)):
        rd, gd = ref / "rounds" / f"r{k}", run / "rounds" / f"r{k}"
        want = [e.id.split("/", 1)[1] for e in read_jsonl(rd / "data.jsonl", Example)]
        got_examples = read_jsonl(gd / "data.jsonl", Example) if (gd / "data.jsonl").exists() else []
        got = [e.id.split("/", 1)[1] for e in got_examples]
        out["examples"] += len(got)
        out["lost"] += len(set(want) - set(got))
        out["extra"] += len(set(got) - set(want))
        # Why texts too: an example redone under a new id would be a duplicate that ids cannot show.
        out["duplicated"] += len(got) - len(set(got))
        texts += [(e.problem.question, e.completion) for e in got_examples]
        if read_json(rd / "verify.json", VerifyReport) != read_json(gd / "verify.json", VerifyReport):
            out["differing_files"].append(f"r{k}/verify.json")
        for name in ("plan.json", "generated.jsonl", "data.jsonl", "rejected.jsonl"):
            if _masked(rd / name, ref) != _masked(gd / name, run):
                out["differing_files"].append(f"r{k}/{name}")
        a, b = read_json(rd / "train_stats.json", TrainStats), read_json(gd / "train_stats.json", TrainStats)
        if (a.steps, a.losses) != (b.steps, b.losses):
            out["differing_files"].append(f"r{k}/train_stats.json (losses)")
        weights = "adapter_model.safetensors"
        if _sha(ref / "adapters" / f"r{k}" / weights) != _sha(run / "adapters" / f"r{k}" / weights):
            out["differing_files"].append(f"adapters/r{k}/{weights}")
    out["duplicated"] += len(texts) - len(set(texts))
    for k, (a, b) in enumerate(zip(ref_evals, run_evals, strict=False)):
        name = Path("rounds") / f"r{k}" / "eval.json"
        if _masked(ref / name, ref) != _masked(run / name, run):
            out["differing_files"].append(f"r{k}/eval.json")
        out["metric_diffs"][f"r{k}"] = {
            "val_accuracy": abs(a.val.accuracy - b.val.accuracy),
            "test_accuracy": abs(a.test.accuracy - b.test.accuracy),
            "test_per_skill_max": max(abs(x.accuracy - y.accuracy) for x, y in
                                      zip(a.test.per_skill, b.test.per_skill, strict=True)),
        }
    if _masked(ref / "heldout.json", ref) != _masked(run / "heldout.json", run):
        out["differing_files"].append("heldout.json")
    out["max_metric_diff"] = max(v for d in out["metric_diffs"].values() for v in d.values())
    out["identical"] = (out["same_rounds"] and not out["differing_files"]
                        and out["lost"] == out["extra"] == out["duplicated"] == 0)
    out["stray_temp_files"] = stray_temp_files(run)
    return out
