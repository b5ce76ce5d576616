"""Mental models: a teacher's prediction of whether its student is right, without and with an explanation.

Two models behind one interface (``MentalModel.predict`` gives a ``Belief`` per item):

- ``LogisticStudentModel``, learned from observed attempts (numpy only, no teacher LLM): logistic
  regression with a mastery term per skill and an intervention effect per skill, plus how much of the
  rationale the explanation gives. Fit it on practice or validation attempts, never on test items.
- ``SimulatedStudent``, the paper's few-shot simulation by a teacher LM: pre- and post-intervention
  prompts with demonstrations of the real student's answers, and P(correct) read off the LM as the mean
  probability of the gold answer's tokens forced after the prompt (the paper's GSM8k rule). A ``Backend``
  only reports logprobs of sampled tokens, so the LM is wrapped in a ``Scorer`` that scores a given
  continuation; ``TransformersScorer`` is one on plain transformers.

``tutorkd.agents.tom.calibration`` measures either against the real student.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tutorkd.agents.tom.interventions import Style, error_steps, explain
from tutorkd.schema import Attempt, Problem, Record


class Belief(Record):
    """A mental model's prediction for one item."""

    pre: float
    """P(the student is right on its own)."""
    post: float
    """P(the student is right with the explanation in context)."""

    @property
    def utility(self) -> float:
        """Expected utility of explaining: ``post - pre``."""
        return self.post - self.pre


class MentalModel(Protocol):
    """Predicts the student's correctness on items, without and with the given explanations."""

    def predict(self, problems: Sequence[Problem], explanations: Sequence[str]) -> list[Belief]:
        """One ``Belief`` per problem, ``post`` with ``explanations[i]`` in context."""
        ...


# --------------------------------------------------------------------------------------------------
# The learned model


class StudentModelState(Record):
    """A fitted ``LogisticStudentModel``: its weights by feature name and the error pattern it saw."""

    weights: dict[str, float]
    error_steps: dict[str, int]
    """Skill id to the rationale step its wrong unexplained attempts most often go wrong at."""
    fitted_on: int


