"""A backend that restarts its engine whenever the student version changes: DataEnvGym's way.

DataEnvGym kills its vLLM workers before every training phase and relaunches them with the new
adapter. tutorkd keeps one resident engine and adds a LoRA adapter per version instead; this wrapper
exists only so ``benchmarks/loop_overhead.py`` can measure what that saves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tutorkd.protocols import Backend, Completion, SamplingConfig
from tutorkd.schema import StudentVersion


class RestartingBackend:
    """Wraps a backend factory; closes and rebuilds the engine when asked for a new version."""

    def __init__(self, factory: Callable[[], Backend]) -> None:
        self.factory = factory
        self.engine: Backend | None = None
        self.current: str | None = None
        self.restarts = 0

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        """Generate with a fresh engine each time the version differs from the previous call's."""
        name = version.name if version is not None else "base"
        if self.engine is None or name != self.current:
            self.close()
            self.engine = self.factory()
            self.restarts += 1
            self.current = name
        return self.engine.generate(prompts, params, version)

    def close(self) -> None:
        """Shut the current engine down, if any."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
