"""Scaling out: many teaching runs at once on existing machines.

``sweep`` runs a grid of run configs (``tutorkd.config.SweepConfig``) as Ray tasks, skipping finished
runs and resuming interrupted ones, then compares and reports over them (``tutorkd sweep SWEEP.yaml``,
or ``run_sweep`` from Python); ``task`` is what each Ray task runs; ``command`` is the CLI command.
Ray is an optional extra (``pip install 'tutorkd[ray]'``), imported only when a sweep has work to do.
"""

from tutorkd.scale.sweep import PointResult, SweepEvent, SweepResult, run_sweep

__all__ = ["PointResult", "SweepEvent", "SweepResult", "run_sweep"]
