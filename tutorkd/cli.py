"""The ``tutorkd`` command line.

Every user error (bad config, missing path, unwritable folder) prints one clear message naming the
field and the fix and exits with code 2; tracebacks are for bugs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from tutorkd.cli_config import config_app
from tutorkd.config import ConfigError, RunConfig, format_validation_error, load_config
from tutorkd.scale.command import sweep

app = typer.Typer(
    help="tutorkd: teacher agents that model their student and generate tailored training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(config_app, name="config")
console = Console()


@app.callback()
def _root() -> None:
    """Teach, evaluate and compare students of teaching environments."""


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _refuse_spec_as_run_config(config: Path) -> None:
    """An environment or teacher spec given where a run config belongs gets the right flag named,
    not a list of its fields as unknown ones."""
    from tutorkd.config import read_yaml

    data = read_yaml(config) if config.is_file() else None
    if not isinstance(data, dict) or data.keys() & {"environment", "teacher", "student", "backend"}:
        return
    if "policy" in data:
        raise ConfigError(f"{config}: this is a teacher spec, not a run config; "
                          f"pass it as --teacher {config}")
    if "level" in data or "kind" in data:
        raise ConfigError(f"{config}: this is an environment spec, not a run config; "
                          f"pass it as --env {config}, or give a run config that names it "
                          "(for gsm8k/math: recipes/gsm8k-qwen.yaml)")


def _read_spec(path: str, field: str) -> dict:
    """The mapping in the spec file ``path`` given for ``field``; ``ConfigError`` if it is not one."""
    from tutorkd.config import resolve_spec

    try:
        data = resolve_spec(path)
    except ValueError as exc:  # a missing file, worded as for a path inside a config
        raise ConfigError(f"{field}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {field} spec must be a YAML mapping of fields, "
                          f"not {type(data).__name__}")
    return data


def resolve_config(config: Path | None, env: Path | None, teacher: Path | None, overrides: dict) -> RunConfig:
    """Defaults < CONFIG file < --env/--teacher spec files < single-value flags, validated once."""
    from pydantic import ValidationError

    if config is not None:
        _refuse_spec_as_run_config(config)
    base = load_config(RunConfig, config) if config else RunConfig()
    data = base.model_dump(mode="json")
    if env is not None:
        data["environment"] = str(env)
    if teacher is not None:
        data["teacher"] = str(teacher)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if isinstance(node[key], str):
                # A spec given as a path (``--env``, or a path in CONFIG): read it, so that a flag
                # overrides one of its fields rather than the whole spec.
                node[key] = _read_spec(node[key], key)
            node = node[key]
        node[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(config or "command line"), exc)) from None


# The options of ``teach``, as aliases so that each help text fits on its own lines.
ConfigArg = Annotated[Path | None, typer.Argument(
    help="Run config YAML (environment, teacher, student, backend, seed). Omit for the embedded default: "
         "the arithmetic skill tree, a uniform teacher, the tiny student on vLLM.")]
EnvOpt = Annotated[Path | None, typer.Option(
    "--env", help="Environment spec, e.g. environments/arithmetic-tree.yaml.")]
TeacherOpt = Annotated[Path | None, typer.Option(
    "--teacher", help="Teacher spec, e.g. agents/open-ended.yaml.")]
SeedOpt = Annotated[int | None, typer.Option(help="Run seed (data generation and training).")]
RoundsOpt = Annotated[int | None, typer.Option(
    help="Teaching rounds (each: plan, generate, verify, train, evaluate).")]
BackendOpt = Annotated[Literal["vllm", "transformers"] | None, typer.Option(
    help="Engine serving the student versions.")]
RunsRootOpt = Annotated[Path | None, typer.Option(help="Folder for new run directories (default: runs/).")]
ResumeOpt = Annotated[Path | None, typer.Option(
    help="Continue an interrupted run from its last finished step.")]


@app.command()
def teach(
    config: ConfigArg = None,
    env: EnvOpt = None,
    teacher: TeacherOpt = None,
    seed: SeedOpt = None,
    rounds: RoundsOpt = None,
    backend: BackendOpt = None,
    runs_root: RunsRootOpt = None,
    resume: ResumeOpt = None,
) -> None:
    """Teach a student for a few rounds and show its per-skill accuracy before and after.

    Each round the teacher reads the environment's feedback on the student, plans data, generates and
    verifies it; the student trains a new LoRA adapter on it and is re-evaluated on held-out problems.
    Everything lands in a new run directory (config, datasets, adapters, reports, learning curve).
    """
    from tutorkd.lifecycle import resume_config, start_run, teach_run

    try:
        if resume is not None:
            asked = None
            if config or env or teacher or seed is not None or rounds is not None or backend:
                asked = resolve_config(config, env, teacher, {"seed": seed, "environment.rounds": rounds,
                                                              "backend.kind": backend})
            cfg, run_dir = resume_config(resume, asked), resume
        else:
            cfg = resolve_config(config, env, teacher, {"seed": seed, "environment.rounds": rounds,
                                                        "backend.kind": backend,
                                                        "runs_root": str(runs_root) if runs_root else None})
            run_dir = start_run(cfg)
    except ConfigError as exc:
        _fail(str(exc))
        return

    from tutorkd.progress import Display, EventPrinter

    def started() -> None:
        console.print(f"[bold]tutorkd teach[/]  run [cyan]{run_dir}[/]  "
                      f"teacher [green]{cfg.teacher.name}[/]  level {cfg.environment.level.value}  "
                      f"rounds {cfg.environment.rounds}  budget {cfg.environment.budget}  "
                      f"backend {cfg.backend.kind}",
                      highlight=False, soft_wrap=True)
        setup_logging(run_dir / "run.log")

    display = Display(console)
    printer = EventPrinter(display, rounds=cfg.environment.rounds)
    # Why one display around the whole run: rich allows one live display at a time; building the run
    # (pretraining, engine start) shows its task bars in it, and the loop adds the bar over rounds.
    try:
        with display:
            teach_run(cfg, run_dir, resume=resume is not None, on_event=printer, on_locked=started,
                      during=printer)
    except ConfigError as exc:
        _fail(str(exc))
        return
    except (Exception, KeyboardInterrupt):
        # Why re-raised: the traceback is the report; the hint says the work done so far is kept.
        console.print(f"[bold red]error:[/] the run stopped; once the cause is fixed (say disk space or "
                      f"memory), continue it with: tutorkd teach --resume {run_dir}", highlight=False,
                      soft_wrap=True)
        raise
    console.print(before_after_table(run_dir))
    # Why soft_wrap: a path broken over two lines cannot be copied or grepped.
    console.print(f"learning curve: [cyan]{run_dir / 'learning_curve.png'}[/]", soft_wrap=True)
    console.print(f"run directory:  [cyan]{run_dir}[/]", soft_wrap=True)


def setup_logging(log_file: Path) -> None:
    """Everything at INFO and above goes to ``log_file``; tutorkd's warnings and anyone's errors also
    to the terminal. Libraries' own handlers and progress bars are switched off so that the terminal
    shows the run's progress (``tutorkd.progress.Display``, whose bars the terminal records scroll
    above), not vLLM's engine banner or a bar per dataset save."""
    import logging
    import os

    # Why env vars: vLLM reads them at import, which comes later (inside the backend).
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers
    from rich.logging import RichHandler

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    logging.captureWarnings(True)  # Why: library FutureWarnings belong in run.log, not on the terminal

    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.setLevel(logging.INFO)
    terminal = RichHandler(console=console, show_path=False, level=logging.WARNING)
    terminal.addFilter(lambda r: r.name.startswith("tutorkd") or r.levelno >= logging.ERROR)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(terminal)


