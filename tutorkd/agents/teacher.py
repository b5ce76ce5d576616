"""A teacher is a policy (feedback to plan) plus an engine (plan to examples), built from a config.

A teacher that models its student shows that model to the loop as records (``views``: the loop saves
them in the round's directory, e.g. ``skill_profile.json``), and a policy whose plans depend on
earlier rounds reloads its state from the last round's directory before planning (``restore``), so a
resumed run plans exactly as an uninterrupted one.

Which parts have views and which restores is stated where the concrete class is known: each entry of
the flat registries ``POLICIES`` and ``ENGINES`` builds a ``BuiltPolicy`` or ``BuiltEngine`` naming
them, so the ``Teacher`` never has to discover an ability at run time.

A config may name a class of its own instead (``policy: {import: mylab.teachers:MyPolicy, k: 2}``; see
``tutorkd.config.plugins``). It is built as ``Cls(inputs, **options)`` with the ``BuildInputs`` the
built-ins get, and its abilities are read once from the class when it is built: its ``views`` are
saved when the class defines ``views``, and a policy's ``restore`` is called when it defines
``restore``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tutorkd.agents.baselines.facts import FactsEngine
from tutorkd.agents.baselines.policies import ErrorDrivenPolicy, UniformPolicy
from tutorkd.agents.baselines.procedural import ProceduralEngine
from tutorkd.agents.dataenvgym.llm_policies import LLMSkillListPolicy, LLMSkillTreePolicy
from tutorkd.agents.dataenvgym.policies import SkillListPolicy, SkillTreePolicy
from tutorkd.agents.progress.policy import ProgressPolicy
from tutorkd.agents.stat.profile import EnvironmentLabels, LLMSkillLabeler, SkillLabeler
from tutorkd.agents.stat.teacher import (
    LLMSolver,
    PoolEngine,
    ProceduralSolver,
    SkillPool,
    Solver,
    StatPolicy,
    SynthesisEngine,
)
from tutorkd.agents.tom.teacher import ItemEngine, ToMPolicy
from tutorkd.agents.tpd.teacher import DiscriminatingEngine, TPDPolicy
from tutorkd.config import TeacherConfig
from tutorkd.config.plugins import PluginSpec, defines
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Domain, Engine, GenerationContext, Policy, Student
from tutorkd.schema import Example, Feedback, Plan, Record


class Viewer(Protocol):
    """A teacher part with records worth saving each round (its model of the student, its usage)."""

    def views(self) -> list[tuple[str, Record]]:
        """(file name, record) pairs describing the last plan, for ``rounds/r{k}/``."""
        ...


class Restorer(Protocol):
    """A policy whose plans depend on earlier rounds, with its state saved among its views."""

    def restore(self, folder: Path) -> None:
        """Reload the state saved in ``folder`` (the previous round's directory; none there: fresh)."""
        ...


class StatefulPolicy(Policy, Viewer, Restorer, Protocol):
    """A policy with views that restores its state from them (``skill_tree``, ``tpd``, ``tom``, ``stat``,
    the LLM ones)."""


@dataclass(frozen=True)
class BuiltPolicy:
    """A policy and the abilities beyond ``plan`` it offers the loop, stated by its builder."""

    policy: Policy
    viewer: Viewer | None = None
    """The policy again when it has views, else ``None``."""
    restorer: Restorer | None = None
    """The policy again when it restores its state, else ``None``."""


def plain(policy: Policy) -> BuiltPolicy:
    """A policy with no views and no state (the baselines, ``skill_list``)."""
    return BuiltPolicy(policy)


def stateful(policy: StatefulPolicy) -> BuiltPolicy:
    """A policy whose views the loop saves and which reloads them when a run resumes."""
    return BuiltPolicy(policy, viewer=policy, restorer=policy)


@dataclass(frozen=True)
class BuiltEngine:
    """An engine and, when it has views (``stat_synthesis``: its filter counts), the engine again."""

    engine: Engine
    viewer: Viewer | None = None


@dataclass(frozen=True)
class BuildInputs:
    """Everything a registry entry, or a plug-in class (``Cls(inputs, **options)``), may build its part
    from: ``cfg.per_round`` and ``cfg.style`` say how much and what kind of data a round asks for."""

    cfg: TeacherConfig
    domain: Domain
    exclude: Container[str] = frozenset()
    """Questions the engine must never generate nor a quizzing policy draw (the held-out sets)."""
    llm: StructuredLLM | None = None
    """The teacher LLM, when the config has an ``llm`` block."""
    student: Student | None = None
    """The student, for policies that quiz it (``tom``)."""
    task: Domain | None = None
    """``domain`` without the student's prompt format (``None``: ``domain`` is the task's own)."""

    def task_domain(self) -> Domain:
        """The task's own domain: what TPD diagnoses errors and draws problems with; ``domain`` (which
        may wrap it in a chat) still renders the examples."""
        return self.domain if self.task is None else self.task

    def leaves(self) -> list[str]:
        """The domain's leaf skills."""
        return self.domain.tree.leaves()

    def need_llm(self) -> StructuredLLM:
        """The teacher LLM; ``ValueError`` without one (TeacherConfig's validator makes that unreachable
        from a config)."""
        if self.llm is None:
            raise ValueError("this teacher needs an llm block in its config")
        return self.llm

    def need_student(self) -> Student:
        """The student; ``ValueError`` naming the policy without one."""
        if self.student is None:
            raise ValueError(f"policy {self.cfg.policy} quizzes the student: pass student= to build_teacher")
        return self.student


def _stat_policy(b: BuildInputs) -> BuiltPolicy:
    cfg, leaves, tree = b.cfg, b.leaves(), b.domain.tree
    stat, known = cfg.stat, set(leaves)
    labeler: SkillLabeler = (LLMSkillLabeler(b.need_llm(), [n for n in tree.nodes if n.id in known])
                             if stat.labeler == "llm" else EnvironmentLabels())
    return stateful(StatPolicy(labeler, leaves, cfg.per_round, cfg.style, stat.k, stat.replay_share,
                               stat.learnability))


def _tom_policy(b: BuildInputs) -> BuiltPolicy:
    cfg = b.cfg
    return stateful(ToMPolicy(b.domain, cfg.per_round, cfg.tom, cfg.style, student=b.need_student(),
                              exclude=b.exclude))


POLICIES: dict[str, Callable[[BuildInputs], BuiltPolicy]] = {
    "uniform": lambda b: plain(UniformPolicy(b.leaves(), b.cfg.per_round, b.cfg.style)),
    "error_driven": lambda b: plain(ErrorDrivenPolicy(b.leaves(), b.cfg.per_round, b.cfg.style)),
    "stat": _stat_policy,
    "skill_list": lambda b: plain(SkillListPolicy(b.cfg.per_round, b.cfg.style, b.cfg.skills)),
    "skill_tree": lambda b: stateful(SkillTreePolicy(b.cfg.per_round, b.cfg.style, b.cfg.skills)),
    "skill_list_llm": lambda b: stateful(LLMSkillListPolicy(
        b.need_llm(), SkillListPolicy(b.cfg.per_round, b.cfg.style, b.cfg.skills))),
    "skill_tree_llm": lambda b: stateful(LLMSkillTreePolicy(
        b.need_llm(), SkillTreePolicy(b.cfg.per_round, b.cfg.style, b.cfg.skills))),
    "tpd": lambda b: stateful(TPDPolicy(b.task_domain(), b.cfg.per_round, b.cfg.style, b.cfg.tpd)),
    "tom": _tom_policy,
    "progress": lambda b: stateful(ProgressPolicy(b.domain.tree, b.cfg.per_round, b.cfg.style,
                                                  b.cfg.progress)),
}
"""``TeacherConfig.policy`` to its builder, which states the policy's views and state."""


def _pool(b: BuildInputs) -> SkillPool:
    stat = b.cfg.stat
    return SkillPool(b.domain, stat.pool_per_skill, stat.pool_seed, b.exclude)


def _synthesis(b: BuildInputs) -> BuiltEngine:
    stat, domain = b.cfg.stat, b.domain
    solver: Solver = (LLMSolver(b.need_llm(), domain, stat.solver_temperature) if stat.solver == "llm"
                      else ProceduralSolver(domain))
    engine = SynthesisEngine(domain, _pool(b), solver, b.exclude, stat.solutions, stat.min_agree,
                             stat.references)
    return BuiltEngine(engine, viewer=engine)


ENGINES: dict[str, Callable[[BuildInputs], BuiltEngine]] = {
    "procedural": lambda b: BuiltEngine(ProceduralEngine(b.domain, b.exclude)),
    "stat_pool": lambda b: BuiltEngine(PoolEngine(b.domain, _pool(b))),
    "stat_synthesis": _synthesis,
    "discriminating": lambda b: BuiltEngine(DiscriminatingEngine(b.domain, b.exclude, task=b.task)),
    "items": lambda b: BuiltEngine(ItemEngine(b.domain, b.exclude)),
    "facts": lambda b: BuiltEngine(FactsEngine(b.domain, b.exclude)),
}
"""``TeacherConfig.engine`` to its builder, which states whether the engine has views."""


def plugin_policy(spec: PluginSpec, inputs: BuildInputs) -> BuiltPolicy:
    """The policy class ``spec`` names, built as ``Cls(inputs, **options)``; its views and restore are
    used when the class defines them (decided here, from the class, once)."""
    cls = spec.load()
    policy = cls(inputs, **spec.options())
    return BuiltPolicy(policy, viewer=policy if defines(cls, Viewer) else None,
                       restorer=policy if defines(cls, Restorer) else None)


def plugin_engine(spec: PluginSpec, inputs: BuildInputs) -> BuiltEngine:
    """The engine class ``spec`` names, built as ``Cls(inputs, **options)``; its views are saved when
    the class defines ``views``."""
    cls = spec.load()
    engine = cls(inputs, **spec.options())
    return BuiltEngine(engine, viewer=engine if defines(cls, Viewer) else None)


# Not frozen: ``tutorkd.protocols.Teacher`` declares ``name`` a plain (settable) attribute.
@dataclass
class Teacher:
    """A named policy and engine; the loop calls ``restore``, ``plan``, ``views``, ``generate`` per round.

    Implements ``tutorkd.protocols.Teacher``. ``viewers`` and ``restorer`` are the parts that offer
    those abilities, as their builders stated; ``build_teacher`` fills them in.
    """

    name: str
    policy: Policy
    engine: Engine
    llm: StructuredLLM | None = None
    """The teacher's own language model, if it uses one; its token usage is always the last view."""
    viewers: tuple[Viewer, ...] = ()
    """The parts with views, in the order their records are returned (policy, then engine)."""
    restorer: Restorer | None = None
    """The part that reloads its state when a run resumes (a stateful policy), if any."""

    def plan(self, feedback: Feedback) -> Plan:
        """Decide what data to make from the student's feedback."""
        return self.policy.plan(feedback)

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples ``plan`` asks for."""
        return self.engine.generate(plan, context)

    def views(self) -> list[tuple[str, Record]]:
        """Records behind the last plan (file name, record), e.g. ``skill_profile.json``; none for the
        baselines. The loop saves them next to the round's ``plan.json``."""
        parts = (*self.viewers, self.llm) if self.llm is not None else self.viewers
        return [view for part in parts for view in part.views()]

    def restore(self, folder: Path) -> None:
        """Let a stateful policy reload what it saved in ``folder``; a no-op for the others."""
        if self.restorer is not None:
            self.restorer.restore(folder)


def build_teacher(cfg: TeacherConfig, domain: Domain, exclude: Container[str] = frozenset(),
                  student: Student | None = None, task: Domain | None = None) -> Teacher:
    """Build the teacher ``cfg`` describes for ``domain``.

    ``exclude`` is the set of questions the engine must never generate (the held-out evaluation
    questions); the verification filter checks this again, but excluding up front wastes no budget.
    ``student`` is required by policies that quiz the student (``tom``: ``ValueError`` without it) and
    ignored by the others. ``task`` is ``domain`` without the student's prompt format, where ``domain``
    wraps it (a chat student's). The teacher LLM, if any, starts on its first call, so building is cheap.
    """
    llm = StructuredLLM.from_config(cfg.llm) if cfg.llm is not None else None
    inputs = BuildInputs(cfg, domain, exclude, llm, student, task)
    policy, engine = cfg.policy, cfg.engine
    planner = plugin_policy(policy, inputs) if isinstance(policy, PluginSpec) else POLICIES[policy](inputs)
    maker = plugin_engine(engine, inputs) if isinstance(engine, PluginSpec) else ENGINES[engine](inputs)
    viewers = tuple(part.viewer for part in (planner, maker) if part.viewer is not None)
    return Teacher(name=cfg.name, policy=planner.policy, engine=maker.engine, llm=llm, viewers=viewers,
                   restorer=planner.restorer)
