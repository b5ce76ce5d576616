"""Progress of slow steps, and the terminal display of a teaching run.

Code that does slow work (pretraining, starting an engine, generating, training an adapter) reports
through one process-wide seam and never learns who is watching::

    from tutorkd import progress

    with progress.task("pretraining the base student", total=steps) as bar:
        for step in range(steps):
            ...
            bar.advance(note=f"loss {loss:.3f}")

The default reporter drops everything (the Python API, benchmarks, tests). ``tutorkd teach`` and
``tutorkd generate`` install a ``Display`` while they run: one ``rich.progress.Progress`` (rich allows
one live display at a time) that shows a transient bar per running task and, during the loop, the
``EventPrinter``'s bar over rounds, with printed lines and log records scrolling above it. Reporting
only observes: it never changes what the work computes, nor in which order.

This module imports nothing heavy at module level: the students and backends import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from tutorkd.loop import LoopEvent


class Bar(Protocol):
    """One running task's progress, as the code doing the work reports it."""

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        """``steps`` more units done; ``note`` (say ``loss 0.412``), when given, replaces the shown one."""

    def set_total(self, total: float) -> None:
        """The task's size, where it is known only once the task runs (a trainer's step count)."""


class Reporter(Protocol):
    """Where tasks report: by default nowhere, under the CLI its ``Display``."""

    def task(self, description: str, total: float | None) -> AbstractContextManager[Bar]:
        """A bar for the body of the ``with``; ``total`` ``None`` while the task's size is unknown."""


class _Silent:
    """The default reporter, and its bar: nobody is watching."""

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        """Nothing to show."""

    def set_total(self, total: float) -> None:
        """Nothing to show."""

    @contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Bar]:
        """This same silent bar."""
        yield self


_reporter: Reporter = _Silent()


def task(description: str, total: float | None = None) -> AbstractContextManager[Bar]:
    """A bar for one slow step from the installed reporter (by default one that shows nothing).

    ``total`` is in the step's own units (optimizer steps, prompts); ``None`` while unknown."""
    return _reporter.task(description, total)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send every ``task`` to ``reporter`` for the body of the ``with``, then to the previous one."""
    global _reporter
    before, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = before


class _RichBar:
    """A ``Bar`` drawn as one task of a rich ``Progress``."""

    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        """Advance the rich task, and replace its note when one is given."""
        if note is None:
            self._progress.advance(self._task_id, steps)
        else:
            self._progress.update(self._task_id, advance=steps, note=note)

    def set_total(self, total: float) -> None:
        """Give the rich task its size (it shows a pulsing bar until then)."""
        self._progress.update(self._task_id, total=total)


class Display:
    """The CLI's one live display; while entered, the process's reporter.

    Each task gets a bar (description, bar, done/total, note, elapsed and remaining time) that goes
    away when the task ends; whatever is printed through the console, and the log records of a
    ``RichHandler`` on it, scroll above the bars. The whole display is erased when it is left.
    """

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        """The rich progress hosting every bar; ``EventPrinter`` adds the bar over rounds to it."""
        self._stack = ExitStack()

    def __enter__(self) -> Display:
        self._stack.enter_context(self.progress)
        self._stack.enter_context(reporting(self))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Bar]:
        """A bar below the others while the body runs."""
        from rich.markup import escape

        # Why escape: a description may hold a path or a name with brackets, which rich reads as markup.
        task_id = self.progress.add_task(escape(description), total=total, note="")
        try:
            yield _RichBar(self.progress, task_id)
        finally:
            self.progress.remove_task(task_id)


_STEP_LABEL = {"setup": "setup", "evaluate": "eval", "plan": "plan", "generate": "gen", "verify": "verify",
               "train": "train", "finish": "done"}


class EventPrinter:
    """Receives ``LoopEvent``s and prints each as a line above ``display``; while entered (around the
    loop) it also shows a bar over rounds there."""

    def __init__(self, display: Display, rounds: int) -> None:
        self._progress = display.progress
        self._rounds = rounds
        self._task_id: TaskID | None = None

    def __enter__(self) -> EventPrinter:
        self._task_id = self._progress.add_task("rounds trained", total=self._rounds, note="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task_id is not None:
            self._progress.remove_task(self._task_id)
            self._task_id = None

    def __call__(self, event: LoopEvent) -> None:
        """Print the event; advance the bar over rounds when a round's training is done."""
        took = f" [dim]({event.seconds:.1f}s)[/]" if event.seconds else ""
        self._progress.console.print(f"[dim]r{event.round}[/] [bold]{_STEP_LABEL[event.node]:>6}[/] "
                                     f"{event.message}{took}", highlight=False)
        if event.node == "train" and self._task_id is not None:
            self._progress.update(self._task_id, completed=event.round)
