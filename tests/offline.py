"""Run tutorkd code with the dataset/model hub switched off, the way a user without network meets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def config_error_offline(imports: str, call: str, hf_home: Path) -> str:
    """What a fresh interpreter prints when ``call`` (after ``imports``) raises ``ConfigError`` with the
    hub offline and an empty ``HF_HOME``: ``CONFIG ERROR: <message>``; nothing if it does not raise.

    Why a subprocess: the hub's offline switch is read when huggingface_hub is first imported."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    code = (f"from tutorkd.config import ConfigError\n{imports}\n"
            f"try:\n    {call}\nexcept ConfigError as exc:\n    print('CONFIG ERROR:', exc)\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120).stdout