def before_after_table(run_dir: Path) -> Table:
    """Per-skill held-out accuracy of the base student and of the last version."""
    from tutorkd.evals.plots import load_round_evals

    evals = load_round_evals(run_dir)
    first, last = evals[0].test, evals[-1].test
    after = {s.skill_id: s for s in last.per_skill}
    table = Table(title=f"held-out test accuracy: base -> {evals[-1].student.name}")
    for col in ("skill", "n", "before", "after", "change"):
        table.add_column(col, justify="left" if col == "skill" else "right")
    for s in first.per_skill:
        a = after[s.skill_id]
        delta = a.accuracy - s.accuracy
        colour = "green" if delta > 0.02 else "red" if delta < -0.02 else "white"
        table.add_row(s.skill_id, str(s.n), f"{s.accuracy:.3f}", f"{a.accuracy:.3f}",
                      f"[{colour}]{delta:+.3f}[/]")
    delta = last.accuracy - first.accuracy
    table.add_row("[bold]overall", str(first.n), f"{first.accuracy:.3f}", f"{last.accuracy:.3f}",
                  f"[bold]{delta:+.3f}")
    return table


def _rows_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


@app.command("eval")
def eval_(
    spec: Annotated[Path, typer.Argument(help="Eval suite YAML, e.g. evals/arithmetic-heldout.yaml.")],
    student: Annotated[str, typer.Option("--student", help="RUN_DIR or RUN_DIR:ROUND (a number, rN or base; "
                                                           "default: the last round).")],
) -> None:
    """Score a student version of a run against the base student on held-out sets.

    Per-skill, per-branch and overall accuracy with intervals, format errors apart from wrong answers,
    transfer to skills never trained on, forgetting of initially strong skills, and the overlap of
    the run's training data with the eval sets. Writes RUN_DIR/evals/SUITE-VERSION.json.
    """
    from tutorkd.evals.runs import evaluate_run, parse_student_ref
    from tutorkd.evals.suite import EvalConfig, result_rows

    try:
        cfg = load_config(EvalConfig, spec)
        run_dir, round_ = parse_student_ref(student)
        from tutorkd.progress import Display

        with Display(console):  # Why: building the student and its answers show progress bars
            report, out = evaluate_run(cfg, run_dir, round_,
                                       on_status=lambda m: console.print(f"[dim]{m}[/]"))
    except ConfigError as exc:
        _fail(str(exc))
        return
    for split in report.splits:
        title = f"{report.suite}: {report.student.name} vs base on {split.split} ({report.interval})"
        console.print(_rows_table(title, *result_rows(split)))
    for s in report.contamination.splits:
        colour = "green" if s.exact == s.near == 0 else "red"
        trained = report.contamination.train_questions
        console.print(f"contamination {s.split}: [{colour}]{s.exact} exact, {s.near} near[/] of "
                      f"{s.questions} eval questions vs {trained} training questions")
    console.print(f"report: [cyan]{out}[/]", soft_wrap=True)


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (by teacher, one per seed).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write it as JSON here.")] = None,
) -> None:
    """Compare teachers over seeds: accuracy with intervals, learning-curve area, costs per point gained,
    and paired bootstrap tests between teachers on shared seeds."""
    from tutorkd.evals.accounting import load_run
    from tutorkd.evals.compare import compare as compare_runs
    from tutorkd.evals.compare import cost_rows, pair_rows, round_rows, teacher_rows
    from tutorkd.io import write_json

    try:
        cmp = compare_runs([load_run(d) for d in run_dirs])
    except ConfigError as exc:
        _fail(str(exc))
        return
    console.print(_rows_table("test accuracy: median over seeds [95% interval]", *teacher_rows(cmp)))
    console.print(_rows_table("costs: mean per run, and per point of accuracy gained", *cost_rows(cmp)))
    console.print(_rows_table("test accuracy by round", *round_rows(cmp)))
    if cmp.pairs:
        console.print(_rows_table("paired tests on shared seeds (a - b)", *pair_rows(cmp)))
    if json_out is not None:
        try:
            write_json(json_out, cmp)
        except OSError as exc:
            _fail(f"--json {json_out}: cannot write {exc.filename}: {exc.strerror}; pick a writable path")
        console.print(f"json: [cyan]{json_out}[/]", soft_wrap=True)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to report on.")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (plots embedded, no network) on one or more runs."""
    from tutorkd.evals.report import write_report

    try:
        path = write_report(run_dirs, out)
    except ConfigError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"--out {out}: cannot write {exc.filename}: {exc.strerror}; pick a writable path")
        return
    console.print(f"report: [cyan]{path}[/]", soft_wrap=True)


