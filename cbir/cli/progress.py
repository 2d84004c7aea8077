"""The progress bar of long commands: one rich bar on stderr whose stages take turns."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from . import output


class ProgressBar:
    """A rich progress bar on ``console`` (stderr by default), or nothing when that is not a terminal or output
    must stay quiet."""

    def __init__(self, label: str, enabled: bool, console: Console | None = None) -> None:
        self.console = console or output.stderr
        self.label, self.enabled, self.bar, self.task = label, enabled and self.console.is_terminal, None, None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TaskProgressColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task):
                    return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TaskProgressColumn(), RateColumn(), TimeRemainingColumn(), console=self.console,
                                transient=True)
            self.bar.__enter__()
        return self

    def __call__(self, done: int, total: int) -> None:
        """Progress of the current stage (the first: the label the bar was made with)."""
        self.stage(self.label)(done, total)

    def stage(self, label: str) -> Callable[[int, int], None]:
        """A progress callable(done, total) for one stage of the work: the bar shows ``label`` from its first call
        on (rich allows one live display, so stages take turns in one bar)."""
        def update(done: int, total: int) -> None:
            if self.bar is not None:
                if self.task is None or self.label != label:
                    if self.task is not None:
                        self.bar.remove_task(self.task)
                    self.label, self.task = label, self.bar.add_task(label, total=total)
                self.bar.update(self.task, completed=done)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
