"""``tutorkd sweep SWEEP.yaml``: the command's body (``tutorkd/cli.py`` registers it).

One line per run as it starts and ends, then a table of every grid point, the comparison of teachers
and the files written. A bad sweep config exits with code 2 before anything runs; a failed run is
listed with its log, the others go on, and the command exits with code 1 at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tutorkd.config import ConfigError, SweepConfig, load_config
from tutorkd.scale.sweep import SweepEvent, run_sweep

console = Console()

_COLOURS = {"started": "bold", "finished": "green", "resumed": "green", "skipped": "dim",
            "failed": "bold red"}

SpecArg = Annotated[Path, typer.Argument(help="Sweep YAML: a base run, the grid axes (teachers, seeds, "
                                              "students, environments), resources per run, sweep_root.")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="An existing Ray cluster (`ray start --head` prints it, or auto); default: a local Ray "
                      "instance on this machine's cores, shut down at the end.")]


def print_event(event: SweepEvent) -> None:
    """One line per run started or ended, in the style of ``tutorkd teach``'s step lines."""
    colour = _COLOURS[event.what]
    took = f" [dim]({event.seconds:.1f}s)[/]" if event.seconds else ""
    line = f"[{colour}]{event.what:>8}[/] {event.name}{took}"
    if event.what == "failed":
        line += f"  {event.message}" + (f"  log: [cyan]{event.log}[/]" if event.log else "")
    console.print(line, highlight=False, soft_wrap=True)


def sweep(spec: SpecArg, address: AddressOpt = None) -> None:
    """Run a grid of teaching runs (teachers x seeds x students x environments), each a Ray task.

    Each grid point gets its own run folder under sweep_root; finished runs are skipped, interrupted
    ones resumed, so rerunning the same sweep continues it. At the end `compare` and `report` run over
    the finished runs (sweep_root/compare.json, report.html).
    """
    from tutorkd.evals.compare import Comparison, teacher_rows
    from tutorkd.io import read_json

    try:
        cfg = load_config(SweepConfig, spec)
        points = cfg.points()
        console.print(f"[bold]tutorkd sweep[/]  {len(points)} runs  sweep_root [cyan]{cfg.sweep_root}[/]  "
                      f"per run {cfg.resources.num_cpus:g} CPU {cfg.resources.num_gpus:g} GPU  "
                      f"ray {address or 'local'}", highlight=False, soft_wrap=True)
        result = run_sweep(cfg, address, on_event=print_event)
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        # Why no traceback: stopping a sweep is ordinary; Ray and the runs were shut down on the way out.
        console.print(f"[bold red]interrupted:[/] rerun `tutorkd sweep {spec}` to resume the unfinished runs",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    table = Table(title=f"sweep: {len(result.points)} runs")
    for col in ("run", "status", "seconds"):
        table.add_column(col, justify="left" if col != "seconds" else "right")
    for p in result.points:
        table.add_row(p.name, f"[{_COLOURS[p.status]}]{p.status}[/]", f"{p.seconds:.1f}")
    console.print(table)
    for path in result.outputs:
        if path.suffix == ".json":
            header, rows = teacher_rows(read_json(path, Comparison))
            cmp_table = Table(title=f"{path.name}: test accuracy, median over seeds [95% interval]")
            for i, col in enumerate(header):
                cmp_table.add_column(col, justify="left" if i == 0 else "right")
            for row in rows:
                cmp_table.add_row(*row)
            console.print(cmp_table)
        console.print(f"{path.suffix[1:]:>6}: [cyan]{path}[/]", soft_wrap=True)
    for p in result.failed:
        log = f"  log: [cyan]{p.log}[/]" if p.log else ""
        console.print(f"[bold red]failed:[/] {p.name}: {p.message}{log}", highlight=False, soft_wrap=True)
    if result.failed:
        console.print(f"{len(result.failed)} of {len(result.points)} runs failed; fix the cause and rerun "
                      f"`tutorkd sweep {spec}`: finished runs are skipped, the others resumed",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
