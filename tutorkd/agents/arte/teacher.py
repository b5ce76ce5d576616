"""ARTE (Liu et al. 2024): align a teacher LM with its student's preferences, then regenerate.

1. Draft: per task prompt (a skill tag), ``questions`` distinct usable questions from the teacher at its
   temperature, each with ``rationales`` sampled solutions (prompt: the tag and the question).
2. Preferences: every distinct verified (question, solution) is scored by the student on the task's
   preference set, ŝ_r: for a trained student by its learning signal (``ProbeGain``: probe-loss
   reduction after one SGD step on it), for a prompted one by its one-shot accuracy (``ICLAccuracy``).
   A question's score ŝ_q is the mean over its sampled solutions (ARTE eq. 3-4). The preference set is
   ``probe_per_task`` validation problems of the task's leaves, stratified by the student's likelihood
   of their gold solution (evenly spaced quantiles; a documented simplification of ARTE's IRT
   selection, which needs several students).
3. Pairs: question level, chosen from the top and rejected from the bottom ``question_share`` of ŝ_q
   (prompt: the tag; each with its best/worst solution); rationale level, argmax against argmin ŝ_r
   per question (prompt: the tag and the question).
4. Align: TRL ``DPOTrainer`` on both sets, full fine-tune against a frozen copy of the teacher.
5. The aligned teacher then generates through ``CharTeacherEngine`` like the original ("Original
   Teacher" is the same pipeline without step 4).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Container, Sequence
from pathlib import Path

from tutorkd.agents.arte.char_lm import CharTeacherLM, Draft, parse, tag
from tutorkd.agents.arte.dpo import AlignStats, PreferencePair, align_teacher
from tutorkd.agents.arte.learning_signal import PreferenceSignal, StudentSignals
from tutorkd.agents.baselines.procedural import derive_seed
from tutorkd.config import ArteConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut, normalize
from tutorkd.schema import Problem, Record

log = logging.getLogger(__name__)


class QuestionDraft(Record):
    """A draft question of one task with its sampled solutions, parsed."""

    task: str
    question: str
    skill_id: str
    solutions: tuple[Draft, ...]


class ScoredSolution(Record):
    """One verified solution of a draft question and the student's ŝ_r for it."""

    completion: str
    style: str
    samples: int
    """How many of the question's sampled solutions rendered to this one."""
    score: float


class ScoredQuestion(Record):
    """A draft question with its distinct scored solutions and ŝ_q (mean over the sampled solutions)."""

    task: str
    question: str
    skill_id: str
    solutions: tuple[ScoredSolution, ...]
    unusable: int
    """Sampled solutions that did not parse (counted, not scored)."""
    score: float


class DraftStats(Record):
    """What drafting one task produced."""

    task: str
    examples_sampled: int
    rejected: dict[str, int]
    """Reason (``malformed``, ``off_skill``, ``eval_partition``, ``duplicate``) to count, for questions."""
    questions: int
    solutions_sampled: int
    solutions_unusable: int


