"""The closed teaching loop as a langgraph ``StateGraph``, checkpointed to SQLite.

    evaluate -> plan -> generate -> verify -> train -> evaluate -> ... -> finish

Graph state holds only counters, paths and the environment's small ``EnvState``; every node writes
its real output (plans, datasets, adapters, reports) atomically into the run directory. A node that
finds its finished output already on disk reuses it, so a run killed anywhere resumes from the last
checkpoint without redoing or duplicating work, and regenerates bit-identical data where it must
redo a step (all randomness is derived from the run seed and the round).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from tutorkd.environments.heldout import HeldOut, normalize
from tutorkd.io import atomic_write_text, read_json, read_jsonl, save_hf_dataset, write_json, write_jsonl
from tutorkd.protocols import Domain, GenerationContext, Teacher, TeachingEnvironment
from tutorkd.schema import EnvState, Example, Feedback, Plan, Record, RoundEval
from tutorkd.verify import verify


class LoopState(BaseModel):
    """What langgraph checkpoints after every node: small, typed, no datasets or tensors."""

    round: int = 0
    """Rounds trained so far; the next plan/generate/verify/train work on ``round + 1``."""
    env: EnvState | None = None
    done: bool = False


class LoopEvent(Record):
    """A progress message from the loop to whoever displays it (the CLI renders these with rich)."""

    node: str
    round: int
    message: str
    seconds: float = 0.0


class PhaseTimes(Record):
    """Wall time of each loop phase in one round (seconds)."""

    plan: float = 0.0
    generate: float = 0.0
    verify: float = 0.0
    train: float = 0.0
    evaluate: float = 0.0


_CHECKPOINT_TYPES = [
    ("tutorkd.schema", name) for name in ("EnvState", "StudentVersion")
] + [("tutorkd.loop", "LoopState")]


def round_dir(run_dir: Path, k: int) -> Path:
    """Folder holding everything produced for round ``k`` (round 0 is the base student's evaluation)."""
    return run_dir / "rounds" / f"r{k}"


def _record_time(run_dir: Path, k: int, phase: str, seconds: float) -> None:
    path = round_dir(run_dir, k) / "times.json"
    times = read_json(path, PhaseTimes) if path.exists() else PhaseTimes()
    write_json(path, times.model_copy(update={phase: round(seconds, 3)}))


class TeachingLoop:
    """Builds and runs the graph over an environment, a teacher and the verification filter.

    ``env`` is stepped through its fine-grained parts (``tutorkd.protocols.TeachingEnvironment``), the
    teacher through ``tutorkd.protocols.Teacher``; ``domain`` and ``heldout`` feed the verifier.
    """

    def __init__(self, *, run_dir: Path, run_id: str, seed: int, env: TeachingEnvironment, teacher: Teacher,
                 domain: Domain, heldout: HeldOut,
                 on_event: Callable[[LoopEvent], None] = lambda e: None) -> None:
        self.run_dir, self.run_id, self.seed = run_dir, run_id, seed
        self.env, self.teacher, self.domain, self.heldout = env, teacher, domain, heldout
        self.on_event = on_event

    # ---------------------------------------------------------------------------------------------
    # nodes

    def _evaluate(self, state: LoopState) -> dict:
        k = state.round
        out = round_dir(self.run_dir, k)
        t0 = time.perf_counter()
        if (out / "eval.json").exists():
            evaluation = read_json(out / "eval.json", RoundEval)
        else:
            evaluation = self.env.evaluate()
            write_json(out / "eval.json", evaluation)
            _record_time(self.run_dir, k, "evaluate", time.perf_counter() - t0)
        feedback = self.env.feedback(evaluation)
        write_json(out / "feedback.json", feedback)
        self._write_metrics()
        scores = f"val {evaluation.val.accuracy:.3f}  test {evaluation.test.accuracy:.3f}"
        self.on_event(LoopEvent(node="evaluate", round=k, seconds=time.perf_counter() - t0, message=scores))
        return {"done": feedback.done, "env": self.env.state}

    def _plan(self, state: LoopState) -> dict:
        k = state.round + 1
        t0 = time.perf_counter()
        feedback = read_json(round_dir(self.run_dir, state.round) / "feedback.json", Feedback)
        # Why always: a stateful policy then plans from the state saved with the last round whether or
        # not the process was restarted in between, so a resumed run plans exactly as an unbroken one.
        self.teacher.restore(round_dir(self.run_dir, state.round))
        plan = self.teacher.plan(feedback)
        write_json(round_dir(self.run_dir, k) / "plan.json", plan)
        for name, record in self.teacher.views():  # its model of the student, e.g. skill_profile.json
            write_json(round_dir(self.run_dir, k) / name, record)
        _record_time(self.run_dir, k, "plan", time.perf_counter() - t0)
        self.on_event(LoopEvent(node="plan", round=k, message=f"{plan.total} examples: {plan.reasoning}"))
        return {}

    def _generate(self, state: LoopState) -> dict:
        k = state.round + 1
        out = round_dir(self.run_dir, k)
        t0 = time.perf_counter()
        plan = read_json(out / "plan.json", Plan)
        # Why: the engine skips questions trained on in earlier rounds instead of making duplicates that
        # the verifier would throw away; rebuilt from the data files, so a resume sees the same set.
        context = GenerationContext(run_id=self.run_id, round=k, teacher=self.teacher.name, seed=self.seed,
                                    avoid=frozenset(self._seen_questions(state)))
        examples = self.teacher.generate(plan, context)
        # Why again, and before generated.jsonl: engines report on what they just made (STAT-Syn's
        # filter counts); a kill before generated.jsonl exists reruns this node, which rewrites them.
        for name, record in self.teacher.views():
            write_json(out / name, record)
        write_jsonl(out / "generated.jsonl", examples)
        _record_time(self.run_dir, k, "generate", time.perf_counter() - t0)
        self.on_event(LoopEvent(node="generate", round=k, message=f"generated {len(examples)}"))
        return {}

    def _verify(self, state: LoopState) -> dict:
        k = state.round + 1
        out = round_dir(self.run_dir, k)
        t0 = time.perf_counter()
        generated = read_jsonl(out / "generated.jsonl", Example)
        # Why normalize: the verifier compares questions in ``heldout.normalize`` form (whitespace removed).
        seen = {normalize(q) for q in self._seen_questions(state)}
        result = verify(generated, self.domain, self.heldout.questions, seen)
        kept = self.env.admit(list(result.kept))
        write_jsonl(out / "rejected.jsonl", result.rejected)
        write_jsonl(out / "data.jsonl", kept)
        save_hf_dataset(training_columns(kept), out / "dataset")
        write_json(out / "verify.json", VerifyReport(counts=result.counts, generated=len(generated),
                                                     kept=len(result.kept), admitted=len(kept)))
        _record_time(self.run_dir, k, "verify", time.perf_counter() - t0)
        rejected = ", ".join(f"{n} {why}" for why, n in sorted(result.counts.items()) if why != "ok" and n)
        summary = f"kept {len(kept)} of {len(generated)}" + (f" (rejected: {rejected})" if rejected else "")
        self.on_event(LoopEvent(node="verify", round=k, message=summary))
        return {}

    def _train(self, state: LoopState) -> dict:
        k = state.round + 1
        out = round_dir(self.run_dir, k)
        t0 = time.perf_counter()
        examples = read_jsonl(out / "data.jsonl", Example)
        stale = self.run_dir / "adapters" / f"r{k}"
        if stale.exists():
            # Why: a kill after the adapter was renamed into place but before this node's checkpoint
            # leaves a complete adapter behind; training is seeded, so redoing it gives the same one.
            shutil.rmtree(stale)
        stats = self.env.train(examples, str(out / "data.jsonl")).stats
        if stats is None:
            message = "no examples: the student is unchanged"
        else:
            write_json(out / "train_stats.json", stats)
            message = f"{stats.steps} steps, loss {stats.first_loss:.3f} -> {stats.last_loss:.3f}"
        _record_time(self.run_dir, k, "train", time.perf_counter() - t0)
        self.on_event(LoopEvent(node="train", round=k, seconds=time.perf_counter() - t0, message=message))
        return {"round": k, "env": self.env.state}

    def _seen_questions(self, state: LoopState) -> set[str]:
        """Questions of every example trained on in earlier rounds."""
        return {ex.problem.question for path in state.env.data_files for ex in read_jsonl(path, Example)}

    def _finish(self, state: LoopState) -> dict:
        from tutorkd.evals.plots import plot_learning_curve

        self._write_metrics()
        plot_learning_curve(self.run_dir)
        self.on_event(LoopEvent(node="finish", round=state.round, message=f"run directory: {self.run_dir}"))
        return {}

    def _write_metrics(self) -> None:
        """Rebuild ``metrics.jsonl`` from the per-round files, so it is correct after any resume."""
        from tutorkd.evals.plots import load_round_evals

        lines = []
        for k, evaluation in enumerate(load_round_evals(self.run_dir)):
            verify_path = round_dir(self.run_dir, k) / "verify.json"
            times_path = round_dir(self.run_dir, k) / "times.json"
            lines.append(json.dumps({
                "round": k,
                "student": evaluation.student.name,
                "val_accuracy": evaluation.val.accuracy,
                "test_accuracy": evaluation.test.accuracy,
                "test_per_skill": evaluation.test.skill_accuracy(),
                "data": read_json(verify_path, VerifyReport).model_dump() if verify_path.exists() else None,
                "times": read_json(times_path, PhaseTimes).model_dump() if times_path.exists() else None,
            }))
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(line + "\n" for line in lines))

    # ---------------------------------------------------------------------------------------------
    # graph

    def compile(self, conn: sqlite3.Connection):
        """The compiled graph, checkpointed into ``conn``."""
        return _compiled({"evaluate": self._evaluate, "plan": self._plan, "generate": self._generate,
                          "verify": self._verify, "train": self._train, "finish": self._finish}, conn)

    def run(self, resume: bool) -> LoopState:
        """Run to the end, or continue from the last checkpoint when ``resume`` is set."""
        if resume:
            self._remove_partial_writes()
        conn = sqlite3.connect(self.run_dir / "checkpoints.sqlite", check_same_thread=False)
        try:
            app = self.compile(conn)
            config = {"configurable": {"thread_id": self.run_id}, "recursion_limit": 10_000}
            snapshot = app.get_state(config) if resume else None
            if snapshot is not None and snapshot.values:
                saved = LoopState.model_validate(snapshot.values)
                if saved.env is not None:
                    self.env.restore(saved.env)
                # Why ``tasks``, not ``next``: a kill after a node's writes were saved but before the next
                # checkpoint leaves that node as a finished task with no ``next``; only a run with no
                # task at all has ended (``invoke`` applies the saved writes and goes on).
                if not snapshot.tasks:
                    return saved
                out = app.invoke(None, config, durability="sync")
            else:
                # Why also on resume: a run killed while it was being set up (before the graph saved its
                # first checkpoint) has nothing to continue, so it starts over; nothing was finished.
                out = app.invoke(LoopState(env=self.env.state), config, durability="sync")
            return LoopState.model_validate(out)
        finally:
            conn.close()


    def _remove_partial_writes(self) -> None:
        """Delete what writes cut short by a kill left behind: temporary files and folders, never read
        (the step that made them is redone), but a torn adapter of a real model can be large."""
        for path in [*self.run_dir.glob(".*.tmp"), *self.run_dir.glob("rounds/r*/.*.tmp"),
                     *self.run_dir.glob("rounds/r*/dataset.tmp"), *self.run_dir.glob("adapters/.tmp-*")]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _compiled(nodes: dict[str, Callable[[LoopState], dict]], conn: sqlite3.Connection):
    """The loop's graph over ``nodes``, checkpointed into ``conn``."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(LoopState)
    for name, fn in nodes.items():
        graph.add_node(name, fn)
    graph.add_edge(START, "evaluate")
    graph.add_conditional_edges("evaluate", lambda s: "finish" if s.done else "plan", ["finish", "plan"])
    for a, b in itertools.pairwise(("plan", "generate", "verify", "train", "evaluate")):
        graph.add_edge(a, b)
    graph.add_edge("finish", END)
    serde = JsonPlusSerializer(allowed_msgpack_modules=_CHECKPOINT_TYPES)
    return graph.compile(checkpointer=SqliteSaver(conn, serde=serde))


def last_checkpoint(run_dir: Path) -> tuple[LoopState | None, tuple[str, ...]]:
    """A run's last saved loop state and the nodes it says run next (``None`` and ``()`` when nothing
    was saved), read from ``checkpoints.sqlite`` without building the run: for tools that inspect
    killed runs (``benchmarks/reliability.py``)."""
    path = run_dir / "checkpoints.sqlite"
    if not path.exists():
        return None, ()
    conn = sqlite3.connect(path)
    try:
        # Why placeholder nodes: reading a checkpoint back needs only the graph's shape.
        nodes = dict.fromkeys(("evaluate", "plan", "generate", "verify", "train", "finish"), lambda s: {})
        snapshot = _compiled(nodes, conn).get_state({"configurable": {"thread_id": run_dir.name}})
    finally:
        conn.close()
    if not snapshot.values:
        return None, ()
    return LoopState.model_validate(snapshot.values), tuple(snapshot.next)


class VerifyReport(Record):
    """Counts of one round's data: generated, kept by the verifier, admitted under the budget."""

    generated: int
    kept: int
    admitted: int
    counts: dict[str, int]


def training_columns(examples: list[Example]) -> dict[str, list[str]]:
    """A round's training data as HF dataset columns: prompt/completion plus provenance."""
    return {
        "id": [e.id for e in examples],
        "prompt": [e.prompt for e in examples],
        "completion": [e.completion for e in examples],
        "skill_id": [e.provenance.skill_id or "" for e in examples],
        "provenance": [e.provenance.model_dump_json() for e in examples],
    }