@app.command()
def generate(
    spec: Annotated[Path, typer.Argument(help="Generate spec YAML, e.g. generate/arithmetic-arte.yaml.")],
) -> None:
    """Write a dataset tailored to one student, without a teaching loop: STAT-Syn, ARTE or PerSyn data.

    The dataset lands in OUT_DIR/NAME-sSEED as HF `datasets` on disk (`sft/`: prompt/completion for
    TRL's SFTTrainer; `preference/`: prompt/chosen/rejected for DPOTrainer, ARTE only), every example
    with its provenance (`examples.jsonl`), and a dataset card (`README.md`, `card.json`).
    """
    from tutorkd.config import GenerateConfig
    from tutorkd.generation.dataset import generate_dataset
    from tutorkd.progress import Display

    try:
        cfg = load_config(GenerateConfig, spec)
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"out_dir: cannot create {exc.filename}: {exc.strerror}; pick a writable folder")
        return
    setup_logging(Path(cfg.out_dir) / f"{cfg.name}-s{cfg.seed}.log")
    console.print(f"[bold]tutorkd generate[/]  {cfg.name}  method [green]{cfg.method}[/]  size {cfg.size}  "
                  f"seed {cfg.seed}", highlight=False, soft_wrap=True)
    try:
        with Display(console):  # Why: pretraining the teacher LM and the student's answers show bars
            out = generate_dataset(cfg, on_status=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    except ConfigError as exc:
        _fail(str(exc))
        return
    console.print((out / "README.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"dataset: [cyan]{out}[/]", soft_wrap=True)


app.command()(sweep)  # its body lives in tutorkd/scale/command.py


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
