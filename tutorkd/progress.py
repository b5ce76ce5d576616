"""Terminal display of a teaching run: one line per finished step, and a bar over rounds."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tutorkd.loop import LoopEvent

_STEP_LABEL = {"setup": "setup", "evaluate": "eval", "plan": "plan", "generate": "gen", "verify": "verify",
               "train": "train", "finish": "done"}


class EventPrinter:
    """Receives ``LoopEvent``s; prints each as a line above a live progress bar over rounds."""

    def __init__(self, console: Console, rounds: int) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("rounds trained", total=rounds)

    def __enter__(self) -> EventPrinter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: LoopEvent) -> None:
        """Print the event; advance the bar when a round's training is done."""
        took = f" [dim]({event.seconds:.1f}s)[/]" if event.seconds else ""
        self.progress.console.print(f"[dim]r{event.round}[/] [bold]{_STEP_LABEL[event.node]:>6}[/] "
                                    f"{event.message}{took}", highlight=False)
        if event.node == "train":
            self.progress.update(self.task, completed=event.round)
