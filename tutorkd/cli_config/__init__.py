"""``tutorkd config``: every field of a config with its type, default and docs, and JSON Schemas.

A package rather than ``tutorkd/cli_config.py`` because ``tutorkd/`` already holds the 12 modules a
folder may (``tests/test_architecture.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel

from tutorkd.config import ConfigError, GenerateConfig, RunConfig, SweepConfig
from tutorkd.config.reference import json_schema, render_config

config_app = typer.Typer(
    help="Show every config field (type, default, docs) as YAML, or write a JSON Schema for editors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Command = Literal["teach", "generate", "eval", "sweep"]
CommandArg = Annotated[Command, typer.Argument(
    help="Whose config: teach (a run config, RunConfig), generate (a generate spec, GenerateConfig), "
         "eval (an eval suite, EvalConfig) or sweep (a grid of runs, SweepConfig).")]


def root_model(command: Command) -> type[BaseModel]:
    """The config class that ``tutorkd COMMAND`` reads."""
    if command == "eval":
        # Why imported here: evals sit above the config package and load more than `config` needs.
        from tutorkd.evals.suite import EvalConfig

        return EvalConfig
    return {"teach": RunConfig, "generate": GenerateConfig, "sweep": SweepConfig}[command]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@config_app.command()
def show(
    command: CommandArg = "teach",
    section: Annotated[str | None, typer.Option(
        help="Show only this part: a dotted path of sections, e.g. student, teacher.stat. Where a field "
             "is a choice of kinds (environment: arithmetic, gsm8k, math; student: tiny, hf), the default "
             "kind is shown; add the kind to see another: environment.gsm8k, student.hf.")] = None,
) -> None:
    """Print the default config as commented YAML: every field with its docs, type and default.

    The output is itself a valid config: saved as a file it gives the defaults. Fields without a
    default are commented out and marked `# required`; fill them in.
    """
    try:
        text = render_config(root_model(command), command, section or "")
    except ConfigError as exc:
        _fail(str(exc))
        return
    typer.echo(text, nl=False)


@config_app.command()
def schema(
    command: CommandArg = "teach",
    out: Annotated[Path | None, typer.Option(help="Write it to this file instead of printing it.")] = None,
) -> None:
    """Print (or write) the config's JSON Schema, for editors that check and complete YAML files."""
    text = json.dumps(json_schema(root_model(command)), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        _fail(f"--out {out}: cannot write: {exc.strerror}; pick a writable path")
    typer.echo(f"schema: {out}", err=True)
