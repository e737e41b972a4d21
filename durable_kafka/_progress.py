"""Progress bars for the CLI's long operations: on a terminal only, quiet when piped.

Why tqdm: small, no dependencies of its own, and it already knows how to redraw one line on a
terminal. The bar goes to stderr, and only when stderr is a terminal, so scripts that pipe or
redirect the output (``durable-kafka audit ... | tee``) see exactly the lines they saw before.
``DURABLE_KAFKA_PROGRESS=0`` turns the bars off on a terminal too; ``=1`` forces them on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm  # type: ignore[import-untyped]

__all__ = ["Progress", "progress_enabled"]

T = TypeVar("T")


def progress_enabled(stream: IO[str] | None = None) -> bool:
    """Whether bars are drawn: the stream is a terminal (or the environment forces a choice)."""
    forced = os.environ.get("DURABLE_KAFKA_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """One bar (``total`` may be None for an unknown length); a no-op when not on a terminal."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "records",
                 stream: IO[str] | None = None, *, enabled: bool = True) -> None:
        stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and progress_enabled(stream)
        # a terminal that reports no width (a bare pty, `docker exec -t`) would get an empty bar
        sized = _columns(stream) > 0
        self._bar: Any = tqdm(total=total, desc=desc, unit=unit, file=stream, leave=True, mininterval=0.2,
                              dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24) if self.enabled else None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, line: str) -> None:
        """Print ``line`` to stdout without tearing the bar (plain print when there is none)."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def over(cls, items: Iterable[T], desc: str, total: int | None = None, unit: str = "items",
             stream: IO[str] | None = None, *, enabled: bool = True) -> Iterator[T]:
        """Iterate ``items`` with a bar."""
        with cls(desc, total, unit, stream, enabled=enabled) as bar:
            for item in items:
                yield item
                bar.update()
