"""The single exception every reader in :mod:`itnet_geo.io` raises."""

from __future__ import annotations

import os
from typing import Optional


class ReadError(ValueError):
    r"""A file could not be read: which file, where in it, and what was expected.

    Every reader in :mod:`itnet_geo.io` raises this (and only this) for a missing,
    unreadable or malformed file, so callers can catch one type. It subclasses
    :class:`ValueError`.

    Args:
        path (str or os.PathLike): The file.
        reason (str): What was expected or what went wrong.
        line (int, optional): 1-based line number, for text formats.
            (default: :obj:`None`)
        offset (int, optional): Byte offset from the start of the file, for binary
            formats. (default: :obj:`None`)

    Example:
        >>> err = ReadError("a.off", "expected 3 vertex coordinates, got 2", line=3)
        >>> str(err)
        'a.off: line 3: expected 3 vertex coordinates, got 2'
    """

    def __init__(
        self,
        path: str | os.PathLike,
        reason: str,
        line: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.line = line
        self.offset = offset
        super().__init__(self._message())

    def _message(self) -> str:
        where = ""
        if self.line is not None:
            where = f"line {self.line}: "
        elif self.offset is not None:
            where = f"byte {self.offset}: "
        return f"{self.path}: {where}{self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.line, self.offset))
