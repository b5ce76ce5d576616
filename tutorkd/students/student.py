"""The embedded tiny student: a pretrained character-level base plus one LoRA adapter per round.

The same class serves a pretrained Hugging Face model (``tutorkd.students.hf``): only the loading
differs, plus the keyword options real models need (answer budget, stop strings, training device and
length, and an engine to put to sleep while training).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tutorkd.config import HFStudentConfig, TinyStudentConfig
from tutorkd.protocols import Backend, Completion, Domain, Phases, SamplingConfig
from tutorkd.schema import Attempt, Example, Problem, StudentVersion, Trained
from tutorkd.students.lora import train_lora
from tutorkd.students.pretrain import MAX_LENGTH

log = logging.getLogger(__name__)

ANSWER_TOKENS = 48
"""Generation budget per answer: the longest arithmetic completion is about 30 characters."""
ANSWER_MARK = "A:"


class LoRAStudent:
    """A student whose versions are the base model and LoRA adapters ``r1``, ``r2``, ... on it.

    Implements ``tutorkd.protocols.Student``. Answers are greedy, through ``backend`` (which serves
    every version from one engine); training runs TRL on the CPU and saves the adapter of round ``r``
    under ``work_dir/adapters/r{r}``, with vLLM LoRA id ``r``. With ``cfg.train_processes`` > 1 the
    training runs in processes of its own, launched from ``work_dir/train/r{r}`` (its config and log).

    ``confidence`` is the probability of the answer: exp of the summed logprobs of the tokens after
    the first ``A:`` (the span that ``Domain.check`` parses) plus the token that closes it (whitespace
    or EOS; none when generation was cut off). It is ``None`` for a format error. One token per
    character is what makes the span exact, so a tokenizer that is not character-level is an error.
    """

    def __init__(
        self,
        domain: Domain,
        backend: Backend,
        base_dir: str | Path,
        cfg: TinyStudentConfig | HFStudentConfig,
        work_dir: str | Path,
        seed: int = 0,
        *,
        answer_tokens: int = ANSWER_TOKENS,
        stop: tuple[str, ...] = (),
        char_confidence: bool = True,
        max_length: int = MAX_LENGTH,
        device: Literal["cpu", "cuda"] = "cpu",
        phases: Phases | None = None,
    ) -> None:
        self.answer_tokens, self.stop, self.char_confidence = answer_tokens, stop, char_confidence
        """Generation budget and stop strings of an answer; whether ``confidence`` is computed (it needs
        a character-level tokenizer)."""
        self.max_length, self.device, self.phases = max_length, device, phases
        """Training sequence length and device; the engine that sleeps while the trainer runs."""
        self.domain = domain
        self.backend = backend
        self.base_dir = Path(base_dir)
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.seed = seed
        self._version = StudentVersion(name="base", round=0)

    @property
    def version(self) -> StudentVersion:
        """The version that ``answer`` uses."""
        return self._version

    def use(self, version: StudentVersion) -> None:
        """Make ``version`` current (used when a run resumes)."""
        if version.adapter_path is not None and not Path(version.adapter_path).is_dir():
            raise FileNotFoundError(
                f"adapter of student version {version.name} is missing: {version.adapter_path}"
            )
        self._version = version

    def answer(
        self, problems: Sequence[Problem], explanations: Sequence[str | None] | None = None
    ) -> list[Attempt]:
        """Greedy answers, with each explanation (where not ``None``) placed in the prompt."""
        if explanations is None:
            explanations = [None] * len(problems)
        if len(explanations) != len(problems):
            raise ValueError(f"{len(explanations)} explanations for {len(problems)} problems")
        prompts = [self.domain.prompt(p, e) for p, e in zip(problems, explanations, strict=True)]
        params = SamplingConfig(max_tokens=self.answer_tokens, temperature=0.0, logprobs=self.char_confidence,
                                seed=self.seed, stop=self.stop)
        completions = self.backend.generate(prompts, params, self._version)
        attempts = []
        for problem, explanation, completion in zip(problems, explanations, completions, strict=True):
            parsed, correct = self.domain.check(problem, completion.text)
            attempts.append(
                Attempt(
                    problem=problem,
                    output=completion.text,
                    parsed_answer=parsed,
                    correct=correct,
                    explanation=explanation,
                    confidence=answer_confidence(completion)
                    if parsed is not None and self.char_confidence else None,
                )
            )
        return attempts

    def train(self, examples: Sequence[Example], round: int, init: StudentVersion | None) -> Trained:
        """Fit version ``r{round}`` on the examples' (prompt, completion) pairs, make it current, and
        return it with its training stats.

        ``init`` with an adapter continues from that adapter; ``None`` (or the base) starts a fresh one.
        An adapter already saved for this round (a run interrupted before it recorded the round, then
        resumed) is replaced; the backends reload an id whose weights changed.
        """
        if round < 1:
            raise ValueError(f"training round must be >= 1 (0 is the base), got {round}")
        out_dir = self.work_dir / "adapters" / f"r{round}"
        if out_dir.exists():
            log.warning("replacing the adapter of round %d left by an earlier attempt: %s", round, out_dir)
            shutil.rmtree(out_dir)
        init_adapter = init.adapter_path if init is not None else None
        if self.phases is not None:
            self.phases.sleep()
        try:
            stats = train_lora(
                self.base_dir,
                [(e.prompt, e.completion) for e in examples],
                out_dir,
                self.cfg,
                init_adapter=init_adapter,
                seed=self.seed + round,
                max_length=self.max_length,
                device=self.device,
                launch_dir=self.work_dir / "train" / f"r{round}",
            )
        finally:
            if self.phases is not None:
                self.phases.wake_up()
        self._version = StudentVersion(
            name=f"r{round}", round=round, adapter_path=str(out_dir), lora_int_id=round
        )
        return Trained(version=self._version, stats=stats)


def answer_confidence(completion: Completion) -> float | None:
    """exp(sum of logprobs) of the answer after the first ``A:`` and its closing token; ``None`` without one.

    Needs one logprob per character of ``completion.text`` (an EOS logprob may follow).
    """
    text, logprobs = completion.text, completion.token_logprobs
    start = text.find(ANSWER_MARK)
    if start < 0:
        return None
    if len(logprobs) not in (len(text), len(text) + 1):
        raise ValueError(
            f"{len(logprobs)} token logprobs for {len(text)} characters: confidence needs a character-level "
            "tokenizer and a backend called with logprobs=True"
        )
    start += len(ANSWER_MARK)
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    # Why include the closing token (whitespace or EOS) when there is one: the student then also
    # commits to the answer being complete ("8" is not "85"), and an empty answer gets no free 1.0.
    end = min(end + 1, len(logprobs))
    return math.exp(sum(logprobs[start:end]))
