"""A ``tutorkd teach`` child process to watch, kill and resume, and the comparison of two run directories.

The machinery of ``reliability.py`` (and of ``tests/test_reliability.py`` through it): ``Teach`` starts
the CLI in its own process group and timestamps the loop events it prints; ``node_timeline`` says when
each node of a finished run ran; ``pending`` reads from a killed run's checkpoint the node it was in;
``compare`` lists how a resumed run differs from an uninterrupted one, byte for byte (and, for the
figures an engine may not reproduce bit for bit, by how much); ``Teach.leftovers`` lists the processes
of a killed or finished run still alive (a vLLM engine that outlived its run would hold the cores).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tutorkd.llm.orphans import descendants  # the pids of every live descendant of a pid

NODES = {"setup": "setup", "eval": "evaluate", "plan": "plan", "gen": "generate", "verify": "verify",
         "train": "train", "done": "finish"}
"""The CLI's step labels to loop node names."""
EVENT = re.compile(r"^r(\d+)\s+(" + "|".join(NODES) + r")\s")
HEADER = re.compile(r"^tutorkd teach\s+run ")
TAG = "TUTORKD_HARNESS_TAG"
"""Environment variable naming each ``Teach`` process: its children inherit it, so a child that left the
process group and lost its parent (an engine core that called ``setsid``, re-parented to init) is
still found."""
_tags = itertools.count()
TIMEOUT = 900.0
READER_GRACE = 30.0
"""Seconds to wait for the end of a dead process's output: a child that outlived it (an orphaned engine
core) still holds the pipe, and is then counted by ``leftovers`` instead of hanging the harness."""
"""Seconds a run may take to reach an awaited line or its end (``reliability.py --timeout``)."""


class Teach:
    """One ``tutorkd teach`` process in its own session; a thread timestamps its event lines."""

    def __init__(self, *args: str, nice: int = 0, kill_at: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tag = f"{os.getpid()}-{next(_tags)}-{time.time_ns()}"
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "COLUMNS": "400", TAG: self.tag}
        # (PYTHONUNBUFFERED and COLUMNS: one event per line, unwrapped)
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
        self.family: set[int] = set()
        """Descendants of the process when it was killed from outside (``kill``)."""
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

    def wait_for(self, event: tuple[str, int], nth: int = 1, timeout: float | None = None) -> float:
        """Block until the ``nth`` line of ``event`` appears; its time since start."""
        timeout = TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t, e in self.events() if e == event]
            if len(hits) >= nth:
                return hits[nth - 1]
            if self.proc.poll() is not None:
                self._reader.join(timeout=READER_GRACE)
                tail = "\n".join(line for _, line in self.lines[-20:])
                raise RuntimeError(f"teach exited ({self.proc.returncode}) before {event}:\n{tail}")
            time.sleep(0.002)
        raise TimeoutError(f"no {event} line within {timeout} s")

    def kill(self) -> float:
        """SIGKILL the whole process group; seconds since start (the process may have just ended: a kill
        point after the run's last step)."""
        at = time.monotonic() - self.started
        self.family = descendants(self.proc.pid)  # before the kill: once dead, children lose their parent
        os.killpg(self.proc.pid, signal.SIGKILL)  # an unreaped zombie still has its group: never missing
        self.proc.wait()
        self._reader.join(timeout=READER_GRACE)
        return at

    def wait(self) -> int:
        """Wait for the process to end however it ends (a kill it dealt itself); its return code."""
        self.proc.wait()
        self._reader.join(timeout=READER_GRACE)
        return self.proc.returncode

    def finish(self, timeout: float | None = None) -> str:
        """Wait for a normal exit; raise with the output unless it exited 0."""
        try:
            self.proc.wait(timeout=TIMEOUT if timeout is None else timeout)
        except subprocess.TimeoutExpired as exc:  # Why converted: callers catch the builtin TimeoutError
            raise TimeoutError(f"teach still running after {exc.timeout} s") from exc
        self._reader.join(timeout=READER_GRACE)
        out = "\n".join(line for _, line in self.lines)
        if self.proc.returncode != 0:
            raise RuntimeError(f"teach exited {self.proc.returncode}:\n{out[-3000:]}")
        return out

    def abandon(self, run_dir: Path | None = None) -> list[dict]:
        """Kill the process group if the process still runs (a run given up on), then ``leftovers``."""
        if self.proc.poll() is None:
            self.kill()
        return self.leftovers(run_dir)

    def leftovers(self, run_dir: Path | None = None, grace: float = 10.0) -> list[dict]:
        """The processes of this run still alive once it ended (call after ``kill``, ``wait`` or
        ``finish``), each SIGKILLed once recorded so that the next run starts on free cores: the
        module's ``leftovers`` for its session, tag and (when ``kill`` struck) descendants."""
        return leftovers(self.proc.pid, self.tag, self.family, run_dir, grace)


