"""Kill/resume harness: SIGKILL ``tutorkd teach`` at points spread over every loop node, resume, compare.

One uninterrupted reference run records when each node finishes (the CLI prints one line per node).
Each kill point then starts the same run (same config and seed) in a fresh process and kills it:

- timed, from outside (the slow nodes: setup, evaluate, train, finish): wait for the line of the node
  before the target, sleep a random share of the target's reference duration, SIGKILL the group;
- inside a write (every node, also plan/generate/verify, which take milliseconds): the process
  SIGKILLs itself halfway through its nth file write in the target node (``kill_at_write.py``).

``tutorkd teach --resume RUN_DIR`` then finishes the run. The node actually hit is read back from the
run's langgraph checkpoint (the node still pending when the process died), not assumed from the
timing. Every resumed run is compared with the reference: lost and duplicated examples, verify
counts, the bytes of every data file and evaluation (run name masked), adapter weights, training
losses and metrics. A second uninterrupted run checks that the reference itself is reproducible.

With ``--kills-per-run N`` a run is killed N times in a row (each resumed process killed again at a
later node) before it is finished; its comparison then covers all N kill points.

    .venv/bin/python benchmarks/reliability.py [--timed-per-slot 2] [--kills-per-run 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results" / "reliability.json"
TINY_STUDENT = {"pretrain_steps": 300, "pretrain_batch": 64, "lora_rank": 8, "lora_alpha": 16,
                "learning_rate": 5e-3, "epochs": 1, "batch_size": 16}
"""The test suite's tiny student (``tests/conftest.py``, so the harness shares its cached base), trained
for one epoch per round: the harness runs it dozens of times."""
NODES = {"setup": "setup", "eval": "evaluate", "plan": "plan", "gen": "generate", "verify": "verify",
         "train": "train", "done": "finish"}
"""The CLI's step labels to loop node names."""
EVENT = re.compile(r"^r(\d+)\s+(" + "|".join(NODES) + r")\s")
HEADER = re.compile(r"^tutorkd teach\s+run ")


def slots(rounds: int) -> list[tuple[str, int]]:
    """Every (node, round) of a run in execution order; ``setup`` is before the first checkpoint."""
    out = [("setup", 0), ("evaluate", 0)]
    for k in range(1, rounds + 1):
        out += [("plan", k), ("generate", k), ("verify", k), ("train", k), ("evaluate", k)]
    return out + [("finish", rounds)]


def write_config(root: Path, student: dict, rounds: int = 2, seed: int = 0, per_round: int = 60) -> Path:
    """A run config small enough to run dozens of times: 10 val and 10 test problems per skill,
    ``per_round`` examples a round."""
    cfg = {"environment": {"level": "skill_tree", "test_per_skill": 10, "val_per_skill": 10,
                           "budget": per_round * rounds, "rounds": rounds},
           "teacher": {"name": "uniform", "policy": "uniform", "per_round": per_round},
           "student": student, "backend": {"kind": "transformers"}, "seed": seed,
           "runs_root": str(root / "runs")}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


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

    def finish(self, timeout: float = 900) -> str:
        """Wait for a normal exit; raise with the output unless it exited 0."""
        self.proc.wait(timeout=timeout)
        self._reader.join()
        out = "\n".join(line for _, line in self.lines)
        if self.proc.returncode != 0:
            raise RuntimeError(f"teach exited {self.proc.returncode}:\n{out[-3000:]}")
        return out


def only_run(root: Path) -> Path:
    runs = sorted((root / "runs").iterdir())
    if len(runs) != 1:
        raise RuntimeError(f"expected one run directory under {root / 'runs'}, found {runs}")
    return runs[0]


def reference(cfg: Path, nice: int = 0) -> tuple[Path, dict[tuple[str, int], tuple[float, float]], float]:
    """Run ``cfg`` uninterrupted: its run directory, each slot's (start, end) in seconds, wall time."""
    proc = Teach(str(cfg), nice=nice)
    proc.finish()
    ends = {}
    for t, event in proc.events():
        ends.setdefault(event, t)  # when each step first printed (setup prints two lines: see below)
    setup_end = [t for t, e in proc.events() if e == ("setup", 0)][-1]
    order = slots(max(k for _, k in ends))
    timeline, start = {("setup", 0): (ends[("header", 0)], setup_end)}, setup_end
    for slot in order[1:]:
        timeline[slot] = (start, ends[slot])
        start = ends[slot]
    return only_run(cfg.parent), timeline, time.monotonic() - proc.started


