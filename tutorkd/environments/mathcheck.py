"""Math answer equivalence with math-verify, in worker processes, under timeouts enforced here.

math-verify parses LaTeX or plain expressions into sympy and compares them (``1/2`` equals
``\\frac{1}{2}`` and ``0.5``, ``1,000`` equals ``1000``). Its own timeouts use ``signal.alarm``, which
fails off the main thread and outside Unix, so they are switched off (``parsing_timeout=None``,
``timeout_seconds=None``) and every comparison runs in a worker process instead: sympy can hang on
adversarial input, and a worker still busy after ``timeout_s`` is killed and replaced; its comparison
counts as not equivalent and is logged and counted in ``MathChecker.timeouts``.

Workers are plain ``python -m tutorkd.environments.mathcheck`` processes speaking JSON lines on
stdin/stdout, not a ``multiprocessing`` pool: a spawned pool re-imports the parent's ``__main__``,
which breaks (and can loop forever restarting workers) under ``python - <<EOF`` scripts, notebooks
and unguarded entry points, while forking a process that runs torch or vLLM threads can deadlock.

Two cheap steps come first and never reach a worker: answers equal after ``normalize_answer`` (the
usual case for a right GSM8K answer) are equivalent, and every verdict is cached, because a teaching
environment checks each attempt twice (the student scores it, the environment re-verifies it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_CACHE_SIZE = 100_000
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NOISE = re.compile(r"\\[!,;:]|\\left|\\right|\$|\s")


def normalize_answer(answer: str) -> str:
    """The form answers are compared in before sympy: no whitespace, ``$``, ``\\left``/``\\right`` or
    thin spaces, no thousands separators, ``\\dfrac``/``\\tfrac`` as ``\\frac``, no trailing period."""
    text = _THOUSANDS.sub("", answer)
    text = _NOISE.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.rstrip(".")


def verify_in_process(gold: str, predicted: str) -> bool:
    """math-verify's verdict on ``predicted`` against ``gold`` in this process, without timeouts.

    Both are parsed as the content of a ``$...$`` math environment, so bare LaTeX (``\\frac{1}{2}``)
    and plain numbers both parse. An answer that does not parse is not equivalent. Only for workers:
    callers go through ``MathChecker``, which bounds the time.
    """
    from math_verify import parse, verify

    wrap = "${}$".format
    gold_parsed = parse(wrap(gold.replace("$", "")), parsing_timeout=None)
    pred_parsed = parse(wrap(predicted.replace("$", "")), parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


class _Worker:
    """One worker process and the comparison it is busy with (``None``: idle)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # Why: the worker must import this package even when it is not installed (a source checkout).
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "tutorkd.environments.mathcheck"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.job: int | None = None
        self.started = 0.0

    def send(self, job: int, pair: tuple[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(pair) + "\n")
        self.proc.stdin.flush()
        self.job, self.started = job, time.monotonic()

    def receive(self) -> bool:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"math-verify worker exited with code {code}; see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"math-verify worker failed: {reply['error']}")
        self.job = None
        return bool(reply["equivalent"])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class MathChecker:
    """Decides whether predicted answers equal gold ones, each comparison bounded by ``timeout_s``.

    Up to ``workers`` worker processes start on the first comparison that needs sympy (each takes
    about a second to import it) and live until ``close``. Verdicts are cached by (gold, predicted).
    """

    def __init__(self, workers: int = 1, timeout_s: float = 5.0) -> None:
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"need workers >= 1 and timeout_s > 0, got {workers} and {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.timeouts = 0
        """Comparisons that ran past ``timeout_s`` (each counted as not equivalent)."""
        self._pool: list[_Worker] = []
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()

    def equivalent(self, gold: str, predicted: str) -> bool:
        """Whether ``predicted`` is mathematically the same answer as ``gold``."""
        return self.equivalent_many([(gold, predicted)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """``equivalent`` for every (gold, predicted) pair, the sympy ones in parallel."""
        results: dict[int, bool] = {}
        todo: list[int] = []
        for i, pair in enumerate(pairs):
            if normalize_answer(pair[0]) == normalize_answer(pair[1]):
                results[i] = True
            elif pair in self._cache:
                self._cache.move_to_end(pair)
                results[i] = self._cache[pair]
            else:
                todo.append(i)
        for i, verdict in self._run([pairs[i] for i in todo]).items():
            results[todo[i]] = verdict
            self._cache[pairs[todo[i]]] = verdict
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return [results[i] for i in range(len(pairs))]

    def close(self) -> None:
        """Stop the worker processes (a later comparison starts new ones)."""
        for worker in self._pool:
            worker.kill()
        self._pool = []

    def _run(self, pairs: list[tuple[str, str]]) -> dict[int, bool]:
        """Verdicts by index: each idle worker takes the next pair; one busy past ``timeout_s`` is killed
        (the only way to stop a hung sympy call) and replaced."""
        verdicts: dict[int, bool] = {}
        queue = list(range(len(pairs)))[::-1]
        while len(self._pool) < min(self.workers, len(pairs)):
            self._pool.append(_Worker())
        while len(verdicts) < len(pairs):
            for worker in self._pool:
                if worker.job is None and queue:
                    job = queue.pop()
                    worker.send(job, pairs[job])
            busy = [w for w in self._pool if w.job is not None]
            deadline = min(w.started for w in busy) + self.timeout_s
            with selectors.DefaultSelector() as sel:
                for w in busy:
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                ready = sel.select(timeout=max(deadline - time.monotonic(), 0.0))
            for key, _ in ready:
                job = key.data.job
                verdicts[job] = key.data.receive()
            for w in busy:
                if w.job is not None and time.monotonic() - w.started >= self.timeout_s:
                    gold, predicted = pairs[w.job]
                    self.timeouts += 1
                    log.warning("math-verify ran past %.1f s on gold %r vs %r: counted as not equivalent",
                                self.timeout_s, gold[:80], predicted[:80])
                    verdicts[w.job] = False
                    w.kill()
                    self._pool[self._pool.index(w)] = _Worker()
        return verdicts


def _serve() -> None:
    """Worker loop: one JSON ``[gold, predicted]`` per stdin line, one JSON verdict per stdout line."""
    # Why: math-verify warns once per process that its timeouts are off; here that is the design.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for line in sys.stdin:
        gold, predicted = json.loads(line)
        try:
            reply = {"equivalent": verify_in_process(gold, predicted)}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
