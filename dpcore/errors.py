"""Exception types that carry a message a person can act on.

Every error a user can cause (a bad setting, a missing dataset, an unreadable
CSV) is a ``DPExplorerError``; the CLI prints its message and exits 2, the
dashboard shows it inline. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DPExplorerError(Exception):
    """Base class for errors caused by input, not by a bug."""


class ConfigError(DPExplorerError, ValueError):
    """A training setting is invalid. The message names the field, the value and what is allowed."""


class DatasetError(DPExplorerError, ValueError):
    """A dataset cannot be loaded: unknown name, missing cache offline, bad CSV, ..."""
