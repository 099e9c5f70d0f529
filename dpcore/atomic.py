"""Atomic file writes: a crash or a full disk mid-write never leaves a truncated file behind.

Every file dpcore writes (checkpoints, artifacts, records, dataset caches, uploads) goes through
``atomic_write``: the content is written to a hidden scratch file beside the target and renamed
over it, which POSIX and Windows make atomic within one folder.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "a" / "note.txt", "hello").read_text()
'hello'
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a scratch file beside ``path``, then rename it over ``path``; return ``path``.

    Parent folders are created. On any error the scratch file is removed and the old ``path``
    (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        with open(scratch, "wb") as handle:
            write(handle)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    return atomic_write(path, lambda handle: handle.write(bytes(data)))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
