"""Plots a person would rather look at than read: per-skill learning curves of a run."""

from __future__ import annotations

from pathlib import Path

from tutorkd.io import read_json
from tutorkd.schema import RoundEval


def load_round_evals(run_dir: Path) -> list[RoundEval]:
    """Every finished round evaluation of a run, in round order."""
    evals = []
    k = 0
    while (path := run_dir / "rounds" / f"r{k}" / "eval.json").exists():
        evals.append(read_json(path, RoundEval))
        k += 1
    return evals


def plot_learning_curve(run_dir: Path, out: Path | None = None) -> Path:
    """Per-skill held-out test accuracy by round (one line per skill, overall in black)."""
    import matplotlib

    matplotlib.use("Agg")  # Why: runs headless (CI, SSH); no display is ever needed.
    import matplotlib.pyplot as plt

    evals = load_round_evals(run_dir)
    out = out or run_dir / "learning_curve.png"
    rounds = list(range(len(evals)))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    skills = [s.skill_id for s in evals[0].test.per_skill]
    cmap = plt.get_cmap("tab10")
    for i, skill in enumerate(skills):
        ys = [e.test.skill_accuracy()[skill] for e in evals]
        ax.plot(rounds, ys, marker="o", ms=3, lw=1.4, color=cmap(i % 10), label=skill)
    ax.plot(rounds, [e.test.accuracy for e in evals], color="black", lw=2.5, marker="s", label="overall")
    ax.set_xlabel("round (0 = base student)")
    ax.set_ylabel("held-out test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.set_title(f"{run_dir.name}: per-skill accuracy by round")
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
