"""``tutorkd report``: one self-contained HTML file about one or more runs.

Sections: an overview of the runs; the comparison tables of ``tutorkd compare`` with a median
learning curve per teacher; then, per run, the per-skill learning curves, the skill tree coloured by
accuracy per round, the teaching costs, the generated data's statistics with sample examples, the
contamination check, saved eval-suite results, and the student-model views a teacher wrote (only
for the files in ``STUDENT_MODEL_FILES`` that exist).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

from tutorkd.evals import html as h
from tutorkd.evals.accounting import RunAccount, load_run
from tutorkd.evals.compare import Comparison, compare, cost_rows, pair_rows, round_rows, teacher_rows
from tutorkd.evals.contamination import check_run, eval_questions
from tutorkd.evals.runs import HeldOutMismatch, run_heldout
from tutorkd.evals.suite import SuiteReport, result_rows
from tutorkd.io import atomic_write_text, read_json, read_jsonl
from tutorkd.loop import round_dir
from tutorkd.schema import Example

STUDENT_MODEL_FILES: dict[str, str] = {
    "Skill profile": "skill_profile.json",
    "Mental-model calibration": "calibration.json",
    "Diagnosed bugs": "diagnosis.json",
    "Corrective principles": "principles.json",
    "First wrong steps (TPD)": "slips.json",
    "Synthesis filters (STAT-Syn)": "synthesis.json",
}
"""Section title to the file a student-modelling teacher writes with its plan, ``rounds/r{k}/<file>``
(the ``views()`` of STAT, ToM and TPD teachers and of STAT-Syn's engine; any JSON is rendered). A
section appears for the rounds where its file exists and is skipped otherwise."""

SAMPLE_EXAMPLES = 4
"""Examples shown per round, kept and rejected each."""


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write the report on ``run_dirs`` to ``out`` (atomically) and return ``out``."""
    runs = [load_run(Path(d)) for d in run_dirs]
    cmp = compare(runs)
    body = [
        f"<h1>tutorkd report</h1><p class='muted'>{len(runs)} run(s), held-out sets: "
        f"{h.esc(cmp.heldout_key)}</p>",
        _overview(runs),
        _comparison(cmp, runs),
    ]
    body += [_run_section(r, open_=i == 0) for i, r in enumerate(runs)]
    out = Path(out)
    atomic_write_text(out, h.page("tutorkd report", "\n".join(body)))
    return out


def _overview(runs: list[RunAccount]) -> str:
    header = ["run", "teacher", "seed", "level", "rounds", "base acc", "final acc", "trained", "wall s"]
    rows = [
        [
            Path(r.run_dir).name,
            r.teacher,
            str(r.seed),
            r.level,
            str(len(r.rounds) - 1),
            f"{r.curve[0]:.3f}",
            f"{r.curve[-1]:.3f}",
            str(r.examples[2]),
            f"{r.seconds:.1f}",
        ]
        for r in runs
    ]
    return "<h2>Runs</h2>" + h.table(header, rows)


def _comparison(cmp: Comparison, runs: list[RunAccount]) -> str:
    parts = [
        "<h2>Comparison of teachers</h2>",
        "<p class='muted'>Test accuracy: median over seeds with a 95% percentile-bootstrap interval. "
        "Costs: mean per run, and per percentage point of test accuracy gained. Paired tests use the "
        "seeds both teachers ran; with few seeds read the sign-flip p-value.</p>",
        h.table(*teacher_rows(cmp)),
        h.table(*cost_rows(cmp)),
        "<h3>Test accuracy by round</h3>",
        h.table(*round_rows(cmp)),
        h.png_img(_teacher_curves(cmp), "median test accuracy by round per teacher"),
    ]
    if cmp.pairs:
        parts += ["<h3>Paired tests (a - b)</h3>", h.table(*pair_rows(cmp))]
    return "\n".join(parts)


def _teacher_curves(cmp: Comparison) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # Why: headless; no display is ever needed.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    for t in cmp.teachers:
        xs = list(range(len(t.per_round)))
        ax.plot(xs, [x.estimate for x in t.per_round], marker="o", label=f"{t.teacher} (n={len(t.seeds)})")
        ax.fill_between(xs, [x.low for x in t.per_round], [x.high for x in t.per_round], alpha=0.2)
    ax.set_xlabel("round (0 = base student)")
    ax.set_ylabel("held-out test accuracy (median over seeds)")
    ax.set_xticks(range(max(len(t.per_round) for t in cmp.teachers)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return h.figure_png(fig)


def _run_section(run: RunAccount, open_: bool) -> str:
    run_dir = Path(run.run_dir)
    parts = [
        f"<details{' open' if open_ else ''}><summary>{h.esc(run_dir.name)}: teacher {h.esc(run.teacher)}, "
        f"seed {run.seed}, {h.esc(run.level)}</summary>",
        "<h3>Per-skill learning curves</h3>",
        h.png_img(_learning_curve(run_dir), f"{run_dir.name} learning curves"),
        "<h3>Skill tree: test accuracy by round</h3>",
        _skill_tree(run),
        "<h3>Teaching costs</h3>",
        _costs(run),
        "<h3>Generated data</h3>",
        _data(run_dir, len(run.rounds)),
        "<h3>Contamination</h3>",
        _contamination(run_dir),
    ]
    parts += _suites(run_dir)
    views, missing = _student_model(run_dir)
    parts += views
    if missing:
        parts.append(
            f"<p class='muted'>No student-model files of these kinds in this run: "
            f"{h.esc(', '.join(missing))}.</p>"
        )
    return "\n".join(parts) + "</details>"


def _learning_curve(run_dir: Path) -> bytes:
    from tutorkd.evals.plots import plot_learning_curve

    with tempfile.TemporaryDirectory() as tmp:
        return plot_learning_curve(run_dir, Path(tmp) / "curve.png").read_bytes()


def _skill_tree(run: RunAccount) -> str:
    """Each branch then its leaves, one column per round, each cell coloured by its accuracy.

    A leaf goes under the longest branch id that prefixes it (ids are dotted paths, ``add.carry``).
    """
    rounds = run.rounds
    branches = [s.skill_id for s in rounds[0].test.per_node]
    under: dict[str | None, list[str]] = {}
    for leaf in (s.skill_id for s in rounds[0].test.per_skill):
        parents = [b for b in branches if leaf.startswith(b + ".")]
        under.setdefault(max(parents, key=len) if parents else None, []).append(leaf)
    order = [row for b in branches for row in [(b, True), *((leaf, False) for leaf in under.get(b, []))]]
    order += [(leaf, False) for leaf in under.get(None, [])]
    scores = [{s.skill_id: s for s in (*r.test.per_skill, *r.test.per_node)} for r in rounds]
    header = ["skill", "n"] + [r.student.name for r in rounds]
    rows, colours = [], []
    for skill, _ in order:
        accs = [sc[skill].accuracy for sc in scores]
        rows.append([skill, str(scores[0][skill].n), *(f"{a:.2f}" for a in accs)])
        colours.append([None, None, *(h.accuracy_colour(a) for a in accs)])
    rows.append(["overall", str(rounds[0].test.n), *(f"{r.test.accuracy:.2f}" for r in rounds)])
    colours.append([None, None, *(h.accuracy_colour(r.test.accuracy) for r in rounds)])
    classes = ["branch" if b else "leaf" for _, b in order] + ["branch"]
    return h.table(header, rows, colours=colours, row_classes=classes)


def _costs(run: RunAccount) -> str:
    header = ["round", "student", "generated", "kept", "trained", "rejected"]
    header += [f"{p} s" for p in ("plan", "generate", "verify", "train", "evaluate")] + ["tokens in/out"]
    rows = []
    for r in run.rounds:
        rejected = ", ".join(f"{n} {why}" for why, n in sorted(r.rejected.items()) if why != "ok") or "-"
        tokens = "-" if r.usage is None else f"{r.usage.tokens_in}/{r.usage.tokens_out}"
        counts = [str(x) for x in (r.round, r.student.name, r.generated, r.kept, r.trained)]
        t = r.times
        times = [f"{x:.2f}" for x in (t.plan, t.generate, t.verify, t.train, t.evaluate)]
        rows.append([*counts, rejected, *times, tokens])
    return h.table(header, rows, text_columns=(5,))


def _data(run_dir: Path, n_rounds: int) -> str:
    """Trained examples per skill and style by round, then a few kept and rejected examples."""
    per_round = {
        k: read_jsonl(round_dir(run_dir, k) / "data.jsonl", Example)
        for k in range(1, n_rounds)
        if (round_dir(run_dir, k) / "data.jsonl").exists()
    }
    if not per_round:
        return "<p class='muted'>No training data yet.</p>"
    counts = {k: Counter(s for e in exs for s in e.problem.skill_ids) for k, exs in per_round.items()}
    styles = {k: Counter(e.provenance.generator.style for e in exs) for k, exs in per_round.items()}
    skills = sorted({s for c in counts.values() for s in c})
    header = ["skill", *(f"r{k}" for k in per_round)]
    rows = [[s, *(str(counts[k][s]) for k in per_round)] for s in skills]
    rows.append(
        ["styles", *(", ".join(f"{n} {st}" for st, n in sorted(styles[k].items())) for k in per_round)]
    )
    parts = [h.table(header, rows)]
    for k, exs in per_round.items():
        sample = [[e.provenance.skill_id or "-", e.prompt, e.completion] for e in _spread(exs)]
        parts.append(f"<p>Round {k}: {len(exs)} trained examples, e.g.</p>")
        parts.append(h.table(["skill", "prompt", "completion"], sample, text_columns=(1, 2)))
        rejected_path = round_dir(run_dir, k) / "rejected.jsonl"
        rejected = _spread(read_jsonl(rejected_path, Example)) if rejected_path.exists() else []
        if rejected:
            rows = [[e.provenance.verification.reason, e.prompt, e.completion] for e in rejected]
            parts.append(h.table(["rejected as", "prompt", "completion"], rows, text_columns=(1, 2)))
    return "\n".join(parts)


def _spread(examples: list[Example]) -> list[Example]:
    """``SAMPLE_EXAMPLES`` examples evenly spaced through the list (data is written skill by skill)."""
    n = min(SAMPLE_EXAMPLES, len(examples))
    return [examples[i * len(examples) // n] for i in range(n)]


def _contamination(run_dir: Path) -> str:
    try:
        heldout = run_heldout(run_dir)
    except HeldOutMismatch as exc:  # shown in the report: the check cannot be made, which is not "clean"
        return f"<p><b>Not checked</b>: {h.esc(exc)}.</p>"
    report = check_run(run_dir, eval_questions(heldout))
    rows = [
        [
            s.split,
            str(s.questions),
            str(s.exact),
            str(s.near),
            "; ".join(f"{p.eval_question} ~ {p.train_question} ({p.kind})" for p in s.evidence) or "-",
        ]
        for s in report.splits
    ]
    verdict = "clean" if report.clean else "OVERLAP FOUND"
    return (
        f"<p>{report.train_examples} training examples ({report.train_questions} distinct questions) "
        f"against the eval sets: <b>{verdict}</b>. <span class='muted'>{h.esc(report.definition)}.</span></p>"
        + h.table(["split", "eval questions", "exact", "near", "examples"], rows, text_columns=(4,))
    )


def _suites(run_dir: Path) -> list[str]:
    """Saved ``tutorkd eval`` results of this run (``RUN_DIR/evals/*.json``)."""
    parts = []
    for path in sorted((run_dir / "evals").glob("*.json")):
        report = read_json(path, SuiteReport)
        parts.append(
            f"<h3>Eval suite {h.esc(report.suite)}: {h.esc(report.student.name)} vs base "
            f"({h.esc(report.interval)})</h3>"
        )
        for split in report.splits:
            parts += [f"<p>{h.esc(split.split)} split</p>", h.table(*result_rows(split))]
    return parts


def _student_model(run_dir: Path) -> tuple[list[str], list[str]]:
    """HTML for each ``STUDENT_MODEL_FILES`` entry that exists, and the file names that never do."""
    rounds = 0
    while round_dir(run_dir, rounds).is_dir():
        rounds += 1
    parts, missing = [], []
    for title, name in STUDENT_MODEL_FILES.items():
        found = [k for k in range(rounds) if (round_dir(run_dir, k) / name).exists()]
        if not found:
            missing.append(name)
            continue
        parts.append(f"<h3>{h.esc(title)}</h3>")
        for k in found:
            parts.append(f"<p>Round {k} ({h.esc(name)})</p>")
            parts.append(h.json_view(json.loads((round_dir(run_dir, k) / name).read_text())))
    return parts, missing
