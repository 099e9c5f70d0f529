"""Which process owns a run: a process token (boot id + start time) that a reused pid cannot fake.

``RunStore`` records the owner of every queued or running run; when the store is opened again, a
run whose owner is gone is marked interrupted (``owner_alive`` says whether it is).

>>> owner_alive(os.getpid(), own_token())
True
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_token(pid: int) -> str | None:
    """Identity of the live process ``pid`` (boot id + start time), or None when it cannot be read.

    Two processes that reuse the same pid get different tokens, so a run owned by a
    dead process is not mistaken for one owned by whoever holds that pid now.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted from the end of the "(comm)" field, which may contain spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"


_own_token: tuple[int, str] | None = None


def own_token() -> str:
    """This process's token (recomputed after a fork)."""
    global _own_token
    pid = os.getpid()
    if _own_token is None or _own_token[0] != pid:
        _own_token = (pid, process_token(pid) or f"uuid:{secrets.token_hex(8)}")
    return _own_token[1]


def owner_alive(pid: int | None, token: str | None) -> bool:
    """Whether the process that recorded ``(pid, token)`` is still running.

    Uses /proc where available; elsewhere falls back to a signal-0 probe (which cannot
    tell a reused pid) and, on Windows, assumes other processes are alive.
    """
    if pid is None:
        return False
    if pid == os.getpid():
        return token == own_token()
    live = process_token(pid)
    if live is not None:
        return live == token
    if Path("/proc/self/stat").exists():  # /proc works, so the pid simply does not exist
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; stay conservative
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["own_token", "owner_alive", "process_token"]
