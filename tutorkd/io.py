"""Atomic file writes and JSONL of records: a half-written file is never read as finished."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""The process umask, read once at import (``os.umask`` can only be read by setting it)."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # Why: mkstemp makes the file private (0600); a run's files and reports should be as readable
        # as any file the user writes (the umask decides), so that they can be shared.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        # Why: leave no stray temp file behind, then let the error propagate unchanged.
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, record: BaseModel) -> None:
    """Atomically write one record as indented JSON."""
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")


def read_json(path: str | Path, model: type[R]) -> R:
    """Read one record written by ``write_json``."""
    return model.model_validate_json(Path(path).read_text())


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> None:
    """Atomically write records, one JSON object per line."""
    atomic_write_text(path, "".join(r.model_dump_json() + "\n" for r in records))


def read_jsonl(path: str | Path, model: type[R]) -> list[R]:
    """Read records written by ``write_jsonl``."""
    with open(path) as f:
        return [model.model_validate_json(line) for line in f if line.strip()]