class LogisticStudentModel:
    """Knowledge tracing by logistic regression over skills, with an intervention effect.

    logit P(correct) = b + m[skill] + explained * (e + d[skill] + s * share + f * full), where
    ``share`` is the fraction of the gold rationale's steps the explanation gives and ``full`` says it
    gives them all. With ``difficulty`` an item term ``h * z`` joins it: ``z`` is the length of the item's
    worked rationale in characters, standardized within its skill over the attempts fitted on (a longer
    solution has more digits and carries), so that items of one skill are no longer all alike.
    Fitted by Newton's method with an L2 penalty (strength ``l2``) on every weight but
    the intercept, so a skill with few attempts stays near the overall rate. A problem without a skill
    label uses the shared terms only. It also keeps the student's error pattern per skill (for the
    ``error_step`` explanation style).
    """

    def __init__(self, skills: Sequence[str], l2: float = 0.1, difficulty: bool = False) -> None:
        self.skills = tuple(skills)
        self.l2 = l2
        self.difficulty = difficulty
        self._index = {s: i for i, s in enumerate(self.skills)}
        self.names = ("intercept", "explained", "explained*share", "explained*full",
                      *(f"mastery:{s}" for s in self.skills), *(f"effect:{s}" for s in self.skills),
                      *(("difficulty",) if difficulty else ()))
        self._lengths: dict[str, tuple[float, float]] = {}
        """Skill id to the mean and standard deviation of its fitted items' rationale lengths."""
        self.w = np.zeros(len(self.names))
        self.error_steps: dict[str, int] = {}
        self.fitted_on = 0

    def features(self, problem: Problem, explanation: str | None) -> np.ndarray:
        """The feature vector of ``problem`` answered with ``explanation`` (``None``: unexplained)."""
        x = np.zeros(len(self.names))
        x[0] = 1.0
        k = len(self.skills)
        skill = self._index.get(problem.skill_ids[0]) if problem.skill_ids else None
        if skill is not None:
            x[4 + skill] = 1.0
        if explanation is not None:
            share = min(1.0, len(explanation.split()) / len((problem.rationale or explanation).split()))
            x[1], x[2], x[3] = 1.0, share, float(share >= 1.0)
            if skill is not None:
                x[4 + k + skill] = 1.0
        if self.difficulty and problem.skill_ids and problem.rationale:
            mean, sd = self._lengths.get(problem.skill_ids[0], (0.0, 0.0))
            x[-1] = (len(problem.rationale) - mean) / sd if sd > 0 else 0.0
        return x

    def fit(self, attempts: Sequence[Attempt], iterations: int = 50) -> LogisticStudentModel:
        """Fit on observed attempts (their ``explanation`` says whether one was in context)."""
        if not attempts:
            raise ValueError("cannot fit a student model on no attempts")
        if self.difficulty:
            lengths: dict[str, list[int]] = {}
            for problem in {a.problem.id: a.problem for a in attempts}.values():
                if problem.skill_ids and problem.rationale:
                    lengths.setdefault(problem.skill_ids[0], []).append(len(problem.rationale))
            self._lengths = {s: (float(np.mean(v)), float(np.std(v))) for s, v in lengths.items()}
        x = np.stack([self.features(a.problem, a.explanation) for a in attempts])
        y = np.array([a.correct for a in attempts], dtype=float)
        penalty = np.full(len(self.names), self.l2)
        penalty[0] = 0.0
        w = np.zeros(len(self.names))
        for _ in range(iterations):
            p = _sigmoid(x @ w)
            grad = x.T @ (p - y) + penalty * w
            hess = (x.T * (p * (1 - p))) @ x + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        self.w = w
        self.error_steps = error_steps(attempts)
        self.fitted_on = len(attempts)
        return self

    def p_correct(self, problems: Sequence[Problem], explanations: Sequence[str | None]) -> np.ndarray:
        """P(correct) of each problem with its explanation (``None``: unexplained)."""
        if len(problems) != len(explanations):
            raise ValueError(f"{len(explanations)} explanations for {len(problems)} problems")
        if not problems:
            return np.zeros(0)
        x = np.stack([self.features(p, e) for p, e in zip(problems, explanations, strict=True)])
        return _sigmoid(x @ self.w)

    def predict(self, problems: Sequence[Problem], explanations: Sequence[str]) -> list[Belief]:
        """``Belief`` per problem: unexplained, and with ``explanations[i]``."""
        pre = self.p_correct(problems, [None] * len(problems))
        post = self.p_correct(problems, explanations)
        return [Belief(pre=float(a), post=float(b)) for a, b in zip(pre, post, strict=True)]

    def explanation(self, problem: Problem, style: Style) -> str:
        """``problem`` explained in ``style``, ``error_step`` at this student's usual error step."""
        skill = problem.skill_ids[0] if problem.skill_ids else ""
        return explain(problem, style, self.error_steps.get(skill, 0))

    def personalized(self, problems: Sequence[Problem], styles: Sequence[Style]) -> list[tuple[Style, str]]:
        """Per problem, the style (and its explanation) with the highest predicted P(correct); ties go
        to the earlier style in ``styles``."""
        options = [[self.explanation(p, s) for p in problems] for s in styles]
        post = np.stack([self.p_correct(problems, o) for o in options])
        best = np.argmax(post, axis=0)
        return [(styles[b], options[b][i]) for i, b in enumerate(best)]

    def state(self) -> StudentModelState:
        """The fitted weights and error pattern, as a record."""
        weights = {n: round(float(v), 4) for n, v in zip(self.names, self.w, strict=True)}
        return StudentModelState(weights=weights,
                                 error_steps=dict(sorted(self.error_steps.items())), fitted_on=self.fitted_on)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


# --------------------------------------------------------------------------------------------------
# The few-shot simulation


class Scorer(Protocol):
    """An LM that scores a given continuation of a prompt (teacher forcing)."""

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[tuple[float, ...]]:
        """Logprob of each token of ``continuations[i]`` after ``prompts[i]``."""
        ...


