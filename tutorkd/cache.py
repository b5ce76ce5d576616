"""The on-disk cache of pretrained artifacts (base students, teacher LMs), keyed by a content hash.

An entry is a folder ``<root>/<key>`` where ``key`` hashes everything that determines the artifact
(a ``PretrainSpec`` or ``TeacherSpec``). It holds the artifact's files, ``MANIFEST_FILE`` (each file's
size and sha256) and ``SPEC_FILE``, which is written last: a folder without it is never an entry.
``cached_build`` builds a missing entry once, however many processes ask for it at the same time, and
checks an entry against its manifest on every lookup: a damaged one is rebuilt, never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from tutorkd.io import atomic_write_text, write_json

log = logging.getLogger(__name__)

CACHE_ENV = "TUTORKD_CACHE"
"""Environment variable naming the cache's top folder (default ``~/.cache/tutorkd``)."""
SPEC_FILE = "recipe.json"
"""The entry's spec with its build outcome; its presence marks the entry complete. The name predates
"spec" and is kept: existing cache entries are recognised by it, and benchmarks read it."""
MANIFEST_FILE = "files.sha256"
"""One line per file of the entry (``SPEC_FILE`` and itself excepted): ``<sha256> <size> <path>``, the
path relative to the entry, with ``/``. Written before ``SPEC_FILE``; entries built before checksums
existed have none and are accepted unverified."""
_BLOCK = 1 << 20
"""Bytes read at a time when hashing: a few hundred MB of weights hash in well under a second."""


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
    """The entry ``root/key``, built first unless it is complete and passes its checksums.

    ``build(folder)`` writes the artifact into an empty temporary folder under ``root`` and returns
    the record to save there as ``SPEC_FILE`` (the spec with its outcome). Only then is the folder
    renamed to ``root/key``, so a build that raises or is killed never leaves an entry, and its
    temporary folder is removed (a killed process leaves a ``.tmp-*`` folder, never read, deleted by
    the next builder of the key).
    A complete entry whose files no longer match its manifest (truncated, changed, deleted) is logged
    as a warning, moved aside and rebuilt.
    """
    final = root / key
    # Fast path, without the lock: a sound entry needs no writer. A problem found here is only acted
    # on under the lock, after checking again, since another process may be repairing it right now.
    if (final / SPEC_FILE).is_file() and entry_problem(final) is None:
        log.info("found in cache: %s", final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    # Why a lock: parallel runs and benchmarks asking for the same missing entry would each spend
    # minutes training identical weights; the first builds, the others wait and reuse its result.
    # flock is released when its holder dies, so a killed builder never blocks the next one.
    with open(root / f".lock-{key}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / SPEC_FILE).is_file():
            problem = entry_problem(final)
            if problem is None:
                log.info("found in cache after waiting for another builder: %s", final)
                return final
            log.warning("cache entry %s is corrupt (%s); rebuilding it", final, problem)
            _discard(root, key)
        # Why safe under the lock: a live builder of this key would hold it, so these are a dead one's
        # (SIGKILLed mid-build), each as large as the artifact (half a GB for SmolLM2).
        prefix = f".tmp-{key}-"
        # (mkdtemp's random suffix has no "-": a longer key's folders, ".tmp-{key}-x-...", are not these)
        for stale in (p for p in root.glob(prefix + "*") if "-" not in p.name[len(prefix):]):
            log.info("removing %s, left by a builder that died", stale)
            shutil.rmtree(stale)
        _build_into(root, key, build)
    log.info("built and cached: %s", final)
    return final


def _build_into(root: Path, key: str, build: Callable[[Path], BaseModel]) -> None:
    """Run ``build`` in a fresh temporary folder under ``root``, add the manifest and then
    ``SPEC_FILE``, and rename the result to ``root/key``."""
    final = root / key
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{key}-"))
    try:
        record = build(tmp)
        _write_manifest(tmp)
        write_json(tmp / SPEC_FILE, record)
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


def _discard(root: Path, key: str) -> None:
    """Delete the corrupt entry ``root/key``. It is renamed aside first, in one step, so that no reader
    sees a half-deleted folder under the entry's name, and an interrupted delete leaves only a
    ``.corrupt-*`` folder, which is never read."""
    aside = root / f".corrupt-{key}-{secrets.token_hex(4)}"
    (root / key).rename(aside)
    shutil.rmtree(aside)


def _sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read a block at a time (model weights need not fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    """Write ``MANIFEST_FILE`` into a freshly built ``folder``, listing every file in it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if {folder / SPEC_FILE, folder / MANIFEST_FILE} & set(files):
        raise ValueError(f"a cache build must not write {SPEC_FILE} or {MANIFEST_FILE} itself: {folder}")
    lines = []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if "\n" in rel:
            raise ValueError(f"a manifest line cannot hold a file name with a line break: {rel!r}")
        lines.append(f"{_sha256(path)} {path.stat().st_size} {rel}\n")
    atomic_write_text(folder / MANIFEST_FILE, "".join(lines))


def entry_problem(entry: Path) -> str | None:
    """What is wrong with the complete ``entry`` (the first bad file and how), or None when every file
    matches its manifest, or when it has no manifest (built before checksums: accepted unverified).
    Files that are not listed are not looked at."""
    manifest = entry / MANIFEST_FILE
    if not manifest.is_file():
        if not (entry / SPEC_FILE).is_file():
            # Why: a repairing process moved the entry aside after the caller saw it complete.
            return "the entry vanished while being checked"
        log.debug("cache entry %s has no %s (built before checksums); it cannot be verified", entry,
                  MANIFEST_FILE)
        return None
    try:
        listed: list[tuple[str, int, str]] = []
        for number, line in enumerate(manifest.read_text().splitlines(), 1):
            parts = line.split(" ", 2)
            if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
                return f"{MANIFEST_FILE} line {number} is malformed"
            listed.append((parts[2], int(parts[1]), parts[0]))
        # Sizes first: truncated and deleted files, the usual damage, are found without reading data.
        for rel, size, _ in listed:
            if (actual := (entry / rel).stat().st_size) != size:
                return f"{rel} has {actual} bytes, not {size}"
        for rel, _, digest in listed:
            if _sha256(entry / rel) != digest:
                return f"{rel} does not match its sha256"
    except FileNotFoundError as missing:
        # Why caught: a missing file is exactly the damage looked for here; it is reported, not hidden.
        return f"{Path(missing.filename).relative_to(entry).as_posix()} is missing"
    return None
