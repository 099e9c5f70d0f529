"""Writes the disk refused (a read-only or full runs folder): one line saying where and what to do, no traceback.

``storage_problem`` recognises such an error anywhere in an exception's chain: an ``OSError`` whose errno is
in ``STORAGE_ERRNOS`` (permissions, a read-only file system, no space, a quota) or SQLite refusing to write
(a read-only or full database). ``dpcore.store.runs.format_error`` stores its text for a failed run.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

#: errno values of a write the disk refused.
STORAGE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
#: What SQLite says when the disk refuses its write (lower case).
SQLITE_REFUSALS = ("readonly database", "disk is full", "unable to open database file", "disk i/o error")
ADVICE = "free space or fix permissions (or point DPEXPLORER_RUNS_DIR at another folder), then run it again"
_SCRATCH = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.partial")  # dpcore.atomic's scratch file beside its target


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or during, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, ValueError):
        return False


def storage_problem(error: BaseException, *, root: str | os.PathLike[str] | None = None) -> str | None:
    """'cannot write to the runs directory ROOT: No space left on device (FILE) — free space or fix permissions
    ...' when ``error`` (or an error in its chain) is a write the disk refused; None for any other error.

    ``root`` is the runs directory; a refused file outside it is named on its own ('cannot write to FILE: ...').

    >>> print(storage_problem(OSError(28, "No space left on device", "/srv/runs/artifacts/r/model.pt"),
    ...                       root="/srv/runs"))  # doctest: +ELLIPSIS
    cannot write to the runs directory /srv/runs: No space left on device (/srv/runs/artifacts/r/model.pt) — free...
    >>> storage_problem(ValueError("bad value")) is None
    True
    """
    for current in _chain(error):
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            detail, path = current.strerror or str(current), current.filename
            if path is not None and (scratch := _SCRATCH.fullmatch(Path(path).name)):
                path = str(Path(path).with_name(scratch["name"]))  # name the file being written, not its scratch
        elif isinstance(current, sqlite3.OperationalError) and any(
                refusal in str(current).lower() for refusal in SQLITE_REFUSALS):
            detail, path = f"its run database refused the write ({current})", None
        else:
            continue
        if root is not None and (path is None or _inside(path, root)):
            where = f"the runs directory {root}"
        else:
            where = str(path) if path is not None else "the runs directory"
            path = None
        return f"cannot write to {where}: {detail}{f' ({path})' if path is not None else ''} — {ADVICE}"
    return None


__all__ = ["ADVICE", "SQLITE_REFUSALS", "STORAGE_ERRNOS", "storage_problem"]