class TransformersScorer:
    """``Scorer`` on a local Hugging Face causal LM (optionally through a PEFT adapter), in float32.

    The prompt's tokens must be a prefix of the tokens of prompt + continuation (always so for
    character tokenizers); a tokenizer that merges across the boundary raises instead of mis-scoring.
    """

    def __init__(self, model_dir: str | Path, *, adapter: str | Path | None = None,
                 batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        self.model = model.eval()
        self.batch_size = batch_size

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[tuple[float, ...]]:
        """Per-token logprobs of each continuation, batched with right padding."""
        import torch

        from tutorkd.students.pretrain import torch_threads

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(continuations)} continuations for {len(prompts)} prompts")
        out: list[tuple[float, ...]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = slice(start, start + self.batch_size)
            pairs = [_unmerged(self.tokenizer, p, c) for p, c in
                     zip(prompts[batch], continuations[batch], strict=True)]
            heads = [head for head, _ in pairs]
            fulls = [full for _, full in pairs]
            width = max(len(f) for f in fulls)
            ids = torch.full((len(fulls), width), self.tokenizer.pad_token_id)
            mask = torch.zeros((len(fulls), width), dtype=torch.long)
            for i, full in enumerate(fulls):
                ids[i, : len(full)], mask[i, : len(full)] = torch.tensor(full), 1
            with torch_threads(), torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                logprobs = torch.log_softmax(logits.float(), -1)
            for i, (head, full) in enumerate(zip(heads, fulls, strict=True)):
                positions = torch.arange(len(head), len(full))
                out.append(tuple(logprobs[i, positions - 1, ids[i, positions]].tolist()))
        return out


def _unmerged(tokenizer, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` and of ``prompt + continuation``, the first a prefix of the second.

    A BPE tokenizer may merge the prompt's trailing space into the continuation (SmolLM2: ``" <"`` is
    one token): then the space is scored as part of the continuation, which is how the model would
    write it. ``ValueError`` when the tokens merge across the boundary anyway."""
    head, full = tokenizer(prompt)["input_ids"], tokenizer(prompt + continuation)["input_ids"]
    if full[: len(head)] != head:
        stripped = prompt.rstrip()
        head = tokenizer(stripped)["input_ids"]
        if stripped == prompt or full[: len(head)] != head:
            raise ValueError("the tokenizer merges tokens across the prompt/continuation boundary")
    return head, full


HEADER = "Simulate an AI model's answer for the given question.\n\n"
"""The paper's instruction line of both simulation prompts."""


class SimulationDemo(Record):
    """One demonstration of the simulation prompts: what the real student answered."""

    question: str
    gold: str
    prediction: str
    """The student's parsed answer (``none`` for a format error), never the gold (the original code's
    GSM8k bug)."""
    explanation: str | None = None
    """The explanation the student had (post-intervention demonstrations only)."""


def simulation_demos(pre: Sequence[Attempt], post: Sequence[Attempt], k: int,
                     rng: random.Random) -> tuple[list[SimulationDemo], list[SimulationDemo]]:
    """``k`` pre- and ``k`` post-intervention demonstrations, each half right and half wrong answers.

    The paper balances by predicted label; for free-form answers the student's right/wrong outcome is
    balanced instead. Both sets are filled independently (the original loop could leave the post set
    short); too few attempts of a kind raise ``ValueError``.
    """
    def pick(attempts: Sequence[Attempt], explained: bool) -> list[SimulationDemo]:
        pool = [a for a in attempts if (a.explanation is not None) == explained]
        chosen = []
        for outcome, n in ((True, k // 2), (False, k - k // 2)):
            kind = [a for a in pool if a.correct == outcome]
            if len(kind) < n:
                kind_name = "explained" if explained else "unexplained"
                raise ValueError(f"need {n} {kind_name} attempts the student "
                                 f"got {'right' if outcome else 'wrong'}, have {len(kind)}")
            chosen += rng.sample(kind, n)
        rng.shuffle(chosen)
        return [SimulationDemo(question=a.problem.question, gold=a.problem.answer,
                               prediction=a.parsed_answer if a.parsed_answer is not None else "none",
                               explanation=a.explanation) for a in chosen]

    return pick(pre, False), pick(post, True)


class SimulatedStudent:
    """The paper's few-shot mental model: a teacher LM simulates the student's answer.

    Pre prompt: ``HEADER`` + demos ``Q: {q}\\nCorrect Answer: {a}\\nAI Predicted Answer: {pred}`` + the
    query; post prompt: the same with ``{explanation} So the answer is {pred}``. P(correct) is the mean
    probability of the gold answer's tokens forced after the prompt.
    """

    def __init__(self, scorer: Scorer, pre_demos: Sequence[SimulationDemo],
                 post_demos: Sequence[SimulationDemo]) -> None:
        self.scorer, self.pre_demos, self.post_demos = scorer, tuple(pre_demos), tuple(post_demos)

    @staticmethod
    def _block(question: str, gold: str, explanation: str | None) -> str:
        said = "" if explanation is None else f"{explanation} So the answer is "
        return f"Q: {question}\nCorrect Answer: {gold}\nAI Predicted Answer: {said}"

    def prompt(self, problem: Problem, explanation: str | None) -> str:
        """The pre (``explanation`` ``None``) or post simulation prompt, ending where the answer goes."""
        demos = self.pre_demos if explanation is None else self.post_demos
        shots = [self._block(d.question, d.gold, d.explanation) + d.prediction for d in demos]
        return HEADER + "\n\n".join([*shots, self._block(problem.question, problem.answer, explanation)])

    def predict(self, problems: Sequence[Problem], explanations: Sequence[str]) -> list[Belief]:
        """``Belief`` per problem from the two simulation prompts."""
        if len(problems) != len(explanations):
            raise ValueError(f"{len(explanations)} explanations for {len(problems)} problems")
        prompts = [self.prompt(p, None) for p in problems] + [self.prompt(p, e) for p, e in
                                                              zip(problems, explanations, strict=True)]
        golds = [p.answer for p in problems] * 2
        probs = [float(np.mean(np.exp(lp))) for lp in self.scorer.score(prompts, golds)]
        n = len(problems)
        return [Belief(pre=probs[i], post=probs[n + i]) for i in range(n)]
