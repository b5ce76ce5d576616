"""A teacher is a policy (feedback to plan) plus an engine (plan to examples), built from a config."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from tutorkd.agents.policies import ErrorDrivenPolicy, Style, UniformPolicy
from tutorkd.agents.procedural import ProceduralEngine
from tutorkd.config import TeacherConfig
from tutorkd.protocols import Domain, Engine, GenerationContext, Policy
from tutorkd.schema import Example, Feedback, Plan

POLICIES: dict[str, Callable[[Sequence[str], int, Style], Policy]] = {
    "uniform": UniformPolicy,
    "error_driven": ErrorDrivenPolicy,
}
"""``TeacherConfig.policy`` to the constructor ``(skills, per_round, style)``."""

ENGINES: dict[str, Callable[[Domain, Container[str]], Engine]] = {
    "procedural": ProceduralEngine,
}
"""``TeacherConfig.engine`` to the constructor ``(domain, exclude)``."""


@dataclass(frozen=True)
class Teacher:
    """A named policy and engine; the loop calls ``plan`` then ``generate`` once per round."""

    name: str
    policy: Policy
    engine: Engine

    def plan(self, feedback: Feedback) -> Plan:
        """Decide what data to make from the student's feedback."""
        return self.policy.plan(feedback)

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples ``plan`` asks for."""
        return self.engine.generate(plan, context)


def build_teacher(cfg: TeacherConfig, domain: Domain, exclude: Container[str] = frozenset()) -> Teacher:
    """Build the teacher ``cfg`` describes for ``domain``.

    ``exclude`` is the set of questions the engine must never generate (the held-out evaluation
    questions); the verification filter checks this again, but excluding up front wastes no budget.
    """
    policy = POLICIES[cfg.policy](domain.tree.leaves(), cfg.per_round, cfg.style)
    return Teacher(name=cfg.name, policy=policy, engine=ENGINES[cfg.engine](domain, exclude))
