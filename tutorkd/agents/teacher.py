"""A teacher is a policy (feedback to plan) plus an engine (plan to examples), built from a config.

A teacher that models its student shows that model to the loop as records (``views``: the loop saves
them in the round's directory, e.g. ``skill_profile.json``), and a policy whose plans depend on
earlier rounds reloads its state from the last round's directory before planning (``restore``), so a
resumed run plans exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from tutorkd.agents.baselines.policies import ErrorDrivenPolicy, UniformPolicy
from tutorkd.agents.baselines.procedural import ProceduralEngine
from tutorkd.agents.dataenvgym.llm_policies import LLMSkillListPolicy, LLMSkillTreePolicy
from tutorkd.agents.dataenvgym.policies import SkillListPolicy, SkillTreePolicy
from tutorkd.agents.stat.profile import EnvironmentLabels, LLMSkillLabeler
from tutorkd.agents.stat.teacher import (
    LLMSolver,
    PoolEngine,
    ProceduralSolver,
    SkillPool,
    StatPolicy,
    SynthesisEngine,
)
from tutorkd.agents.tom.teacher import ItemEngine, ToMPolicy
from tutorkd.agents.tpd.teacher import DiscriminatingEngine, TPDPolicy
from tutorkd.config import TeacherConfig
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Domain, Engine, GenerationContext, Policy, Student
from tutorkd.schema import Example, Feedback, Plan, Record


@runtime_checkable
class Viewable(Protocol):
    """A teacher part with records worth saving each round (its model of the student, its usage)."""

    def views(self) -> list[tuple[str, Record]]:
        """(file name, record) pairs describing the last plan, for ``rounds/r{k}/``."""
        ...


@runtime_checkable
class Restorable(Protocol):
    """A policy whose plans depend on earlier rounds, with its state saved among its views."""

    def restore(self, folder: Path) -> None:
        """Reload the state saved in ``folder`` (the previous round's directory; none there: fresh)."""
        ...


def _leaves(domain: Domain) -> list[str]:
    return domain.tree.leaves()


def _llm(llm: StructuredLLM | None) -> StructuredLLM:
    if llm is None:  # TeacherConfig's validator makes this unreachable from a config
        raise ValueError("this teacher needs an llm block in its config")
    return llm


def _stat_policy(cfg: TeacherConfig, domain: Domain, llm: StructuredLLM | None) -> Policy:
    leaves = set(_leaves(domain))
    labeler = (LLMSkillLabeler(_llm(llm), [n for n in domain.tree.nodes if n.id in leaves])
               if cfg.stat.labeler == "llm" else EnvironmentLabels())
    return StatPolicy(labeler, _leaves(domain), cfg.per_round, cfg.style, cfg.stat.k,
                      cfg.stat.replay_share)


POLICIES: dict[str, Callable[[TeacherConfig, Domain, StructuredLLM | None], Policy]] = {
    "uniform": lambda cfg, domain, llm: UniformPolicy(_leaves(domain), cfg.per_round, cfg.style),
    "error_driven": lambda cfg, domain, llm: ErrorDrivenPolicy(_leaves(domain), cfg.per_round, cfg.style),
    "stat": _stat_policy,
    "skill_list": lambda cfg, domain, llm: SkillListPolicy(cfg.per_round, cfg.style, cfg.skills),
    "skill_tree": lambda cfg, domain, llm: SkillTreePolicy(cfg.per_round, cfg.style, cfg.skills),
    "skill_list_llm": lambda cfg, domain, llm: LLMSkillListPolicy(
        _llm(llm), SkillListPolicy(cfg.per_round, cfg.style, cfg.skills)),
    "skill_tree_llm": lambda cfg, domain, llm: LLMSkillTreePolicy(
        _llm(llm), SkillTreePolicy(cfg.per_round, cfg.style, cfg.skills)),
    "tpd": lambda cfg, domain, llm: TPDPolicy(domain, cfg.per_round, cfg.style, cfg.tpd),
    "tom": lambda cfg, domain, llm: ToMPolicy(domain, cfg.per_round, cfg.tom, cfg.style),
}
"""``TeacherConfig.policy`` to the constructor ``(config, domain, teacher LLM or None)``."""


def _pool(cfg: TeacherConfig, domain: Domain, exclude: Container[str]) -> SkillPool:
    return SkillPool(domain, cfg.stat.pool_per_skill, cfg.stat.pool_seed, exclude)


def _synthesis(cfg: TeacherConfig, domain: Domain, exclude: Container[str],
               llm: StructuredLLM | None) -> Engine:
    solver = (LLMSolver(_llm(llm), domain, cfg.stat.solver_temperature) if cfg.stat.solver == "llm"
              else ProceduralSolver(domain))
    return SynthesisEngine(domain, _pool(cfg, domain, exclude), solver, exclude, cfg.stat.solutions,
                           cfg.stat.min_agree, cfg.stat.references)


ENGINES: dict[str, Callable[[TeacherConfig, Domain, Container[str], StructuredLLM | None], Engine]] = {
    "procedural": lambda cfg, domain, exclude, llm: ProceduralEngine(domain, exclude),
    "stat_pool": lambda cfg, domain, exclude, llm: PoolEngine(domain, _pool(cfg, domain, exclude)),
    "stat_synthesis": _synthesis,
    "discriminating": lambda cfg, domain, exclude, llm: DiscriminatingEngine(domain, exclude),
    "items": lambda cfg, domain, exclude, llm: ItemEngine(domain, exclude),
}
"""``TeacherConfig.engine`` to the constructor ``(config, domain, exclude, teacher LLM or None)``."""


@dataclass(frozen=True)
class Teacher:
    """A named policy and engine; the loop calls ``restore``, ``plan``, ``views``, ``generate`` per round."""

    name: str
    policy: Policy
    engine: Engine
    llm: StructuredLLM | None = None
    """The teacher's own language model, if it uses one (its token usage is one of the views)."""

    def plan(self, feedback: Feedback) -> Plan:
        """Decide what data to make from the student's feedback."""
        return self.policy.plan(feedback)

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples ``plan`` asks for."""
        return self.engine.generate(plan, context)

    def views(self) -> list[tuple[str, Record]]:
        """Records behind the last plan (file name, record), e.g. ``skill_profile.json``; none for the
        baselines. The loop saves them next to the round's ``plan.json``."""
        parts = (self.policy, self.engine, self.llm)
        return [view for part in parts if isinstance(part, Viewable) for view in part.views()]

    def restore(self, folder: Path) -> None:
        """Let a stateful policy reload what it saved in ``folder``; a no-op for the others."""
        if isinstance(self.policy, Restorable):
            self.policy.restore(folder)


@runtime_checkable
class Quizzing(Protocol):
    """A policy that asks the student questions itself (``tom``); ``build_teacher`` attaches the student."""

    def attach(self, student: Student, exclude: Container[str]) -> None:
        """Give the policy the student and the questions it must never draw."""
        ...


def build_teacher(cfg: TeacherConfig, domain: Domain, exclude: Container[str] = frozenset(),
                  student: Student | None = None) -> Teacher:
    """Build the teacher ``cfg`` describes for ``domain``.

    ``exclude`` is the set of questions the engine must never generate (the held-out evaluation
    questions); the verification filter checks this again, but excluding up front wastes no budget.
    ``student`` is required by policies that quiz the student (``tom``) and ignored by the others.
    The teacher LLM, if any, starts on its first call, so building is cheap.
    """
    llm = StructuredLLM.from_config(cfg.llm) if cfg.llm is not None else None
    policy = POLICIES[cfg.policy](cfg, domain, llm)
    if isinstance(policy, Quizzing):
        if student is None:
            raise ValueError(f"policy {cfg.policy} quizzes the student: pass student= to build_teacher")
        policy.attach(student, exclude)
    engine = ENGINES[cfg.engine](cfg, domain, exclude, llm)
    return Teacher(name=cfg.name, policy=policy, engine=engine, llm=llm)
