"""The figures of the benchmarks' results, each drawn from the result a script is about to write.

One function per benchmark script, named after it; each takes the result (or its summary) and the path
of the PNG next to the result JSON, and reads everything it draws from the result, so that a committed
result can be drawn again. Kept out of the scripts so that each reads as its experiment.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import common
import numpy as np


def teaching_efficiency(summary: dict, out: Path) -> None:
    """``teaching_efficiency.py``: weak, strong and overall test accuracy against examples; per teacher
    the median line and the min-max band over seeds."""
    plt = common.pyplot()
    panels = (("weak_accuracy", "initially weak skills"), ("strong_accuracy", "initially strong skills"),
              ("test_accuracy", "all skills"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110, sharey=True)
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for t, s in summary["teachers"].items():
            xs = [r["examples"]["median"] for r in s["rounds"]]
            if s["rounds"][0][metric]["median"] is None:
                continue
            ax.plot(xs, [r[metric]["median"] for r in s["rounds"]], marker="o", ms=3, label=t)
            low, high = [r[metric]["min"] for r in s["rounds"]], [r[metric]["max"] for r in s["rounds"]]
            ax.fill_between(xs, low, high, alpha=0.15)
        if metric == "weak_accuracy":
            target = summary["target"]
            ax.axhline(target, color="black", ls=":", lw=1,
                       label=f"target {target:.3f} ({summary['target_rule']})")
            # issue 17's bar: a quarter of uniform's examples to its own final accuracy (not drawn for a
            # target given on the command line, which uniform need not reach in this run)
            if "uniform" in summary["teachers"] and summary["target_rule"] != "given":
                quarter = 0.25 * summary["teachers"]["uniform"]["rounds"][-1]["examples"]["median"]
                ax.axvline(quarter, color="grey", ls="--", lw=1, label="0.25x uniform's examples")
        ax.set_title(title)
        ax.set_xlabel("training examples")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out test accuracy (median, min-max over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def principles(summary: dict, path: Path) -> None:
    """``principles.py``, three panels: final per-skill test accuracy, coverage by round (bugs, and fact
    slips at the first wrong step), targeted-bug errors by round."""
    plt = common.pyplot()
    teachers = summary["teachers"]
    skills = list(next(iter(teachers.values()))["final_test_per_skill"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    width = 0.8 / len(teachers)
    for i, (name, t) in enumerate(teachers.items()):
        xs = [j + i * width for j in range(len(skills) + 1)]
        ys = [t["final_test_per_skill"][s]["mean"] for s in skills] + [t["final_test_accuracy"]["mean"]]
        es = [t["final_test_per_skill"][s]["sd"] for s in skills] + [t["final_test_accuracy"]["sd"]]
        axes[0].bar(xs, ys, width, yerr=es, label=name, capsize=2)
        rounds = range(len(t["coverage_by_round"]))
        line, = axes[1].plot(rounds, [c["mean"] for c in t["coverage_by_round"]], marker="o",
                             label=f"{name}: a bug")
        axes[1].plot(rounds, [c["mean"] for c in t["fact_slip_share_by_round"]], marker="x", ls="--",
                     color=line.get_color(), label=f"{name}: a fact slip")
        if t["targeted_bug_errors_by_round"] is not None:
            ys = [c["mean"] for c in t["targeted_bug_errors_by_round"]]
            axes[2].plot(rounds, ys, marker="o", label=name)
    axes[0].set_xticks([j + 0.4 - width / 2 for j in range(len(skills) + 1)], skills + ["overall"],
                       rotation=35, ha="right", fontsize=8)
    axes[0].set_ylabel("final test accuracy (mean, sd over seeds)")
    axes[0].set_ylim(0, 1.02)
    for ax in axes[1:]:
        ax.set_xticks(range(len(next(iter(teachers.values()))["coverage_by_round"])))
    axes[1].set_title("validation errors explained by ...")
    axes[1].set_xlabel("round")
    axes[1].set_ylim(0, 1.02)
    axes[2].set_title("validation errors of the bugs TPD targeted")
    axes[2].set_xlabel("round")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def intervention(result: dict, png: Path) -> None:
    """``intervention.py``: ``{png stem}_budget.png``, ``_personalization.png``,
    ``_personalization_length.png``, ``_calibration.png`` and (with multi-turn rounds) ``_multiturn.png``
    next to ``png``."""
    plt = common.pyplot()
    summary, budgets = result["summary"], result["setup"]["budgets"]

    def median_curves(key: str) -> dict[str, list[float]]:
        """Per condition, the median over seeds of its ``key`` curve at each budget."""
        first = result["seeds"][0]["single_turn"][key]
        return {c: [statistics.median(s["single_turn"][key][c][j] for s in result["seeds"])
                    for j in range(len(budgets))] for c in first}

    titles = {"budget": "interventions by strategy", "personalization": "EU order, explanation conditions",
              "personalization_length": "equal explanation length: personalized vs one style"}
    for name, curves in (("budget", summary["median_curves"]),
                         ("personalization", median_curves("personalization_curves")),
                         ("personalization_length", median_curves("length_budget_curves"))):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for label, ys in curves.items():
            dashed = label in ("true_utility", "oracle")
            ax.plot(budgets, ys, marker="o", label=label, linestyle="--" if dashed else "-")
        xlabel = ("budget (share of the length of full rationales for every item)"
                  if name == "personalization_length" else "budget B (share of items explained)")
        ax.set(xlabel=xlabel, ylabel="student accuracy (median over seeds)", title=titles[name])
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png.with_name(f"{png.stem}_{name}.png"), dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for kind in ("pre", "post_full"):
        bins = [b for s in result["seeds"] for b in s["single_turn"]["calibration"][kind]["bins"] if b["n"]]
        ax.scatter([b["mean_predicted"] for b in bins], [b["observed"] for b in bins],
                   s=[4 + b["n"] / 4 for b in bins], alpha=0.6, label=f"learned model, {kind} (all seeds)")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="predicted P(correct)", ylabel="observed accuracy",
           title="mental-model reliability (test items)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png.with_name(f"{png.stem}_calibration.png"), dpi=120)
    plt.close(fig)
    turns = summary["median_multi_turn_accuracy_by_round"]
    if turns:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for label, ys in turns.items():
            ax.plot(range(len(ys)), ys, marker="o", label=label)
        ax.set(xlabel="round (training on the chosen items)",
               ylabel="test accuracy alone (median over seeds)",
               title="multi-turn: what training on the chosen items teaches")
        ax.set_xticks(range(len(next(iter(turns.values())))))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png.with_name(f"{png.stem}_multiturn.png"), dpi=120)
        plt.close(fig)


def preference(summary: dict, png: Path) -> None:
    """``preference.py``: median per-skill accuracy by condition, and the teacher's moved distribution."""
    plt = common.pyplot()
    skills = list(summary["base_accuracy"]["per_skill"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(skills) + 1)
    rows = {"base": [*summary["base_accuracy"]["per_skill"].values(), summary["base_accuracy"]["overall"]]}
    rows |= {c: [*summary["median_per_skill"][c].values(), accuracy]
             for c, accuracy in summary["median_accuracy"].items()}
    for i, (label, ys) in enumerate(rows.items()):
        ax.bar(x + (i - 2) * 0.16, ys, 0.16, label=label)
    ax.set_xticks(x, [*skills, "overall"], rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy (median over seeds)", title="student trained on equal-size data")
    ax.legend(fontsize=8)
    mix = summary["median_skill_mix"]
    for i, c in enumerate(("original", "arte")):
        bx.bar(np.arange(len(skills)) + (i - 0.5) * 0.4, [mix[c][s] for s in skills], 0.4,
               label=f"{c} (rationale share {summary['median_distribution'][c]['rationale_share']:.2f})")
    bx.set_xticks(np.arange(len(skills)), skills, rotation=35, ha="right", fontsize=8)
    bx.set(ylabel="share of the teacher's examples", title="teacher output before / after DPO")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def llm_student(summary: dict, out: Path) -> None:
    """``llm_student.py``: per skill, SmolLM2's base test accuracy and each teacher's after the last
    round (median over seeds); the base's format-error rate as a hatched bar on top of its accuracy."""
    plt = common.pyplot()
    skills = list(summary["base"]["test_accuracy_median"])
    teachers = list(summary["teachers"])
    width = 0.8 / (1 + len(teachers))
    xs = np.arange(len(skills))
    fig, ax = plt.subplots(figsize=(12, 4.2), dpi=110)
    base = [summary["base"]["test_accuracy_median"][s] for s in skills]
    ax.bar(xs, base, width, label="base", color="0.6")
    errors = [summary["base"]["format_error_rate_median"][s] for s in skills]
    ax.bar(xs, errors, width, bottom=base, color="none", edgecolor="0.3", hatch="//",
           label="base format errors")
    for i, t in enumerate(teachers):
        median = next(v for k, v in summary["teachers"][t].items() if k.startswith("test_accuracy_r"))
        ax.bar(xs + (i + 1) * width, [median[s] for s in skills], width, label=f"{t} (after, median)")
    ax.axhline(0.5, color="black", ls=":", lw=1, label="weak below 0.5")
    ax.set_xticks(xs + width * len(teachers) / 2, skills, rotation=30, ha="right")
    ax.set_ylabel("held-out test accuracy")
    ax.set_title("SmolLM2-135M-Instruct as the student: per-skill test accuracy before and after teaching")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def intervention_llm(result: dict, out: Path) -> None:
    """``intervention_llm.py``: per student (base, trained), accuracy against the share of items
    explained (median over seeds) for each strategy with the procedural rationale, and expected utility
    with the LLM teacher's explanations."""
    plt = common.pyplot()
    students = list(result["summary"])
    budgets = result["setup"]["budgets"]
    fig, axes = plt.subplots(1, len(students), figsize=(6.5 * len(students), 4.2), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], students, strict=True):
        s = result["summary"][name]
        for strategy in ("random", "expected_correctness", "expected_utility", "expected_utility_item",
                         "skill_oracle", "true_utility", "misaligned"):
            if strategy in s["median_curves"]:  # the item model: only with --difficulty
                ax.plot(budgets, s["median_curves"][strategy], marker="o", ms=3, label=strategy)
        llm_curves = [x[name]["llm_teacher"]["curves"]["expected_utility"] for x in result["seeds"]]
        llm = [statistics.median(c[j] for c in llm_curves) for j in range(len(budgets))]
        ax.plot(budgets, llm, ls="--", marker="x", ms=4, label="expected_utility, LLM teacher's explanations")
        ax.set_title(f"SmolLM2 {name}: alone {s['accuracy_alone']:.3f}")
        ax.set_xlabel("share of test items explained (budget)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("student accuracy (median over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def principles_llm(result: dict, out: Path) -> None:
    """``principles_llm.py``: per student, held-out weak-skill accuracy of each prompt condition
    (median over seeds, each seed a dot)."""
    plt = common.pyplot()
    summary = {k: v for k, v in result["summary"].items() if "weak_accuracy_median" in v}
    fig, axes = plt.subplots(1, len(summary), figsize=(6.5 * len(summary), 4.2), dpi=110, squeeze=False)
    for ax, (student, s) in zip(axes[0], summary.items(), strict=True):
        names = list(s["weak_accuracy_median"])
        ax.bar(range(len(names)), [s["weak_accuracy_median"][n] for n in names], color="0.7")
        for run in (r for r in result["runs"] if r["student"] == student and r["weak_skills"]):
            ax.plot(range(len(names)), [run["weak_accuracy"][n] for n in names], "o", ms=3, color="black")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"SmolLM2 {student}: weak-skill accuracy by prompt")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("weak-skill accuracy (median; dots: seeds)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def multiturn_llm(summary: dict, out: Path) -> None:
    """``multiturn_llm.py``: per condition, the single-turn utility of its training items (in context)
    beside the test-accuracy gain training on them gave (medians over seeds)."""
    plt = common.pyplot()
    names = list(summary["conditions"])
    single = [summary["conditions"][c]["single_turn_utility"] for c in names]
    gain = [summary["conditions"][c]["test_gain"] for c in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.bar(x - 0.2, single, 0.4, label="single turn: accuracy with explanation - alone (training items)")
    ax.bar(x + 0.2, gain, 0.4, label="multi turn: test accuracy gain after training on them")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, names)
    base = summary["base_accuracy"]
    ax.set_title(f"SmolLM2: in-context utility vs what training teaches (base {base:.3f})")
    ax.set_ylabel("accuracy difference (median over seeds)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
