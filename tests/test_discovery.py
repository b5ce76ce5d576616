"""Skill discovery on self-written word problems: labelling, clustering, mapping, the labeler interface, and
the fallback without an LLM (the questions themselves clustered)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_llm import build_tiny_llm

from tutorkd.agents.stat.profile import build_profile
from tutorkd.config import TeacherLLMConfig
from tutorkd.config.environment import DiscoveryConfig
from tutorkd.environments import discovery
from tutorkd.environments.discovery import (
    MIN_SKILL_SIZE,
    characteristic_words,
    cluster,
    cluster_questions,
    discover,
    discover_skills,
    load_problems,
    normalise,
)
from tutorkd.environments.tables import problem_id
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import Attempt, Feedback, Problem, StructureLevel, StudentVersion

DATA = Path(__file__).resolve().parent / "data" / "word_problems.jsonl"
PROBLEMS = load_problems(DATA)
WORDS = [Problem(id=problem_id("words", row["question"]), question=row["question"], answer=row["answer"],
                 skill_ids=()) for row in map(json.loads, (DATA.parent / "word_problems_300.jsonl").open())]


class LabelBackend:
    """Labels by keyword: a valid JSON skill, or a deliberately bad answer for some problems."""

    def generate(self, prompts: Sequence[str], params: SamplingConfig,
                 version: StudentVersion | None = None) -> list[Completion]:
        out = []
        for p in prompts:
            if "dollar" in p:
                text = json.dumps({"skill": "Money: adding & subtracting prices"})
            elif " cm" in p or "meters" in p or " m " in p:
                text = json.dumps({"skill": "perimeter and area of shapes"})
            elif "hour" in p or "minutes" in p:
                text = "{skill: time}"  # not JSON
            elif "share" in p or "equally" in p:
                text = json.dumps({"skill": "4 2"})  # valid JSON, but no word in it
            else:
                text = json.dumps({"skill": "whole number arithmetic"})
            out.append(Completion(text=text, prompt_tokens=len(p), completion_tokens=len(text)))
        return out

    def close(self) -> None:
        pass


def test_the_word_problems_load_without_labels() -> None:
    assert len(PROBLEMS) == 30 and len({p.id for p in PROBLEMS}) == 30
    assert all(p.skill_ids == () and p.answer.isdigit() and p.question.endswith("?") for p in PROBLEMS)


def test_a_malformed_problem_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n'
                   '{"id": "b", "q": "2+2?", "answer": "4"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: expected keys id, question, answer"):
        load_problems(bad)


def test_labels_are_normalised_to_lowercase_words() -> None:
    assert normalise("  Money: adding & subtracting PRICES!! ") == "money adding subtracting prices"


def test_clustering_groups_similar_labels_within_k_and_numbers_by_first_appearance() -> None:
    texts = ["carry in addition", "addition with carry", "long division", "division of numbers",
             "carry in addition", "addition carrying"]
    groups = cluster(texts, k=2, seed=0)
    assert groups == [0, 0, 1, 1, 0, 0]
    assert cluster(texts, k=2, seed=0) == groups  # deterministic
    assert len(set(cluster(texts, k=10))) == 5  # never more clusters than distinct labels
    assert set(cluster(texts, k=1)) == {0}
    with pytest.raises(ValueError, match="at least one category"):
        cluster(texts, k=0)


def test_discovery_counts_invalid_labels_and_maps_every_question() -> None:
    llm = StructuredLLM(LabelBackend, SamplingConfig(max_tokens=40), structured=True)
    found = discover_skills(PROBLEMS, llm, k=4)
    assert found.invalid == {"invalid_json": 4, "no_letters": 1}  # 4 time problems, 1 equal share
    assert set(found.assignment) == {p.id for p in PROBLEMS}
    assert 1 <= len(found.categories) <= 4
    assert {c.id for c in found.categories} == set(found.assignment.values())
    by_id = {p.id: p for p in PROBLEMS}
    assert found.labels["wp05"] == "money adding subtracting prices"
    assert found.labels["wp07"] == normalise(by_id["wp07"].question)  # invalid: clustered by its question
    money = {found.assignment[pid] for pid, label in found.labels.items()
             if label == "money adding subtracting prices"}
    assert len(money) == 1  # one label, one category
    assert llm.usage.calls == 30
    catalogue = found.catalogue()
    assert [s.id for s in catalogue] == [c.id for c in found.categories]


def test_discovered_skills_label_open_ended_errors_for_the_profile() -> None:
    found = discover_skills(PROBLEMS, StructuredLLM(LabelBackend, SamplingConfig(), structured=True), k=4)
    wrong = [Attempt(problem=p.model_copy(update={"id": f"x:{p.question}"}), output="A:0", parsed_answer="0",
                     correct=False) for p in PROBLEMS[:10]]
    unknown = Attempt(problem=PROBLEMS[0].model_copy(update={"question": "What is 2+2?"}), output="A:5",
                      parsed_answer="5", correct=False)
    fb = Feedback(level=StructureLevel.OPEN_ENDED, round=0, errors=(*wrong, unknown), budget_used=0,
                  budget_total=100)
    profile = build_profile(fb, found.labeler())
    assert (profile.difficult, profile.invalid, sum(profile.counts.values())) == (11, 1, 10)
    assert set(profile.counts) <= {c.id for c in found.categories}
    expected = {c: sum(found.assignment[p.id] == c for p in PROBLEMS[:10]) for c in profile.counts}
    assert profile.counts == expected


def test_a_tiny_random_llm_runs_the_whole_pipeline(tmp_path: Path) -> None:
    model = build_tiny_llm(tmp_path / "llm")
    llm = StructuredLLM.from_config(TeacherLLMConfig(model=str(model), backend="transformers", max_tokens=40,
                                                  temperature=1.0))
    try:
        found = discover_skills(PROBLEMS, llm, k=5, seed=1)
    finally:
        llm.close()
    valid = 30 - sum(found.invalid.values())
    assert set(found.invalid) <= {"invalid_json", "schema", "no_letters"} and 0 <= valid <= 30
    assert set(found.assignment) == {p.id for p in PROBLEMS} and 1 <= len(found.categories) <= 5
    questions = {normalise(p.question) for p in PROBLEMS}
    assert sum(label in questions for label in found.labels.values()) >= 30 - valid
    assert llm.usage.calls == 30 and llm.usage.tokens_out > 0


def test_characteristic_words_are_those_more_common_inside_than_out() -> None:
    inside = ["sam buys pens for dollars", "ada buys a bag for dollars", "the price in dollars"]
    outside = ["the train travels kilometers", "sam drives kilometers for hours"]
    assert characteristic_words(inside, outside) == ["dollars", "buys", "ada"]  # ties: alphabetical
    assert characteristic_words(outside, inside, n=1) == ["kilometers"]  # "the", "for": function words


def test_without_an_llm_the_questions_cluster_into_named_skills() -> None:
    found = cluster_questions(WORDS, k=6, seed=1234)
    sizes = [list(found.assignment.values()).count(c.id) for c in found.categories]
    assert 1 < len(found.categories) <= 6 and min(sizes) >= MIN_SKILL_SIZE
    assert found.method == "questions" and found.invalid == {}
    assert set(found.assignment) == {p.id for p in WORDS}
    assert all(c.labels == () and len(c.name.split()) == 3 for c in found.categories)
    money = {found.assignment[p.id] for p in WORDS if "dollar bill" in p.question}
    assert len(money) == 1  # one template, one skill
    assert "dollars" in next(c.name for c in found.categories if c.id in money)
    assert cluster_questions(WORDS, k=6, seed=1234) == found  # deterministic
    assert [s.description for s in found.catalogue()] == [c.name for c in found.categories]


def test_too_few_questions_make_one_skill() -> None:
    found = cluster_questions(WORDS[: 2 * MIN_SKILL_SIZE - 1], k=6)
    assert [(c.id, c.name) for c in found.categories] == [("c0", "all questions")]
    assert set(found.assignment.values()) == {"c0"}


def test_discover_asks_the_llm_only_where_the_config_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[TeacherLLMConfig] = []

    def from_config(cfg: TeacherLLMConfig) -> StructuredLLM:
        asked.append(cfg)
        return StructuredLLM(LabelBackend, SamplingConfig(max_tokens=40), structured=True)

    monkeypatch.setattr(discovery.StructuredLLM, "from_config", from_config)
    assert discover(PROBLEMS, DiscoveryConfig(skills=4)).method == "questions" and not asked
    found = discover(PROBLEMS, DiscoveryConfig(llm=TeacherLLMConfig(model="m"), skills=4))
    assert found.method == "llm" and [c.model for c in asked] == ["m"]
    assert found.invalid == {"invalid_json": 4, "no_letters": 1}
