"""A sweep: every grid point of a ``SweepConfig`` as a teaching run, each a Ray task, then one comparison.

    run_sweep(cfg) -> for each grid point, by what its folder holds:
        finished run        -> skipped (no task)
        unfinished run      -> a task resumes it          (status ``resumed``)
        no run              -> a task starts it           (status ``finished``)
      then ``compare`` and ``report`` over every finished run, written into ``sweep_root``

A run is finished when its last checkpoint (``tutorkd.loop.last_checkpoint``) is past the loop's
``finish`` node. Ray is imported here only inside
functions, and only when there is work: ``import tutorkd`` stays fast, and a sweep with nothing left
to run needs no Ray at all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tutorkd.config import ConfigError, GridPoint, SweepConfig, format_validation_error, load_config
from tutorkd.scale.task import SWEEP_LOG, run_point
from tutorkd.schema import Record

Status = Literal["finished", "skipped", "resumed", "failed"]


class PointResult(Record):
    """What became of one grid point: its run directory, its status, its log and its wall time."""

    name: str
    run_dir: Path
    teacher: str
    seed: int
    environment: str
    student: str
    status: Status
    """``finished`` (run from the start here), ``resumed`` (an interrupted run continued to its end),
    ``skipped`` (finished before this sweep began), ``failed`` (see ``log`` and ``message``)."""
    log: Path | None = None
    """``RUN_DIR/sweep.log``: the output of every ``tutorkd teach`` this and earlier sweeps ran there."""
    seconds: float = 0.0
    """Wall time of this sweep's work on the point (0 when skipped)."""
    message: str = ""


class SweepEvent(Record):
    """A progress message of a sweep: a point started (``started``) or reached a ``Status``."""

    name: str
    what: Literal["started", "finished", "skipped", "resumed", "failed"]
    run_dir: Path
    seconds: float = 0.0
    log: Path | None = None
    message: str = ""


class SweepResult(Record):
    """A whole sweep: every grid point's result, and the comparison and report files written."""

    sweep_root: Path
    points: tuple[PointResult, ...]
    outputs: tuple[Path, ...] = ()
    """``compare.json`` and ``report.html`` over the finished runs (one pair per environment and student,
    suffixed with them, when the grid has several: runs on other held-out sets do not compare)."""

    @property
    def failed(self) -> tuple[PointResult, ...]:
        """The points whose run did not finish."""
        return tuple(p for p in self.points if p.status == "failed")

    @property
    def ran(self) -> tuple[PointResult, ...]:
        """The points this sweep did work on (started, resumed or tried)."""
        return tuple(p for p in self.points if p.status != "skipped")


def run_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that went through its ``finish`` node."""
    from tutorkd.loop import last_checkpoint

    state, next_nodes = last_checkpoint(run_dir)
    return state is not None and state.done and not next_nodes


def _result(point: GridPoint, run_dir: Path, status: Status, **fields) -> PointResult:
    return PointResult(name=point.name, run_dir=run_dir, teacher=point.teacher, seed=point.seed,
                       environment=point.environment, student=point.student, status=status, **fields)


def _plan(point: GridPoint, run_dir: Path) -> tuple[Literal["new", "resume"] | None, PointResult | None]:
    """What to do with ``point``: start it, resume it, or nothing (its result already known)."""
    from tutorkd.rundir import CONFIG_FILE, load_run_config

    if not (run_dir / CONFIG_FILE).is_file():
        return "new", None
    try:
        same = load_run_config(run_dir) == point.config
    except ConfigError as exc:
        return None, _result(point, run_dir, "failed", message=str(exc))
    if not same:
        return None, _result(point, run_dir, "failed", message=(
            f"{run_dir} holds a run of another config (the sweep changed since it started); delete that "
            "folder to rerun it, or give the sweep another sweep_root"))
    if run_finished(run_dir):
        return None, _result(point, run_dir, "skipped")
    return "resume", None


def run_sweep(cfg: SweepConfig | Mapping[str, object] | str | Path, address: str | None = None,
              on_event: Callable[[SweepEvent], None] = lambda event: None) -> SweepResult:
    """Run every grid point of ``cfg`` not finished yet, each as a Ray task, then compare and report.

    ``cfg``: a ``SweepConfig``, a mapping of its fields or the path of a sweep YAML. ``on_event`` gets
    a ``SweepEvent`` as each run is skipped, starts or ends.

    ``address``: an existing Ray cluster's (``ray start --head`` prints it; its nodes must have
    tutorkd installed and see ``sweep_root`` at the same path); by default a local Ray instance sized
    to this machine is started and shut down at the end. A failed run is listed with its log and the
    others go on. ``ConfigError`` (a bad path, an unwritable ``sweep_root``, Ray missing) before any
    run starts.
    """
    from pydantic import ValidationError

    from tutorkd.rundir import check_paths, writable_folder

    if isinstance(cfg, str | Path):
        cfg = load_config(SweepConfig, cfg)
    elif not isinstance(cfg, SweepConfig):
        try:
            cfg = SweepConfig.model_validate(dict(cfg))
        except ValidationError as exc:
            raise ConfigError(format_validation_error("sweep config", exc, SweepConfig)) from None
    root = writable_folder(cfg.sweep_root, "sweep_root")
    points = cfg.points()
    for point in points:
        check_paths(point.config)
    results: dict[str, PointResult] = {}
    todo: list[tuple[GridPoint, Path, Literal["new", "resume"]]] = []
    for point in points:
        run_dir = root / point.name
        action, known = _plan(point, run_dir)
        if known is not None:
            results[point.name] = known
            on_event(SweepEvent(name=point.name, what=known.status, run_dir=run_dir, log=known.log,
                                message=known.message))
        else:
            todo.append((point, run_dir, action))
    if todo:
        results.update(_run_on_ray(todo, cfg, address, on_event))
    ordered = tuple(results[p.name] for p in points)
    return SweepResult(sweep_root=root, points=ordered, outputs=_compare_and_report(root, ordered))


def _start_ray(cfg: SweepConfig, address: str | None):
    """Connect to the cluster at ``address``, else start a local instance with this machine's cores."""
    try:
        import ray
    except ImportError:
        raise ConfigError("tutorkd sweep needs Ray: pip install 'tutorkd[ray]'") from None
    # Why: a local instance would otherwise ask to send usage statistics out of this machine.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is not None:
        ray.init(address=address, **quiet)
        return ray
    # Why address "local": ray.init() alone would join a cluster that `ray start` left running here.
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             object_store_memory=128 * 1024**2, **quiet)  # tasks pass paths, never tensors
    have = ray.cluster_resources()
    for field, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        asked, total = getattr(cfg.resources, field), have.get(resource, 0.0)
        if asked > total:
            ray.shutdown()
            raise ConfigError(f"resources.{field}: each run asks {asked:g}, but this machine has {total:g}; "
                              f"ask at most {total:g}, or give --address of a cluster with more")
    return ray


