"""Progress reporting (``tutorkd.progress``): real pretraining, LoRA training and generation report their
steps to the installed reporter, and ``tutorkd teach`` draws them as bars in the terminal."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tutorkd import progress
from tutorkd.config import TinyStudentConfig
from tutorkd.protocols import SamplingConfig

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Recorded:
    """One task as a reporter saw it."""

    description: str
    total: float | None
    done: float = 0
    notes: list[str] = field(default_factory=list)

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        self.done += steps
        if note is not None:
            self.notes.append(note)

    def set_total(self, total: float) -> None:
        self.total = total


class Recorder:
    """A reporter that keeps every task it is given."""

    def __init__(self) -> None:
        self.tasks: list[Recorded] = []

    @contextmanager
    def task(self, description: str, total: float | None) -> Iterator[progress.Bar]:
        self.tasks.append(Recorded(description, total))
        yield self.tasks[-1]

    def named(self, prefix: str) -> list[Recorded]:
        return [t for t in self.tasks if t.description.startswith(prefix)]


def prompts(domain, n: int) -> list[str]:
    rng = random.Random(5)
    return [domain.prompt(p) for skill in domain.tree.leaves() for p in domain.sample(skill, 2, rng)][:n]


def test_the_default_reporter_shows_nothing_and_reporting_restores_it():
    with progress.task("nobody watches", total=3) as bar:
        bar.advance(note="ignored")
        bar.set_total(4)
    recorder = Recorder()
    with pytest.raises(RuntimeError), progress.reporting(recorder):
        with progress.task("seen", total=2) as bar:
            bar.advance(2)
        raise RuntimeError
    with progress.task("after", total=1):
        pass
    assert [(t.description, t.done) for t in recorder.tasks] == [("seen", 2)]


def test_pretraining_reports_every_step_with_its_loss(domain, tmp_path):
    from tutorkd.students.pretrain import pretrain_base

    cfg = TinyStudentConfig(hidden_size=32, layers=1, heads=2, pretrain_steps=6, pretrain_batch=4,
                            cache_dir=str(tmp_path))
    recorder = Recorder()
    with progress.reporting(recorder):
        pretrain_base(cfg, domain, domain.default_pretrain_mix)
    (task,) = recorder.tasks
    assert (task.description, task.total, task.done) == ("pretraining the base student", 6, 6)
    assert len(task.notes) == 6 and all(re.fullmatch(r"loss \d+\.\d{3}", n) for n in task.notes)


def test_lora_training_reports_optimizer_steps(domain, tiny_base, tiny_cfg, tmp_path):
    from tutorkd.students.lora import train_lora

    rng = random.Random(6)
    problems = [p for skill in domain.tree.leaves()[:3] for p in domain.sample(skill, 4, rng)]
    pairs = [(domain.prompt(p), domain.completion(p, "direct")) for p in problems]
    cfg = tiny_cfg.model_copy(update={"epochs": 1, "batch_size": 4})
    recorder = Recorder()
    with progress.reporting(recorder):
        stats = train_lora(tiny_base, pairs, tmp_path / "adapter", cfg, seed=0)
    (task,) = recorder.tasks
    assert task.description == "training a LoRA adapter on 12 examples"
    assert stats.steps == 3 and task.total == task.done == 3
    assert len(task.notes) == 3 and task.notes[-1] == f"loss {stats.last_loss:.3f}"


def test_transformers_generation_advances_per_batch(domain, tiny_base):
    from tutorkd.llm.hf_backend import TransformersBackend

    recorder = Recorder()
    with progress.reporting(recorder):
        backend = TransformersBackend(tiny_base, batch_size=4)
        done = backend.generate(prompts(domain, 10), SamplingConfig(max_tokens=6))
    assert len(done) == 10
    loading, generating = recorder.tasks
    assert loading.description == f"loading {tiny_base.name} (transformers)" and loading.total is None
    assert generating.description == "generating 10 completions" and generating.total == generating.done == 10


@pytest.mark.vllm
def test_vllm_generation_feeds_finished_requests_without_changing_them(domain, vllm_backend, monkeypatch):
    from tutorkd.llm import vllm_backend as module

    asked = prompts(domain, 12)
    sampled = SamplingConfig(max_tokens=8, temperature=1.0, seed=3, logprobs=True)
    recorder = Recorder()
    with progress.reporting(recorder):
        fed = vllm_backend.generate(asked, sampled)
    (task,) = recorder.tasks
    assert (task.description, task.total, task.done) == ("generating 12 completions", 12, 12)
    monkeypatch.setattr(module, "_feeding", lambda bar: False)  # vLLM's own use_tqdm=False
    assert vllm_backend.generate(asked, sampled) == fed


def test_display_draws_a_bar_per_task_and_the_rounds_bar():
    from tutorkd.loop import LoopEvent

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=160)
    display = progress.Display(console)
    printer = progress.EventPrinter(display, rounds=2)
    with display, printer:
        with progress.task("pretraining the base student", total=4) as bar:
            bar.advance(note="loss 1.234")
            display.progress.refresh()
        printer(LoopEvent(node="train", round=1, message="trained r1"))
        display.progress.refresh()
    with progress.task("after the display", total=1):
        pass  # the default reporter is back
    text = out.getvalue()
    for shown in ("pretraining the base student", "1/4", "loss 1.234", "rounds trained", "1/2", "trained r1"):
        assert shown in text, (shown, text)
    assert "after the display" not in text


def test_teach_shows_the_pretraining_training_and_generation_bars(tmp_path):
    """``tutorkd teach`` in a (forced) interactive terminal: a tiny base pretrained for the run, one round."""
    student = {"hidden_size": 32, "layers": 1, "heads": 2, "pretrain_steps": 40, "pretrain_batch": 8,
               "epochs": 1, "batch_size": 8, "lora_rank": 8, "lora_alpha": 16, "cache_dir": str(tmp_path)}
    cfg = {"environment": {"test_per_skill": 10, "val_per_skill": 10, "budget": 18, "rounds": 1},
           "teacher": {"name": "uniform", "policy": "uniform", "per_round": 18},
           "student": student, "backend": {"kind": "transformers"}, "runs_root": str(tmp_path / "runs")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    # Why these variables: rich draws live bars only on an interactive terminal, which a pipe is not.
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "tutorkd.cli", "teach", str(tmp_path / "run.yaml")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stdout)  # drop colours and cursor moves
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for shown in ("pretraining the base student", "training a LoRA adapter on 18 examples",
                  "generating 90 completions", "rounds trained", "held-out test accuracy"):
        assert shown in out, (shown, out)
    assert "Traceback" not in proc.stderr
