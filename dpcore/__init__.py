"""DP Explorer core: train with DP-SGD, account for privacy, attack, store and plot runs.

The dashboard (``app.py``, ``pages/``), the command line (``python -m dpcore``) and
the tests all go through this package; nothing in it imports Streamlit.

>>> from dpcore import TrainConfig
>>> TrainConfig(dataset="synthetic", target_epsilon=3.0).resolve().epochs
20
"""

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError, DatasetError, DPExplorerError

__all__ = ["ConfigError", "DPExplorerError", "DatasetError", "RunResult", "TrainConfig", "train"]


def __getattr__(name: str):
    if name in ("train", "RunResult"):
        from dpcore.engine import training  # deferred: torch and opacus, so `import dpcore` stays light

        return getattr(training, name)
    raise AttributeError(f"module 'dpcore' has no attribute {name!r}")
