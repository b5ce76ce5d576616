"""Synthetic run directories for the eval tests: the files ``tutorkd teach`` writes, built from the real
record classes with made-up accuracies, so compare and report are tested without training anything."""

from __future__ import annotations

import random
from collections.abc import Container
from pathlib import Path

from tutorkd.config import ArithmeticEnvConfig, RunConfig, TeacherConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import write_json, write_jsonl
from tutorkd.loop import PhaseTimes, VerifyReport, round_dir
from tutorkd.rundir import save_config
from tutorkd.schema import (
    Attempt,
    EvalReport,
    Example,
    GeneratorParams,
    Problem,
    Provenance,
    RoundEval,
    SkillScore,
    StudentVersion,
    TeacherUsage,
    Verification,
)

ENV = ArithmeticEnvConfig(test_per_skill=30, val_per_skill=10, rounds=3, budget=300)
PER_ROUND = 90
"""Trained examples per synthetic round (10 per leaf skill)."""

GAINS = {"uniform": 0.04, "error_driven": 0.10}
"""Per-round accuracy gain of each synthetic teacher: error_driven teaches faster."""


def heldout(domain: ArithmeticDomain) -> HeldOut:
    """The held-out sets every synthetic run is scored on."""
    return HeldOut.build(domain, ENV.test_per_skill, ENV.val_per_skill, ENV.split_seed)


def _report(
    split: str, student: str, accuracy: dict[str, float], n: int, domain: ArithmeticDomain
) -> EvalReport:
    per_skill = tuple(
        SkillScore(skill_id=s, n=n, correct=round(a * n), format_errors=(n - round(a * n)) // 3)
        for s, a in accuracy.items()
    )
    tree = domain.tree
    per_node = tuple(
        SkillScore(
            skill_id=b,
            n=sum(x.n for x in per_skill if x.skill_id in tree.leaves_under(b)),
            correct=sum(x.correct for x in per_skill if x.skill_id in tree.leaves_under(b)),
            format_errors=sum(x.format_errors for x in per_skill if x.skill_id in tree.leaves_under(b)),
        )
        for b in tree.children(None)
    )
    return EvalReport(
        split=split,
        student=student,
        n=sum(x.n for x in per_skill),
        correct=sum(x.correct for x in per_skill),
        per_skill=per_skill,
        per_node=per_node,
    )


def examples(
    domain: ArithmeticDomain, problems: list[Problem], run_id: str = "t", k: int = 1, style: str = "direct"
) -> list[Example]:
    """Verified round-``k`` training examples of ``problems`` in ``style``."""
    gen = GeneratorParams(engine="procedural", seed=0, style=style)
    ok = Verification(passed=True, reason="ok")
    return [
        Example(
            id=f"{run_id}/r{k}/{i:06d}",
            problem=p,
            prompt=domain.prompt(p),
            completion=domain.completion(p, style),
            provenance=Provenance(
                run_id=run_id, round=k, teacher="t", skill_id=p.skill_ids[0], generator=gen, verification=ok
            ),
        )
        for i, p in enumerate(problems)
    ]


def _round_data(
    domain: ArithmeticDomain, exclude: Container[str], run_id: str, k: int, extra: tuple[str, ...]
) -> list[Example]:
    """10 examples per leaf skill, plus the ``extra`` questions (``a+b``, ``a+b+c`` or ``a+b-c``)."""
    rng = random.Random(f"{run_id}:{k}")
    problems = [p for s in domain.tree.leaves() for p in domain.sample(s, PER_ROUND // 9, rng, exclude)]
    problems += [
        domain.make(domain.classify(q), tuple(int(x) for x in q[:-1].replace("-", "+").split("+")))
        for q in extra
    ]
    return examples(domain, problems, run_id, k, "rationale" if k % 2 else "direct")


def make_run(
    root: Path, teacher: str, seed: int, domain: ArithmeticDomain, rounds: int = 3, leak: tuple[str, ...] = ()
) -> Path:
    """A finished run of ``teacher`` with ``seed``: config, r0..r{rounds} evals and costs, training data.

    ``leak`` adds these questions (additions or ``a+b-c`` only) to round 1's training data, to plant
    contamination. Teachers with ``llm`` in their name record teacher token usage.
    """
    run_dir = root / f"{teacher}-s{seed}"
    run_dir.mkdir(parents=True)
    policy = "error_driven" if teacher.startswith("error_driven") else "uniform"
    cfg = RunConfig(environment=ENV, teacher=TeacherConfig(name=teacher, policy=policy), seed=seed)
    save_config(cfg, run_dir)
    sets = heldout(domain)
    exclude = sets.reserved  # as the real engines do: training data only outside the eval partition
    # The loop records every validation attempt; the problems are what identifies the held-out sets.
    val_attempts = tuple(
        Attempt(problem=p, output="A:0", parsed_answer="0", correct=p.answer == "0")
        for p in sets.val_problems()
    )
    rng = random.Random(f"acc:{teacher}:{seed}")
    leaves = domain.tree.leaves()
    base = {s: 0.9 if s.startswith("cmp") else 0.2 + 0.05 * i for i, s in enumerate(leaves)}
    for k in range(rounds + 1):
        noise = rng.uniform(-0.02, 0.02)
        acc = {s: min(1.0, a + k * GAINS[policy] + noise) for s, a in base.items()}
        version = StudentVersion(
            name="base" if k == 0 else f"r{k}",
            round=k,
            adapter_path=None if k == 0 else str(run_dir / "adapters" / f"r{k}"),
            lora_int_id=k,
        )
        write_json(
            round_dir(run_dir, k) / "eval.json",
            RoundEval(
                student=version,
                val=_report("val", version.name, acc, ENV.val_per_skill, domain),
                test=_report("test", version.name, acc, ENV.test_per_skill, domain),
                val_attempts=val_attempts,
            ),
        )
        write_json(
            round_dir(run_dir, k) / "times.json",
            PhaseTimes(
                plan=0.01 * k,
                generate=0.5 * bool(k),
                verify=0.1 * bool(k),
                train=20.0 * bool(k),
                evaluate=4.0,
            ),
        )
        if k == 0:
            continue
        data = _round_data(domain, exclude, run_dir.name, k, leak if k == 1 else ())
        rejected = [
            e.model_copy(
                update={
                    "provenance": e.provenance.model_copy(
                        update={"verification": Verification(passed=False, reason="duplicate")}
                    )
                }
            )
            for e in data[:2]
        ]
        write_jsonl(round_dir(run_dir, k) / "data.jsonl", data)
        write_jsonl(round_dir(run_dir, k) / "rejected.jsonl", rejected)
        write_json(
            round_dir(run_dir, k) / "verify.json",
            VerifyReport(
                generated=len(data) + 2,
                kept=len(data),
                admitted=len(data),
                counts={"duplicate": 2, "malformed": 0},
            ),
        )
        if "llm" in teacher:
            write_json(
                round_dir(run_dir, k) / "teacher_usage.json",
                TeacherUsage(tokens_in=1000, tokens_out=250, calls=2),
            )
    return run_dir


def make_runs(root: Path, domain: ArithmeticDomain) -> list[Path]:
    """Two teachers by three seeds."""
    return [make_run(root, teacher, seed, domain) for teacher in GAINS for seed in (0, 1, 2)]
