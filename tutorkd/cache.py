"""The on-disk cache of pretrained artifacts (base students, teacher LMs), keyed by a content hash.

An entry is a folder ``<root>/<key>`` where ``key`` hashes everything that determines the artifact
(a ``PretrainSpec`` or ``TeacherSpec``). It holds the artifact's files and ``SPEC_FILE``, which is
written last: a folder without it is never an entry. ``cached_build`` builds a missing entry once,
however many processes ask for it at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from tutorkd.io import write_json

log = logging.getLogger(__name__)

CACHE_ENV = "TUTORKD_CACHE"
"""Environment variable naming the cache's top folder (default ``~/.cache/tutorkd``)."""
SPEC_FILE = "recipe.json"
"""The entry's spec with its build outcome; its presence marks the entry complete. The name predates
"spec" and is kept: existing cache entries are recognised by it, and benchmarks read it."""


def cache_root(kind: str, override: str | Path | None = None) -> Path:
    """Folder of the cached artifacts of one ``kind`` (``students``, ``teachers``): ``override`` if
    given (a config's ``cache_dir``, used as is), else ``$TUTORKD_CACHE/<kind>``, else
    ``~/.cache/tutorkd/<kind>``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / kind
    return Path.home() / ".cache" / "tutorkd" / kind


def cached_build(root: Path, key: str, build: Callable[[Path], BaseModel]) -> Path:
    """The entry ``root/key``, built first unless it is complete already.

    ``build(folder)`` writes the artifact into an empty temporary folder under ``root`` and returns
    the record to save there as ``SPEC_FILE`` (the spec with its outcome). Only then is the folder
    renamed to ``root/key``, so a build that raises or is killed never leaves an entry, and its
    temporary folder is removed (a killed process leaves a ``.tmp-*`` folder, which is never read).
    """
    final = root / key
    if (final / SPEC_FILE).is_file():
        log.info("found in cache: %s", final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    # Why a lock: parallel runs and benchmarks asking for the same missing entry would each spend
    # minutes training identical weights; the first builds, the others wait and reuse its result.
    with open(root / f".lock-{key}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / SPEC_FILE).is_file():
            log.info("found in cache after waiting for another builder: %s", final)
            return final
        _build_into(root, key, build)
    log.info("built and cached: %s", final)
    return final


def _build_into(root: Path, key: str, build: Callable[[Path], BaseModel]) -> None:
    """Run ``build`` in a fresh temporary folder under ``root`` and rename the result to ``root/key``."""
    final = root / key
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{key}-"))
    try:
        write_json(tmp / SPEC_FILE, build(tmp))
        try:
            tmp.rename(final)
        except OSError:
            # Why: a builder that does not share the lock (another file system's flock) finished the
            # same key first; its result is equally valid. Anything else in the way is an error.
            if not (final / SPEC_FILE).is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        # Why ignore_errors: the build's own exception is the one to report, not a cleanup failure.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
