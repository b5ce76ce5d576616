"""The Python API: ``tutorkd.teach``, ``tutorkd.load_run``, ``tutorkd.generate``.

The same run lifecycle as ``tutorkd teach`` (``tutorkd.lifecycle``), without a terminal::

    import tutorkd

    result = tutorkd.teach({"teacher": "agents/stat-syn.yaml", "environment": {"rounds": 2}})
    print(result.run_dir, result.test_accuracy())
    again = tutorkd.load_run(result.run_dir)

A config is a ``RunConfig``, a mapping of its fields (specs may be given as paths, as in YAML), or the
path of a run config YAML; a bad one raises ``tutorkd.config.ConfigError`` naming the field and fix.
For a loop of your own, ``tutorkd.make_env`` gives DataEnvGym's ``reset``/``step`` environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tutorkd.config import ConfigError, GenerateConfig, RunConfig, format_validation_error, load_config
from tutorkd.loop import LoopEvent
from tutorkd.schema import Record, RoundEval


class RunResult(Record):
    """A teaching run on disk: its directory, its config and its per-round evaluations (r0 = base)."""

    run_dir: Path
    config: RunConfig
    evaluations: tuple[RoundEval, ...]

    @property
    def base(self) -> RoundEval:
        """The base student's evaluation (round 0)."""
        return self.evaluations[0]

    @property
    def final(self) -> RoundEval:
        """The last finished round's evaluation."""
        return self.evaluations[-1]

    def test_accuracy(self) -> list[float]:
        """Held-out test accuracy by round."""
        return [e.test.accuracy for e in self.evaluations]

    def skill_accuracy(self, round: int = -1) -> dict[str, float]:
        """Per-skill held-out test accuracy of one round (default: the last)."""
        return self.evaluations[round].test.skill_accuracy()


def _validated(model: type[RunConfig] | type[GenerateConfig], config: object, what: str):
    """``config`` as ``model``: an instance as it is, a YAML path loaded, a mapping validated."""
    from pydantic import ValidationError

    if isinstance(config, model):
        return config
    if isinstance(config, str | Path):
        return load_config(model, config)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{what}: expected a {model.__name__}, a mapping of its fields or a YAML path, "
                          f"got {type(config).__name__}")
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(what, exc)) from None


def teach(config: RunConfig | Mapping[str, object] | str | Path | None = None, *,
          on_event: Callable[[LoopEvent], None] = lambda event: None) -> RunResult:
    """Run a teaching run to the end (``None``: the embedded default) and return its result.

    ``on_event`` receives the loop's progress (one ``LoopEvent`` per finished step)."""
    from tutorkd.lifecycle import run_teaching

    cfg = RunConfig() if config is None else _validated(RunConfig, config, "config")
    return load_run(run_teaching(cfg, on_event=on_event))


def resume(run_dir: str | Path, *, on_event: Callable[[LoopEvent], None] = lambda event: None) -> RunResult:
    """Continue an interrupted run from its last finished step and return its result."""
    from tutorkd.lifecycle import resume_config, teach_run

    run_dir = Path(run_dir)
    teach_run(resume_config(run_dir), run_dir, resume=True, on_event=on_event)
    return load_run(run_dir)


def load_run(run_dir: str | Path) -> RunResult:
    """A run directory's config and finished evaluations (``ConfigError`` if it is not a run)."""
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.rundir import load_run_config

    run_dir = Path(run_dir)
    return RunResult(run_dir=run_dir, config=load_run_config(run_dir, check_plugins=()),
                     evaluations=tuple(load_round_evals(run_dir)))


def generate(spec: GenerateConfig | Mapping[str, object] | str | Path) -> Path:
    """Write the tailored dataset a generate spec describes (as ``tutorkd generate``); its folder."""
    from tutorkd.generation.dataset import generate_dataset

    return generate_dataset(_validated(GenerateConfig, spec, "spec"))
