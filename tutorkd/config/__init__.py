"""Configs: pydantic models loaded from YAML, with errors that name the field and the fix.

A run config (``RunConfig``) names an environment, a teacher, a student and a backend; a
``tutorkd generate`` spec (``GenerateConfig``) names a student, an environment and a generation method.
The environment and teacher may be given inline or as a path to one of the YAML specs under the
repository's ``environments/`` and ``agents/`` folders (``resolve_spec``).

Modules: ``base`` (``Config``, YAML loading, error messages), ``fields`` (field types several configs
share), ``environment``, ``teacher``, ``student`` (students and the serving backend), ``run`` and
``generate``, ``sweep`` (a grid of runs). Every public name is re-exported here.
"""

from tutorkd.config.base import (
    Config,
    ConfigError,
    default_kind,
    format_validation_error,
    load_config,
    read_yaml,
    resolve_spec,
)
from tutorkd.config.environment import ENV_SPEC, ArithmeticEnvConfig, DatasetEnvConfig, EnvConfig
from tutorkd.config.generate import AlignConfig, ArteConfig, GenerateConfig, PerSynConfig, TeacherLMConfig
from tutorkd.config.run import RunConfig
from tutorkd.config.student import BackendConfig, HFStudentConfig, StudentConfig, TinyStudentConfig
from tutorkd.config.sweep import GridPoint, Resources, SweepConfig
from tutorkd.config.teacher import (
    ProgressConfig,
    SkillPolicyConfig,
    StatConfig,
    TeacherConfig,
    TeacherLLMConfig,
    ToMConfig,
    TPDConfig,
)

__all__ = [
    "ENV_SPEC",
    "AlignConfig",
    "ArithmeticEnvConfig",
    "ArteConfig",
    "BackendConfig",
    "Config",
    "ConfigError",
    "DatasetEnvConfig",
    "EnvConfig",
    "GenerateConfig",
    "GridPoint",
    "HFStudentConfig",
    "PerSynConfig",
    "Resources",
    "RunConfig",
    "SkillPolicyConfig",
    "StatConfig",
    "StudentConfig",
    "SweepConfig",
    "TPDConfig",
    "TeacherConfig",
    "TeacherLLMConfig",
    "TeacherLMConfig",
    "TinyStudentConfig",
    "ProgressConfig",
    "ToMConfig",
    "default_kind",
    "format_validation_error",
    "load_config",
    "read_yaml",
    "resolve_spec",
]
