"""What the benchmark scripts share, so that each of them reads as its experiment.

- ``parser``: the command-line options every benchmark spells the same way (``--seeds``, ``--rounds``,
  ``--test-per-skill``, ``--val-per-skill``, ``--per-round``, ``--backend``, ``--pretrain-steps``,
  ``--epochs``, ``--out``), each script choosing its own defaults;
- ``run_config`` and ``teach``: a run config from the ``environments/`` and ``agents/`` specs, and one
  teaching run of it in this process (``tutorkd.lifecycle.run_teaching``), its events printed;
- ``run_matrix``: every (arm, seed) of an experiment, interleaved by seed; ``kept_runs`` those of an
  earlier result, to add arms to it;
- ``header``, ``machine_info``, ``config_record``, ``write_result``, ``pyplot``: the result file (JSON,
  the PNG next to it);
- ``spread``, ``mean_sd``, ``skill_groups``, ``accuracy``: the statistics several results report;
- ``print_table``: a summary on the terminal.

The figures are drawn in ``figures.py``; ``teach_harness.py`` drives ``tutorkd teach`` processes for
``reliability.py``. The scripts run as ``python benchmarks/NAME.py``, so these modules import as
``common`` and so on; this one imports ``tutorkd`` only inside the functions that need it, so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tutorkd.config import RunConfig, TeacherConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

OPTIONS: dict[str, dict[str, Any]] = {
    "seeds": {"type": int, "nargs": "+", "help": "seeds (each runs every arm of the experiment)"},
    "rounds": {"type": int, "help": "teaching rounds per run"},
    "test_per_skill": {"type": int, "help": "held-out test problems per skill"},
    "val_per_skill": {"type": int, "help": "teacher-visible validation problems per skill"},
    "per_round": {"type": int, "help": "examples per round (the same for every teacher)"},
    "backend": {"choices": ("vllm", "transformers"), "help": "the student's inference engine"},
    "pretrain_steps": {"type": int, "help": "override the base student's pretraining steps (smoke runs)"},
    "epochs": {"type": int, "help": "override the student's epochs per round"},
    "out": {"type": Path, "help": "results JSON (PNGs go next to it)"},
}
"""The shared options, by ``argparse`` destination; ``parser`` adds those a script gives a default."""


def cpu_model() -> str | None:
    """The processor's model name from ``/proc/cpuinfo`` (``None`` where there is none).

    Why recorded: the tiny base student is pretrained on each host, and CPUs with other float kernels
    give other weights under the same cache key (an AMD EPYC host's student started at 0.04 on
    ``add.carry`` where an earlier host's started at 0.13): tiny-student results compare only within
    one host, which this field and a result's base accuracies tell."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def _native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (``dtype: auto`` serves a pretrained model in it)."""
    from tutorkd.llm.factory import cpu_has_native_bf16

    return cpu_has_native_bf16()


MACHINE_FIELDS: dict[str, Callable[[], object]] = {
    "cpus": os.cpu_count,
    "cpu_model": cpu_model,
    "cpu_native_bf16": _native_bf16,
    "platform": platform.platform,
    "python": platform.python_version,
    "machine": platform.machine,
    "omp_num_threads": lambda: os.environ.get("OMP_NUM_THREADS"),
}


def parser(doc: str, **defaults: object) -> argparse.ArgumentParser:
    """An argument parser described by ``doc`` with the shared ``OPTIONS`` named in ``defaults``, each
    with its default there (``pretrain_steps=None``: the option exists, unset unless given)."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        out.add_argument("--" + name.replace("_", "-"), default=default, **OPTIONS[name])
    return out


def machine_info(fields: Sequence[str] = ("cpus", "cpu_model", "cpu_native_bf16", "platform", "python"),
                 ) -> dict[str, object]:
    """What the timings were measured on (``MACHINE_FIELDS`` names the fields one may ask for)."""
    return {name: MACHINE_FIELDS[name]() for name in fields}


def header(benchmark: str) -> dict[str, object]:
    """The first keys of a result: the benchmark's name, today's date, the machine."""
    return {"benchmark": benchmark, "date": time.strftime("%Y-%m-%d"), "machine": machine_info()}


def config_record(args: argparse.Namespace, drop: Iterable[str] = ()) -> dict[str, object]:
    """The parsed options as JSON values (paths as strings), without those in ``drop``."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in set(drop)}


def student_overrides(args: argparse.Namespace) -> dict[str, int]:
    """The student fields ``--pretrain-steps`` and ``--epochs`` override (those given and not ``None``)."""
    return {k: v for k in ("pretrain_steps", "epochs") if (v := getattr(args, k, None)) is not None}


def teacher_spec(name: str) -> TeacherConfig:
    """The teacher spec ``agents/{name}.yaml``."""
    from tutorkd.config import TeacherConfig, load_config

    return load_config(TeacherConfig, REPO / "agents" / f"{name}.yaml")


def run_config(*, env: str, teacher: str | dict, seed: int, runs_root: Path, environment: dict | None = None,
               teacher_fields: dict | None = None, student: dict | None = None,
               backend: dict | None = None) -> RunConfig:
    """The run of ``environments/{env}.yaml`` and ``agents/{teacher}.yaml`` (or ``teacher``, a spec given
    as a dict) with the given fields of each overridden (a benchmark resizes them), the default student
    and backend unless given."""
    from tutorkd.config import ENV_SPEC, RunConfig, load_config

    spec = load_config(ENV_SPEC, REPO / "environments" / f"{env}.yaml")
    return RunConfig.model_validate({
        "environment": spec.model_dump() | (environment or {}),
        "teacher": (teacher_spec(teacher).model_dump() if isinstance(teacher, str) else teacher)
        | (teacher_fields or {}),
        "student": student or {},
        "backend": backend or {},
        "seed": seed,
        "runs_root": str(runs_root),
    })


def event_printer(label: str) -> Callable:
    """An ``on_event`` callback printing each loop event of the run ``label``, indented."""

    def show(event) -> None:
        print(f"  [{label}] r{event.round} {event.node}: {event.message}", flush=True)

    return show


def teach(cfg: RunConfig, label: str, on_event: Callable | None = None) -> tuple[Path, float]:
    """Run ``cfg`` to the end in this process (its engine closed afterwards, so that the next run may
    start one), printing its events and passing them to ``on_event``; its run directory and wall time
    in seconds."""
    from tutorkd.lifecycle import run_teaching

    show = event_printer(label)

    def both(event) -> None:
        show(event)
        if on_event is not None:
            on_event(event)

    t0 = time.perf_counter()
    run_dir = run_teaching(cfg, both)
    return run_dir, round(time.perf_counter() - t0, 1)


def run_matrix(seeds: Iterable[int], arms: Sequence[str], run: Callable[[str, int], dict], *,
               done: Iterable[tuple[str, int]] = (), describe: Callable[[dict], str] | None = None,
               after: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """``run(arm, seed)`` for every seed and arm not in ``done``, one at a time; their results in order.

    ``describe`` gives the line printed after each (default: its ``wall_s``); ``after`` sees the results
    so far after each run (to stop early on a setup that cannot work).
    """
    skip = set(done)
    runs: list[dict] = []
    for seed in seeds:
        for arm in arms:  # Why interleaved: machine load drifts; one seed's arms then share it.
            if (arm, seed) in skip:
                continue
            runs.append(run(arm, seed))
            text = describe(runs[-1]) if describe is not None else f"{runs[-1]['wall_s']} s"
            print(f"{arm} seed {seed}: {text}", flush=True)
            if after is not None:
                after(runs)
    return runs


def kept_runs(earlier: Path, config: dict, arms: Iterable[str], arm: str = "teacher") -> list[dict]:
    """The runs of the result file ``earlier`` for arms other than ``arms`` (to add arms to it without
    rerunning the others); ``SystemExit`` unless its config, its arms aside, is ``config``."""
    result = json.loads(earlier.read_text())
    theirs = {k: v for k, v in result["config"].items() if k != f"{arm}s"}
    if theirs != config:
        raise SystemExit(f"{earlier}: its config {theirs} differs from this one {config}; "
                         "pass the same options")
    return [r for r in result["runs"] if r[arm] not in set(arms)]


@contextmanager
def scratch(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """A folder for a benchmark's runs: ``keep`` (left in place), or a temporary one deleted when the
    benchmark ends normally (after a failure it stays, to be looked at)."""
    if keep is not None:
        yield keep
        return
    root = Path(tempfile.mkdtemp(prefix=prefix))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def write_result(result: dict, out: Path, plot: Callable[[Path], None] | None = None,
                 indent: int = 2) -> None:
    """Write ``result`` as JSON to ``out`` and, with ``plot``, call it with the PNG path next to it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=indent) + "\n")
    if plot is not None:
        plot(out.with_suffix(".png"))
    print(f"wrote {out}")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spread(values: Iterable[float | None]) -> dict:
    """Median, min and max of the values that exist, and how many do."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), to 4 decimals."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "sd": round(sd, 4)}


def skill_groups(per_skill: dict[str, float], weak_below: float = 0.3,
                 strong_above: float = 0.6) -> tuple[list[str], list[str]]:
    """The weak skills (accuracy below ``weak_below``) and the strong ones (at or above ``strong_above``)."""
    return ([s for s, a in per_skill.items() if a < weak_below],
            [s for s, a in per_skill.items() if a >= strong_above])


def accuracy(student, problems: Sequence) -> dict:
    """The student's greedy accuracy on ``problems``: overall, per skill (first label, in order of
    appearance) and the number of answers it could not parse."""
    attempts = student.answer(problems)
    per_skill: dict[str, list[bool]] = {}
    for a in attempts:
        per_skill.setdefault(a.problem.skill_ids[0], []).append(a.correct)
    return {"overall": sum(a.correct for a in attempts) / len(attempts),
            "per_skill": {s: sum(v) / len(v) for s, v in per_skill.items()},
            "format_errors": sum(a.parsed_answer is None for a in attempts)}


def print_table(rows: dict[str, dict[str, object]], title: str = "") -> None:
    """Print ``rows`` (row name to column to value) as an aligned table; floats to 3 decimals."""
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))

    def cell(value: object) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    table = [["", *columns], *([name, *(cell(row.get(c)) for c in columns)] for name, row in rows.items())]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns) + 1)]
    if title:
        print(title)
    for line in table:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())