def probe_sets(
    signals: StudentSignals, domain: ArithmeticDomain, heldout: HeldOut, tasks: Sequence[str], k: int
) -> dict[str, list[Problem]]:
    """Per task, ``k`` validation problems of its leaves at evenly spaced quantiles of the student's
    likelihood of their gold rationale solution (from the hardest to the easiest for it)."""
    out: dict[str, list[Problem]] = {}
    for task in tasks:
        problems = [p for leaf in domain.tree.leaves_under(task) for p in heldout.val[leaf]]
        likelihood = signals.learnability([(p.question, domain.completion(p, "rationale")) for p in problems])
        ranked = [p for _, p in sorted(zip(likelihood, problems, strict=True), key=lambda x: x[0])]
        k_task = min(k, len(ranked))
        out[task] = [ranked[i * len(ranked) // k_task] for i in range(k_task)]
    return out


def draft(
    teacher: CharTeacherLM, tasks: Sequence[str], cfg: ArteConfig, exclude: Container[str], seed: int
) -> tuple[list[QuestionDraft], list[DraftStats]]:
    """Per task, up to ``cfg.questions`` distinct usable questions outside ``exclude`` (the evaluation
    partition), each with ``cfg.rationales`` sampled solutions; and what drafting each task rejected."""
    out: list[QuestionDraft] = []
    stats: list[DraftStats] = []
    for t_index, task in enumerate(tasks):
        seen: set[str] = set()
        questions: list[tuple[str, str]] = []
        rejected: Counter[str] = Counter()
        sampled = 0
        for attempt in range(8):
            if len(questions) >= cfg.questions:
                break
            drafts = teacher.examples(task, 2 * cfg.questions + 8, derive_seed(seed, "q", t_index, attempt))
            sampled += len(drafts)
            for d in drafts:
                if d.problem is None:
                    rejected[d.reject or "malformed"] += 1
                elif d.problem.question in exclude:
                    rejected["eval_partition"] += 1
                elif normalize(d.problem.question) in seen or len(questions) >= cfg.questions:
                    rejected["duplicate" if normalize(d.problem.question) in seen else "surplus"] += 1
                else:
                    seen.add(normalize(d.problem.question))
                    questions.append((d.problem.question, d.problem.skill_ids[0]))
        if len(questions) < cfg.questions:
            log.warning("ARTE task %s: drafted %d of %d questions", task, len(questions), cfg.questions)
        n = cfg.rationales
        texts = teacher.sample(
            [tag(task) + q for q, _ in questions for _ in range(n)], derive_seed(seed, "r", t_index)
        )
        task_drafts = [
            QuestionDraft(
                task=task,
                question=q,
                skill_id=skill,
                solutions=tuple(parse(teacher.domain, task, q + t) for t in texts[i * n : (i + 1) * n]),
            )
            for i, (q, skill) in enumerate(questions)
        ]
        out += task_drafts
        stats.append(
            DraftStats(
                task=task,
                examples_sampled=sampled,
                rejected=dict(rejected),
                questions=len(questions),
                solutions_sampled=len(texts),
                solutions_unusable=sum(s.completion is None for d in task_drafts for s in d.solutions),
            )
        )
    return out, stats


def score(
    signal: PreferenceSignal, drafts: Sequence[QuestionDraft], probes: dict[str, list[Problem]]
) -> list[ScoredQuestion]:
    """ŝ_r for each distinct usable solution (``signal`` on its task's preference set) and ŝ_q."""
    scored: list[ScoredQuestion] = []
    for task in dict.fromkeys(d.task for d in drafts):
        questions = [d for d in drafts if d.task == task]
        distinct = sorted(
            {(d.question, s.completion) for d in questions for s in d.solutions if s.completion is not None}
        )
        gains = dict(zip(distinct, signal.scores(distinct, probes[task]), strict=True))
        for d in questions:
            usable = [s for s in d.solutions if s.completion is not None and s.style is not None]
            if not usable:
                continue
            counts = Counter((s.completion, s.style) for s in usable)
            solutions = tuple(
                ScoredSolution(completion=c, style=st, samples=n, score=gains[(d.question, c)])
                for (c, st), n in counts.items()
            )
            mean = sum(gains[(d.question, s.completion)] for s in usable) / len(usable)
            scored.append(
                ScoredQuestion(
                    task=task,
                    question=d.question,
                    skill_id=d.skill_id,
                    solutions=solutions,
                    unusable=len(d.solutions) - len(usable),
                    score=mean,
                )
            )
    return scored


def preference_pairs(scored: Sequence[ScoredQuestion], cfg: ArteConfig, seed: int) -> list[PreferencePair]:
    """Question-level and rationale-level pairs (see the module docstring)."""
    rng = random.Random(derive_seed(seed, "pairs"))
    pairs: list[PreferencePair] = []
    for task in dict.fromkeys(s.task for s in scored):
        qs = sorted((s for s in scored if s.task == task), key=lambda s: s.score)
        k = max(1, int(len(qs) * cfg.question_share))
        bottom, top = qs[:k], qs[-k:]
        n_pairs = cfg.question_pairs or max(1, len(qs) // 2)
        for _ in range(n_pairs if len(qs) >= 2 else 0):
            w, lose = rng.choice(top), rng.choice(bottom)
            if w.score <= lose.score:
                continue
            best = max(w.solutions, key=lambda s: s.score)
            worst = min(lose.solutions, key=lambda s: s.score)
            pairs.append(
                PreferencePair(
                    level="question",
                    task=task,
                    prompt=tag(task),
                    chosen=w.question + best.completion,
                    rejected=lose.question + worst.completion,
                    margin=w.score - lose.score,
                )
            )
        for q in qs:
            best, worst = max(q.solutions, key=lambda s: s.score), min(q.solutions, key=lambda s: s.score)
            if best.completion != worst.completion and best.score > worst.score:
                pairs.append(
                    PreferencePair(
                        level="rationale",
                        task=task,
                        prompt=tag(task) + q.question,
                        chosen=best.completion,
                        rejected=worst.completion,
                        margin=best.score - worst.score,
                    )
                )
    return pairs


class ArteRun(Record):
    """Everything one ARTE alignment did, for the dataset card and the benchmark."""

    aligned_dir: str
    drafts: tuple[DraftStats, ...]
    probe_per_task: dict[str, int]
    scored: tuple[ScoredQuestion, ...]
    pairs: tuple[PreferencePair, ...]
    align: AlignStats


def run_arte(
    teacher: CharTeacherLM,
    signals: StudentSignals,
    signal: PreferenceSignal,
    heldout: HeldOut,
    tasks: Sequence[str],
    cfg: ArteConfig,
    exclude: Container[str],
    seed: int,
    out_dir: str | Path,
) -> ArteRun:
    """Steps 1-4 of ARTE: draft, collect the student's preferences (``signal``; ``signals`` picks the
    preference sets), build pairs, DPO the teacher into ``out_dir``. Generating with the aligned teacher
    (step 5) is ``CharTeacherEngine``'s job."""
    drafts, stats = draft(teacher, tasks, cfg, exclude, seed)
    probes = probe_sets(signals, teacher.domain, heldout, tasks, cfg.probe_per_task)
    scored = score(signal, drafts, probes)
    pairs = preference_pairs(scored, cfg, seed)
    align = align_teacher(teacher.model_dir, pairs, cfg.align, out_dir, seed)
    return ArteRun(
        aligned_dir=str(out_dir),
        drafts=tuple(stats),
        probe_per_task={t: len(p) for t, p in probes.items()},
        scored=tuple(scored),
        pairs=tuple(pairs),
        align=align,
    )