def leftovers(session: int, tag: str, family: Iterable[int] = (), run_dir: Path | None = None,
              grace: float = 10.0) -> list[dict]:
    """Live processes of a run that ended, each SIGKILLed once recorded: pid, ppid, state, command line.

    A process of the run is one in the session or process group ``session`` (``start_new_session``),
    one of ``family`` (its descendants when it was killed), one whose environment carries ``TAG=tag``,
    or one whose command line names ``run_dir``. Zombies are dead (no memory, no cores) and not
    counted. Those found are given ``grace`` seconds to finish dying: the kernel tears a large process
    down for a while.
    """
    family, marker = set(family), f"\n{TAG}={tag}\n"
    deadline = time.monotonic() + grace
    while True:
        found = [p for p in processes() if p["pid"] != os.getpid() and p["state"] != "Z" and (
            session in (p["session"], p["pgrp"]) or p["pid"] in family or marker in f"\n{p['environ']}\n"
            or (run_dir is not None and str(run_dir) in p["cmdline"]))]
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for p in found:
        try:
            os.kill(p["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [{k: p[k] for k in ("pid", "ppid", "state", "cmdline")} for p in found]


def processes() -> list[dict]:
    """Every process on the machine from ``/proc``: pid, ppid, state, pgrp, session, command line and
    environment (both as text with NULs turned to newlines; empty where unreadable)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended while we looked
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            environ = b""
        # Why after the last ")": the command name in parentheses may itself hold spaces and parentheses.
        state, ppid, pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        out.append({"pid": int(entry.name), "ppid": int(ppid), "state": state, "pgrp": int(pgrp),
                    "session": int(session),
                    "cmdline": cmdline.replace(b"\0", b" ").decode(errors="replace").strip()[:300],
                    "environ": environ.replace(b"\0", b"\n").decode(errors="replace")})
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
    """How ``run`` differs from ``ref``: lost and duplicated examples, counts, bytes, metrics.

    ``file_identity`` says for every compared file whether it is identical (``differing_files`` lists
    those that are not); ``examples_identical`` covers what the run taught (eval sets, plans, data,
    verify counts, losses, adapter weights), ``evals_identical`` what it measured. Where evaluations
    differ (an engine that does not decode bit-identically), ``eval_diffs`` says by how much: accuracy
    differences in ``metric_diffs``, and per round the validation attempts whose output or correctness
    differ and the largest difference of a confidence.
    """
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.io import read_json, read_jsonl
    from tutorkd.loop import VerifyReport
    from tutorkd.schema import Example, TrainStats

    ref_evals, run_evals = load_round_evals(ref), load_round_evals(run)
    out: dict = {"rounds": [e.student.name for e in run_evals],
                 "same_rounds": [e.student.name for e in run_evals] == [e.student.name for e in ref_evals],
                 "lost": 0, "lost_by_question": 0, "extra": 0, "duplicated": 0, "examples": 0,
                 "differing_files": [], "file_identity": {}, "metric_diffs": {}, "eval_diffs": {}}

    def same(name: str, equal: bool) -> None:
        out["file_identity"][name] = equal
        if not equal:
            out["differing_files"].append(name)

    texts: list[tuple[str, str]] = []
    for k in range(1, len(ref_evals)):
        rd, gd = ref / "rounds" / f"r{k}", run / "rounds" / f"r{k}"
        want_examples = read_jsonl(rd / "data.jsonl", Example)
        got_examples = read_jsonl(gd / "data.jsonl", Example) if (gd / "data.jsonl").exists() else []
        want = [e.id.split("/", 1)[1] for e in want_examples]
        got = [e.id.split("/", 1)[1] for e in got_examples]
        out["examples"] += len(got)
        out["lost"] += len(set(want) - set(got))
        # Why by question too: an example kept under another id would hide a lost one from the ids.
        questions = Counter(e.problem.question for e in want_examples)
        questions.subtract(e.problem.question for e in got_examples)
        out["lost_by_question"] += sum(n for n in questions.values() if n > 0)
        out["extra"] += len(set(got) - set(want))
        # Why texts too: an example redone under a new id would be a duplicate that ids cannot show.
        out["duplicated"] += len(got) - len(set(got))
        texts += [(e.problem.question, e.completion) for e in got_examples]
        same(f"r{k}/verify.json",
             read_json(rd / "verify.json", VerifyReport) == read_json(gd / "verify.json", VerifyReport))
        for name in ("plan.json", "generated.jsonl", "data.jsonl", "rejected.jsonl"):
            same(f"r{k}/{name}", _masked(rd / name, ref) == _masked(gd / name, run))
        a, b = read_json(rd / "train_stats.json", TrainStats), read_json(gd / "train_stats.json", TrainStats)
        same(f"r{k}/train_stats.json (losses)", (a.steps, a.losses) == (b.steps, b.losses))
        weights = "adapter_model.safetensors"
        same(f"adapters/r{k}/{weights}",
             _sha(ref / "adapters" / f"r{k}" / weights) == _sha(run / "adapters" / f"r{k}" / weights))
    out["duplicated"] += len(texts) - len(set(texts))
    same("heldout.json", _masked(ref / "heldout.json", ref) == _masked(run / "heldout.json", run))
    out["examples_identical"] = (out["same_rounds"] and not out["differing_files"]
                                 and out["lost"] == out["lost_by_question"] == out["extra"]
                                 == out["duplicated"] == 0)
    for k, (a, b) in enumerate(zip(ref_evals, run_evals, strict=False)):
        name = Path("rounds") / f"r{k}" / "eval.json"
        same(f"r{k}/eval.json", _masked(ref / name, ref) == _masked(run / name, run))
        out["metric_diffs"][f"r{k}"] = {
            "val_accuracy": abs(a.val.accuracy - b.val.accuracy),
            "test_accuracy": abs(a.test.accuracy - b.test.accuracy),
            "test_per_skill_max": max(abs(x.accuracy - y.accuracy) for x, y in
                                      zip(a.test.per_skill, b.test.per_skill, strict=True)),
        }
        pairs = list(zip(a.val_attempts, b.val_attempts, strict=False))  # same eval set: same length
        confidences = [abs(x.confidence - y.confidence) for x, y in pairs
                       if x.confidence is not None and y.confidence is not None]
        out["eval_diffs"][f"r{k}"] = {
            "val_attempts": len(pairs),
            "outputs_differing": sum(x.output != y.output for x, y in pairs),
            "correct_differing": sum(x.correct != y.correct for x, y in pairs),
            "max_confidence_diff": max(confidences, default=0.0),
        }
    out["evals_identical"] = not [n for n in out["differing_files"] if n.endswith("eval.json")]
    out["max_metric_diff"] = max(v for d in out["metric_diffs"].values() for v in d.values())
    out["max_confidence_diff"] = max((d["max_confidence_diff"] for d in out["eval_diffs"].values()),
                                     default=0.0)
    out["identical"] = out["examples_identical"] and out["evals_identical"]
    out["stray_temp_files"] = stray_temp_files(run)
    return out