@dataclass
class _Task:
    """A submitted point: what it is, where its log is, and when the driver saw it start."""

    point: GridPoint
    run_dir: Path
    action: Literal["new", "resume"]
    log_size: int
    """The size of its log at submission: a task writes a header line there the moment it starts."""
    began: float | None = None

    @property
    def log(self) -> Path:
        return self.run_dir / SWEEP_LOG


def _run_on_ray(todo: list[tuple[GridPoint, Path, Literal["new", "resume"]]], cfg: SweepConfig,
                address: str | None, on_event: Callable[[SweepEvent], None]) -> dict[str, PointResult]:
    """Submit one task per point of ``todo``, report each as it starts and ends; their results."""
    ray = _start_ray(cfg, address)
    try:
        remote = ray.remote(run_point).options(num_cpus=cfg.resources.num_cpus,
                                               num_gpus=cfg.resources.num_gpus,
                                               max_retries=0)  # a failure is reported; the next sweep resumes
        pending: dict[object, _Task] = {}
        for point, run_dir, action in todo:
            log = run_dir / SWEEP_LOG
            config = point.config.model_dump(mode="json") if action == "new" else None
            ref = remote.remote(str(run_dir.resolve()), config, os.getcwd(), cfg.resources.num_gpus > 0)
            pending[ref] = _Task(point, run_dir, action, log.stat().st_size if log.exists() else 0)
        results = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for task in pending.values():
                # Why the log's size: the driver learns that a task started through the shared run
                # folder, with no channel of its own to the worker.
                if task.began is None and task.log.exists() and task.log.stat().st_size > task.log_size:
                    task.began = time.monotonic()
                    on_event(SweepEvent(name=task.point.name, what="started", run_dir=task.run_dir,
                                        log=task.log))
            for ref in ready:
                task = pending.pop(ref)
                r = results[task.point.name] = _finished(ray, ref, task)
                on_event(SweepEvent(name=r.name, what=r.status, run_dir=r.run_dir, seconds=r.seconds,
                                    log=r.log, message=r.message))
        return results
    finally:
        ray.shutdown()


def _finished(ray, ref, task: _Task) -> PointResult:
    """The result of a task that ended, from its exit code (or Ray's error) and its run folder."""
    point, run_dir, log = task.point, task.run_dir, task.log
    try:
        code, seconds = ray.get(ref)
    except ray.exceptions.RayError as exc:
        seconds = time.monotonic() - task.began if task.began else 0.0
        return _result(point, run_dir, "failed", log=log, seconds=seconds,
                       message=f"the Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    if code == 0 and run_finished(run_dir):
        status = "finished" if task.action == "new" else "resumed"
        return _result(point, run_dir, status, log=log, seconds=seconds)
    why = f"exit code {code}" if code else "it exited without finishing"
    return _result(point, run_dir, "failed", log=log, seconds=seconds,
                   message=f"tutorkd teach --resume {run_dir}: {why}")


def _compare_and_report(root: Path, points: tuple[PointResult, ...]) -> tuple[Path, ...]:
    """``compare`` (JSON) and ``report`` (HTML) over the finished runs, per environment and student."""
    from tutorkd.evals.accounting import load_run
    from tutorkd.evals.compare import compare
    from tutorkd.evals.report import write_report
    from tutorkd.io import write_json

    groups: dict[tuple[str, str], list[Path]] = {}
    for p in points:
        if p.status != "failed":
            groups.setdefault((p.environment, p.student), []).append(p.run_dir)
    outputs = []
    for (env, student), run_dirs in groups.items():
        suffix = "" if len(groups) == 1 else f"-{env}-{student}"
        write_json(root / f"compare{suffix}.json", compare([load_run(d) for d in run_dirs]))
        outputs += [root / f"compare{suffix}.json", write_report(run_dirs, root / f"report{suffix}.html")]
    return tuple(outputs)
