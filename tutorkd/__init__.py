"""tutorkd: teacher agents that model their student and generate tailored training data.

The Python API (``tutorkd.api``): ``teach``, ``resume``, ``load_run``, ``generate``, and ``make_env`` for a
loop of your own (DataEnvGym's ``reset``/``step``). Importing the package is cheap: torch, vllm and trl
are imported only by the modules that use them.
"""

from tutorkd.api import RunResult, generate, load_run, resume, teach
from tutorkd.environments.env import make_env

__version__ = "0.1.0"
__all__ = ["RunResult", "generate", "load_run", "make_env", "resume", "teach"]
