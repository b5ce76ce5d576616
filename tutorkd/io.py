"""Atomic file writes and JSONL of records: a half-written file is never read as finished."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


@contextlib.contextmanager
def staging_dir(out_dir: Path, what: str) -> Iterator[Path]:
    """A fresh temporary folder beside ``out_dir`` for building a model folder, removed on exit.

    The body renames its finished result into ``out_dir``, so ``out_dir`` exists only complete (a
    killed run leaves a ``.tmp-*`` folder, never a half-saved model). ``out_dir`` must not exist yet:
    ``what`` names it in the error (e.g. ``adapter``).
    """
    if out_dir.exists():
        raise FileExistsError(f"{what} folder {out_dir} already exists; give each {what} a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_hf_dataset(columns: dict[str, list[str]], path: Path) -> None:
    """Save ``columns`` as an HF ``datasets`` folder at ``path``, complete or not at all: written to a
    temporary sibling, then renamed over whatever was there (a kill mid-save leaves only the temp)."""
    from datasets import Dataset

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    Dataset.from_dict(columns).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
