"""Run an eval suite on a student version saved in a run directory (``tutorkd eval``).

The student is rebuilt from the run's own ``config.yaml``: the same domain, held-out sets, cached base
model, backend and LoRA adapters, so the suite scores exactly what the run trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tutorkd.config import ConfigError
from tutorkd.environments.heldout import HeldOut
from tutorkd.evals.contamination import run_training_examples
from tutorkd.evals.suite import EvalConfig, SuiteReport, run_suite
from tutorkd.io import read_json, write_json
from tutorkd.loop import round_dir
from tutorkd.rundir import HELDOUT_FILE, load_run_config
from tutorkd.schema import RoundEval, StudentVersion


class HeldOutMismatch(ConfigError):
    """A run's held-out sets cannot be rebuilt: this version of tutorkd draws different ones."""


def parse_student_ref(ref: str) -> tuple[Path, int | None]:
    """``RUN_DIR``, ``RUN_DIR:2``, ``RUN_DIR:r2`` or ``RUN_DIR:base`` to (run dir, round or ``None``)."""
    path, sep, suffix = ref.rpartition(":")
    if not sep or "/" in suffix:
        return Path(ref), None
    if suffix == "base":
        return Path(path), 0
    digits = suffix.removeprefix("r")
    if not digits.isdigit():
        raise ConfigError(f"--student {ref!r}: the round after ':' must be a number, r<number> or base")
    return Path(path), int(digits)


def last_round(run_dir: Path) -> int:
    """The highest round whose evaluation finished (0 when only the base was evaluated)."""
    k = 0
    while (round_dir(run_dir, k + 1) / "eval.json").exists():
        k += 1
    return k


def run_version(run_dir: Path, k: int) -> StudentVersion:
    """Student version ``r{k}`` of a run, its adapter located under this ``run_dir`` (which may have
    moved since it was trained); round 0 is the base."""
    if k == 0:
        return StudentVersion(name="base", round=0)
    adapter = run_dir / "adapters" / f"r{k}"
    if not adapter.is_dir():
        raise ConfigError(
            f"{run_dir}: round {k} has no adapter ({adapter} is missing); "
            f"the last finished round is {last_round(run_dir)}"
        )
    # Why lora id k: the same id LoRAStudent.train gives round k, one per version on the engine.
    return StudentVersion(name=f"r{k}", round=k, adapter_path=str(adapter.resolve()), lora_int_id=k)


def run_heldout(run_dir: Path) -> HeldOut:
    """The held-out sets a run was scored on.

    ``RUN_DIR/heldout.json`` when the run saved them; otherwise rebuilt from the run's config (the domain
    factory) and checked against the validation problems recorded in ``rounds/r0/eval.json``, because a
    different version of tutorkd may draw different sets from the same config. Raises
    ``HeldOutMismatch`` then.
    """
    from tutorkd.environments.factory import build_domain

    if (run_dir / HELDOUT_FILE).exists():
        return read_json(run_dir / HELDOUT_FILE, HeldOut)
    env = load_run_config(run_dir, check_plugins=()).environment
    setup = build_domain(env)
    setup.domain.close()
    heldout = setup.heldout
    base_eval = round_dir(run_dir, 0) / "eval.json"
    if base_eval.exists():
        used = [a.problem.question for a in read_json(base_eval, RoundEval).val_attempts]
        if used != [p.question for p in heldout.val_problems()]:
            raise HeldOutMismatch(
                f"{run_dir}: its validation problems differ from the ones this version of tutorkd draws "
                f"from its config (split_seed {env.split_seed}); the run was made by another version, "
                f"and its held-out sets cannot be rebuilt (it has no {HELDOUT_FILE})"
            )
    return heldout


def recorded_base(version: StudentVersion) -> Path | None:
    """The base model ``version``'s adapter was trained on, as PEFT recorded it (``None``: the base)."""
    if version.adapter_path is None:
        return None
    adapter_cfg = json.loads((Path(version.adapter_path) / "adapter_config.json").read_text())
    return Path(adapter_cfg["base_model_name_or_path"])


def evaluate_run(
    cfg: EvalConfig,
    run_dir: Path,
    k: int | None = None,
    on_status: Callable[[str], None] = lambda message: None,
) -> tuple[SuiteReport, Path]:
    """Run suite ``cfg`` on version ``r{k}`` of ``run_dir`` (default: its last round) against the base.

    The student is rebuilt through the run assembly from the run's saved config (of its plug-ins, only a
    plug-in student's code must be importable), on the base model its adapter recorded when that folder
    still exists (else the config's base, which must be the same: an adapter on another base is an
    error, not a silent swap). Writes the report to ``RUN_DIR/evals/{suite}-{version}.json`` and
    returns it with that path.
    """
    from tutorkd.assembly import build_student_setup
    from tutorkd.protocols import Student

    # Why only the student's plug-in: evaluating a version rebuilds the student alone, so a run taught by
    # a plug-in teacher whose code is not installed here can still be evaluated.
    run_cfg = load_run_config(run_dir, check_plugins=(Student,))
    k = last_round(run_dir) if k is None else k
    version = run_version(run_dir, k)
    heldout = run_heldout(run_dir)
    training = [e for e in run_training_examples(run_dir) if e.provenance.round <= k]
    on_status("loading the base student (cached by content hash)")
    recorded = recorded_base(version)
    setup = build_student_setup(run_cfg, run_dir,
                                base_dir=recorded if recorded is not None and recorded.is_dir() else None)
    try:
        if recorded is not None and recorded.resolve() != setup.base_dir.resolve():
            raise ConfigError(
                f"adapter {version.name} was trained on base {recorded}, which is gone, and the "
                f"run's config now builds {setup.base_dir}; this student version cannot be rebuilt"
            )
        student = setup.new_student(run_dir)
        on_status(f"evaluating {version.name} and base on {', '.join(cfg.splits)}")
        report = run_suite(cfg, student, version, setup.domain.tree, heldout, training, run_dir=str(run_dir))
    finally:
        setup.close()
    out = run_dir / "evals" / f"{cfg.name}-{version.name}.json"
    write_json(out, report)
    return report, out
