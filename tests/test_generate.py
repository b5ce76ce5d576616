"""``tutorkd generate``: tailored datasets on disk that TRL's trainers take as they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tutorkd.cli import app
from tutorkd.config import ConfigError, GenerateConfig, TeacherLMConfig, TinyStudentConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.generation.card import DatasetCard
from tutorkd.io import read_json, read_jsonl
from tutorkd.schema import Example

CACHE = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
STUDENT = TinyStudentConfig(
    hidden_size=64,
    layers=2,
    heads=2,
    pretrain_steps=40,
    pretrain_batch=32,
    lora_rank=8,
    lora_alpha=16,
    cache_dir=str(CACHE / "test-students"),
)
"""A student that pretrains in seconds: the data's quality is not what these tests check."""
TEACHER = TeacherLMConfig(
    hidden_size=64,
    layers=2,
    heads=2,
    pretrain_steps=200,
    pretrain_batch=32,
    cache_dir=str(CACHE / "test-teachers"),
)
ENV = {"test_per_skill": 60, "val_per_skill": 20, "split_seed": 1}


def spec(tmp_path: Path, method: str, **extra: object) -> Path:
    """A small generate spec in ``tmp_path`` (two tasks, tiny student and teacher)."""
    data = {
        "name": f"tiny-{method}",
        "method": method,
        "size": 24,
        "seed": 0,
        "out_dir": str(tmp_path / "data"),
        "environment": ENV,
        "student": STUDENT.model_dump(),
        "tasks": ["add", "cmp"],
        "teacher_lm": TEACHER.model_dump(),
        "arte": {
            "questions": 6,
            "rationales": 2,
            "probe_per_task": 4,
            "align": {"epochs": 1, "batch_size": 4},
        },
        "persyn": {"calibration_per_task": 4},
        **extra,
    }
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nmethod: magic\n", ["method", "'magic'"]),
        ("name: x\nmethod: persyn\npersyn:\n  teachers: [procedural]\n", ["persyn", "two distinct teachers"]),
        ("name: x\nmethod: persyn\npersyn:\n  teachers: [procedural, llm]\n", ["persyn", "llm block"]),
        ("name: x\nmethod: arte\narte:\n  rationale: 4\n", ["arte.rationale", "unknown field"]),
    ],
)
def test_a_bad_generate_spec_names_the_field(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(GenerateConfig, path)
    for part in expected:
        assert part in str(info.value), str(info.value)
    result = CliRunner().invoke(app, ["generate", str(path)])
    assert result.exit_code == 2 and "invalid config" in result.output


def test_tutorkd_generate_arte_writes_data_sft_and_dpo_trainers_take_directly(tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    result = CliRunner().invoke(app, ["generate", str(spec(tmp_path, "arte"))])
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "tiny-arte-s0"
    card = read_json(out / "card.json", DatasetCard)
    assert card.size == 24 and card.eval_overlap == 0 and card.align is not None and card.preference_pairs > 0
    assert "DPO" in (out / "README.md").read_text()
    examples = read_jsonl(out / "examples.jsonl", Example)
    assert all(
        e.provenance.verification.passed and e.provenance.generator.model.endswith("+dpo:s0")
        for e in examples
    )
    heldout = HeldOut.build(ArithmeticDomain(), 60, 20, seed=1)
    assert not any(e.problem.question in heldout.reserved for e in examples)

    sft = datasets.load_from_disk(str(out / "sft"))
    assert {"prompt", "completion"} <= set(sft.column_names) and len(sft) == 24
    base = card.student_base
    common = {
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base),
        train_dataset=sft,
        processing_class=AutoTokenizer.from_pretrained(base),
        args=SFTConfig(output_dir=str(tmp_path / "sft-run"), **common),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    assert [h["loss"] for h in trainer.state.log_history if "loss" in h]

    pref = datasets.load_from_disk(str(out / "preference"))
    assert {"prompt", "chosen", "rejected"} <= set(pref.column_names) and len(pref) == card.preference_pairs
    teacher = out / "aligned-teacher"
    dpo = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(teacher),
        train_dataset=pref,
        ref_model=AutoModelForCausalLM.from_pretrained(teacher),
        processing_class=AutoTokenizer.from_pretrained(teacher),
        args=DPOConfig(output_dir=str(tmp_path / "dpo-run"), **common),
    )
    dpo.remove_callback(PrinterCallback)
    dpo.train()
    assert [h["rewards/margins"] for h in dpo.state.log_history if "rewards/margins" in h]

    again = CliRunner().invoke(app, ["generate", str(spec(tmp_path, "arte"))])
    assert again.exit_code == 2 and "already exists" in again.output


def test_tutorkd_generate_persyn_routes_and_records_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", str(spec(tmp_path, "persyn"))])
    assert result.exit_code == 0, result.output
    card = read_json(tmp_path / "data" / "tiny-persyn-s0" / "card.json", DatasetCard)
    assert [r.task for r in card.routes] == ["add", "cmp"]
    assert all(set(r.scores) == {"procedural", "teacher_lm"} for r in card.routes)
    examples = read_jsonl(tmp_path / "data" / "tiny-persyn-s0" / "examples.jsonl", Example)
    routed = {r.task: r.teacher for r in card.routes}
    for e in examples:
        assert e.provenance.generator.engine == routed[e.provenance.skill_id.split(".")[0]]


def test_tutorkd_generate_stat_syn_targets_the_missing_skills(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", str(spec(tmp_path, "stat_syn", tasks=None))])
    assert result.exit_code == 0, result.output
    examples = read_jsonl(tmp_path / "data" / "tiny-stat_syn-s0" / "examples.jsonl", Example)
    assert len(examples) == 24
    assert {e.provenance.generator.engine for e in examples} == {"stat_synthesis"}
