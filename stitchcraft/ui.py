"""How a render looks at a terminal: rich progress bars on a TTY, plain log lines
otherwise (CI logs, pipes, `--json`). Everything goes to stderr; stdout is kept for
results.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` and `noun`, in the plural (`nouns`, or the noun and an s) unless the count
    is one: "1 shot", "3 shots", "2 job entries"."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


class PlainReporter:
    """One line per event, timestamped from the start of the render (after `prefix`,
    which names the storyboard in a batch)."""

    def __init__(self, stream: Any = None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.began = time.monotonic()
        self.name = ""
        self.total: int | None = None
        self.done = 0
        self.warned: set[str] = set()

    def _line(self, text: str) -> None:
        print(f"{self.prefix}[{time.monotonic() - self.began:7.1f}s] {text}", file=self.stream, flush=True)

    def stage(self, name: str, total: int | None = None) -> None:
        self.name, self.total, self.done = name, total, 0
        self._line(f"{name}" + (f" ({total} steps)" if total else ""))

    def advance(self, detail: str = "") -> None:
        self.done += 1
        if detail and not self.name.startswith("assemble"):
            of = f"/{self.total}" if self.total else ""
            self._line(f"  {self.name} {self.done}{of}: {detail}")
        elif self.total and self.done in (self.total // 4, self.total // 2, 3 * self.total // 4, self.total):
            self._line(f"  {self.name} {100 * self.done // self.total}% {detail}")

    def log(self, message: str) -> None:
        self._line(message)

    def warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            self._line(f"warning: {message}")


class RichReporter:
    """A progress bar per stage."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]{task.description:<18}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self.task: Any = None
        self.warned: set[str] = set()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self.progress.stop()

    def _finish(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[-1]
            if task.total is None:
                self.progress.update(self.task, total=max(task.completed, 1), completed=max(task.completed, 1))
            else:
                self.progress.update(self.task, completed=task.total)

    def stage(self, name: str, total: int | None = None) -> None:
        self._finish()
        self.task = self.progress.add_task(name, total=total, detail="")

    def advance(self, detail: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, detail=detail[:48])

    def log(self, message: str) -> None:
        self.progress.console.print(message)

    def warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            self.progress.console.print(f"[yellow]warning:[/] {message}")


@contextlib.contextmanager
def make_reporter(*, json_mode: bool = False) -> Iterator[Any]:
    """Rich bars when stderr is a terminal (and not --json or CI mode, which imply
    each other), else plain lines."""
    if sys.stderr.isatty() and not json_mode:
        with RichReporter() as reporter:
            yield reporter
    else:
        yield PlainReporter()
