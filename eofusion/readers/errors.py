"""Errors of the readers: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputDataError(ValueError):
    """Input data that cannot be used (missing band, corrupt file, unknown CRS...)."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
