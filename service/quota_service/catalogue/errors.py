"""Errors of the plan catalogue: every problem names the file, the path inside it and the reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one catalogue file.

    ``path`` is the place inside the file in dotted form (``plans.boost.grants[0].amount``); the
    empty string means the file as a whole. ``line`` is 1-based, when the YAML parser knew it.
    """

    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path or '(top level)'}: {self.reason}"


class CatalogueError(Exception):
    """A catalogue file, or a directory of them, is not valid. Nothing was loaded or replaced.

    ``problems`` lists every problem found (at least one); ``file``, ``path`` and ``reason`` are
    those of the first, for callers that report one.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        if not self.problems:
            raise ValueError("CatalogueError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def reason(self) -> str:
        return self.problems[0].reason