def pending(run_dir: Path) -> tuple[str, int]:
    """The (node, round) a killed run was in: the node its last checkpoint says runs next."""
    import sqlite3

    from tutorkd.loop import LoopState, TeachingLoop

    path = run_dir / "checkpoints.sqlite"
    if not path.exists():
        return ("setup", 0)
    conn = sqlite3.connect(path)
    try:
        # Why no env or teacher: only the graph's shape is needed to read its state back.
        loop = TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=0, env=None, teacher=None,
                            domain=None, heldout=None)
        snapshot = loop.compile(conn).get_state({"configurable": {"thread_id": run_dir.name}})
    finally:
        conn.close()
    if not snapshot.values:
        return ("setup", 0)
    state = LoopState.model_validate(snapshot.values)
    if not snapshot.next:
        return ("done", state.round)
    node = snapshot.next[0]
    return (node, state.round if node in ("evaluate", "finish") else state.round + 1)


def stray_temp_files(run_dir: Path) -> list[str]:
    """Temporary files and folders a killed write left behind (never read; a resume deletes them)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".tmp-"))


def interrupted_run(cfg: Path, timeline: dict, targets: list[dict], nice: int = 0) -> tuple[Path, list[dict]]:
    """Start ``cfg`` and kill it at each target in turn, resuming after each kill; then resume to the end.

    A target is ``{"slot": (node, round), "share": s}`` (SIGKILL from outside, ``s`` of the slot's
    reference duration after the line of the slot before it) or ``{"slot": ..., "nth": n}`` (the
    process kills itself in its nth write inside the slot: ``kill_at_write.py``). Targets must be in
    execution order; those left once a kill landed after the run's last step are skipped.
    """
    order = list(timeline)
    kills, run_dir, resume_at = [], None, None
    for target in targets:
        slot = target["slot"]
        if run_dir is not None and resume_at is None:
            break  # the last kill came after the run had finished: nothing left to interrupt
        args = (str(cfg),) if run_dir is None else ("--resume", str(run_dir))
        if "nth" in target:
            proc = Teach(*args, nice=nice, kill_at=f"{slot[0]}:{slot[1]}:{target['nth']}")
            proc.proc.wait()
            proc._reader.join()
            if proc.proc.returncode != -signal.SIGKILL:
                raise RuntimeError(f"no kill at {target}: exited {proc.proc.returncode}")
            killed_at, delay = time.monotonic() - proc.started, None
            (where,) = [line.removeprefix("kill_at_write: ") for _, line in proc.lines
                        if line.startswith("kill_at_write: ")]
        else:
            proc = Teach(*args, nice=nice)
            i = order.index(slot)
            if slot == ("setup", 0):
                trigger = ("header", 0)
            elif resume_at is not None and order.index(resume_at) >= i:
                trigger = ("setup", 0)  # a resumed process starts at the node its last run was killed in
            else:
                trigger = order[i - 1]
            trigger_at = proc.wait_for(trigger, nth=2 if trigger == ("setup", 0) else 1)
            start, end = timeline[slot]
            delay = target["share"] * (end - start)
            time.sleep(max(0.0, trigger_at + delay - (time.monotonic() - proc.started)))
            killed_at, where = proc.kill(), None
        run_dir = run_dir or only_run(cfg.parent)
        hit = pending(run_dir)
        resume_at = hit if hit[0] != "done" else None
        kills.append({"mode": "write" if "nth" in target else "timed",
                      "target": {"node": slot[0], "round": slot[1]}, "hit": {"node": hit[0], "round": hit[1]},
                      "nth_write": target.get("nth"), "where": where,
                      "delay_s": None if delay is None else round(delay, 4),
                      "killed_at_s": round(killed_at, 3), "temp_files_left": stray_temp_files(run_dir)})
    resumed = Teach("--resume", str(run_dir), nice=nice)
    resumed.finish()
    return run_dir, kills


def _masked(path: Path, run_dir: Path) -> str:
    return path.read_text().replace(str(run_dir), "RUN").replace(run_dir.name, "RUN")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(ref: Path, run: Path) -> dict:
    """How ``run`` differs from ``ref``: lost and duplicated examples, counts, bytes, metrics."""
    from tutorkd.io import read_json, read_jsonl
    from tutorkd.loop import VerifyReport
    from tutorkd.plots import load_round_evals
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


SLOW = ("setup", "evaluate", "train", "finish")
"""Nodes long enough (seconds) to kill from outside at a timed point; the others take milliseconds."""


def plan_targets(timeline: dict, timed_per_slot: int, rng: random.Random) -> list[dict]:
    """Timed outside kills at random points of every slow slot (``timed_per_slot`` each), and one kill
    inside every loop slot at a random one of its first four writes, fast slots included."""
    targets = [{"slot": slot, "share": rng.random()} for _ in range(timed_per_slot)
               for slot in timeline if slot[0] in SLOW]
    return targets + [{"slot": slot, "nth": rng.randint(1, 4)} for slot in timeline if slot[0] != "setup"]


def summarize(points: list[dict], runs: list[dict]) -> dict:
    """Totals over every kill point: lost and duplicated examples, identity, where the kills landed."""
    hits: dict[str, int] = {}
    for p in points:
        key = f"{p['hit']['node']} r{p['hit']['round']}"
        hits[key] = hits.get(key, 0) + 1
    return {"kill_points": len(points), "runs": len(runs),
            "lost": sum(r["lost"] for r in runs), "extra": sum(r["extra"] for r in runs),
            "duplicated": sum(r["duplicated"] for r in runs),
            "all_identical": all(r["identical"] for r in runs),
            "max_metric_diff": max((r["max_metric_diff"] for r in runs), default=None),
            "hits_by_node": dict(sorted(hits.items())),
            "loop_nodes_hit": sorted({p["hit"]["node"] for p in points} - {"setup", "done"}),
            "points_with_temp_files_left": sum(bool(p["temp_files_left"]) for p in points)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timed-per-slot", type=int, default=2,
                        help="timed outside kills per slow slot (setup, evaluate, train, finish)")
    parser.add_argument("--kills-per-run", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (the runs use seed 0)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the teach processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cache = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    student = {**TINY_STUDENT, "cache_dir": str(cache / "test-students")}
    root = Path(tempfile.mkdtemp(prefix="tutorkd-reliability-"))
    t0 = time.monotonic()
    ref_dir, timeline, ref_wall = reference(write_config(root / "ref", student, args.rounds), args.nice)
    print(f"reference: {ref_wall:.1f} s, {ref_dir}", flush=True)
    # Same config and seed once more, uninterrupted: the determinism baseline the kills are held to.
    again_dir, _, _ = reference(write_config(root / "again", student, args.rounds), args.nice)
    determinism = compare(ref_dir, again_dir)
    print(f"second uninterrupted run identical: {determinism['identical']}", flush=True)
    targets = plan_targets(timeline, args.timed_per_slot, random.Random(args.seed))
    order = list(timeline)
    groups = [sorted(targets[i:i + args.kills_per_run], key=lambda t: order.index(t["slot"]))
              for i in range(0, len(targets), args.kills_per_run)]
    runs, points, failed = [], [], []
    for n, group in enumerate(groups):
        cfg = write_config(root / f"kill{n}", student, args.rounds)
        try:
            run_dir, kills = interrupted_run(cfg, timeline, group, args.nice)
            result = compare(ref_dir, run_dir)
        except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
            # Why recorded, not raised: a run that cannot be resumed is the defect this harness looks
            # for; it is reported (and fails the summary) while the other kill points still run.
            failed.append({"run": n, "targets": [{**t, "slot": list(t["slot"])} for t in group],
                           "error": str(exc)[-3000:]})
            print(f"run {n} FAILED: {str(exc)[-500:]}", flush=True)
            continue
        runs.append({"run": n, **result})
        for kill in kills:
            points.append({"run": n, **kill, "lost": result["lost"], "duplicated": result["duplicated"],
                           "identical": result["identical"], "max_metric_diff": result["max_metric_diff"]})
            print(f"kill {len(points):2d} ({kill['mode']}): target {kill['target']} hit {kill['hit']} "
                  f"lost {result['lost']} "
                  f"dup {result['duplicated']} identical {result['identical']}", flush=True)
    summary = {**summarize(points, runs), "failed_runs": len(failed),
               "wall_s": round(time.monotonic() - t0, 1)}
    summary["all_identical"] = summary["all_identical"] and not failed
    setup = {"rounds": args.rounds, "kills_per_run": args.kills_per_run, "schedule_seed": args.seed,
             "timed_per_slot": args.timed_per_slot, "nice": args.nice,
             "backend": "transformers (CPU)", "student": student,
             "eval": "10 val + 10 test problems per skill",
             "budget": 60 * args.rounds, "reference_wall_s": round(ref_wall, 1),
             "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
             "machine": platform.machine(), "cpus": os.cpu_count()}
    timeline_out = [{"node": s[0], "round": s[1], "start_s": round(a, 3), "end_s": round(b, 3)}
                    for s, (a, b) in timeline.items()]
    result = {"benchmark": "reliability", "summary": summary, "setup": setup,
              "reference_timeline": timeline_out, "determinism": determinism, "kill_points": points,
              "runs": runs, "failed_runs": failed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}; run directories under {root}")


if __name__ == "__main__":
    main()
