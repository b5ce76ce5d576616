"""The one place a domain is made from an environment config: the domain factory.

A run, ``tutorkd eval``/``compare``/``report`` and ``tutorkd generate`` all build their domain here, so a
GSM8K, MATH or own-dataset run is rebuilt with its own data, never with the arithmetic domain.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

from tutorkd.config import ArithmeticEnvConfig, DatasetEnvConfig, EnvConfig
from tutorkd.config.environment import QAEnvConfig
from tutorkd.environments.discovery import DiscoveredSkills
from tutorkd.environments.heldout import HeldOut
from tutorkd.protocols import Domain


@dataclass(frozen=True)
class DomainSetup:
    """A domain, its fixed held-out sets, and the questions generated training data must avoid."""

    domain: Domain
    heldout: HeldOut
    exclude: Container[str]
    """A procedural domain keeps training data outside its whole evaluation partition
    (``HeldOut.reserved``, so eval sets of any size stay clean); a dataset domain's held-out split is
    exactly its eval sets (``HeldOut.questions``)."""
    discovered: DiscoveredSkills | None = None
    """The skills discovered for data without skill labels (``kind: dataset`` with neither a skill
    column nor a labels file), to be saved with the run; ``None`` where the data has its own skills."""


def arithmetic_domain(env_cfg: ArithmeticEnvConfig) -> DomainSetup:
    """The embedded procedural arithmetic domain and its fixed held-out sets."""
    from tutorkd.environments.arithmetic import ArithmeticDomain

    domain = ArithmeticDomain()
    heldout = HeldOut.build(domain, env_cfg.test_per_skill, env_cfg.val_per_skill, env_cfg.split_seed)
    return DomainSetup(domain, heldout, heldout.reserved)


def dataset_domain(env_cfg: DatasetEnvConfig | QAEnvConfig) -> DomainSetup:
    """A dataset's problems (GSM8K, MATH or your own), loaded, labelled and split
    (``tutorkd.environments.datasets``; ``ConfigError`` with the fix when the data is neither local nor
    downloadable)."""
    from tutorkd.environments.datasets import build_dataset

    built = build_dataset(env_cfg)
    return DomainSetup(built.domain, built.heldout, built.heldout.questions, built.discovered)


DOMAINS: dict[str, Callable[..., DomainSetup]] = {
    "arithmetic": arithmetic_domain,
    "gsm8k": dataset_domain,
    "math": dataset_domain,
    "dataset": dataset_domain,
}
"""``environment.kind`` to the function that builds its domain."""


def build_domain(env_cfg: EnvConfig) -> DomainSetup:
    """The domain and held-out sets ``env_cfg`` describes."""
    return DOMAINS[env_cfg.kind](env_cfg)
