"""Datasets: the ``DATASETS`` registry and the dataset API (load, list, fetch, cache status, previews).

Every dataset loads as a ``SplitData``: float32 features and int64 labels split into
members (the training set) and non-members (held out, same distribution; used for
test accuracy and as the membership attacker's negatives). The split never depends
on the training seed.

This module is the one place callers import datasets from; the parts live beside it:
``splits`` (``SplitData``, the fixed split, the validation hold-out), ``builtin_data``,
``openml`` (downloads and their cache) and ``csv_data`` (uploads). Their public names
are re-exported here (``__all__``).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dpcore.engine.builtin_data import BUILTIN_DATASETS, builtin_raw
from dpcore.engine.csv_data import (
    CSV_DATASETS,
    MAX_CSV_CATEGORIES,
    MAX_CSV_CLASSES,
    MAX_CSV_FEATURES,
    MAX_CSV_ROWS,
    MIN_CSV_ROWS,
    csv_columns,
    csv_raw,
)
from dpcore.engine.openml import OPENML_DATASETS, cache_dir_path, download_to_cache, openml_raw
from dpcore.engine.splits import (
    NON_MEMBER_FRACTION,
    SPLIT_SEED,
    VALIDATION_SEED,
    DatasetInfo,
    DatasetSpec,
    SplitData,
    hold_out_validation,
    validation_indices,
)
from dpcore.errors import DatasetError

if TYPE_CHECKING:
    from dpcore.config import TrainConfig

__all__ = [
    "DATASETS",
    "MAX_CSV_CATEGORIES",
    "MAX_CSV_CLASSES",
    "MAX_CSV_FEATURES",
    "MAX_CSV_ROWS",
    "MIN_CSV_ROWS",
    "NON_MEMBER_FRACTION",
    "SPLIT_SEED",
    "VALIDATION_SEED",
    "DatasetInfo",
    "DatasetSpec",
    "SplitData",
    "cache_dir_path",
    "cache_path",
    "clear_cache",
    "csv_columns",
    "dataset_status",
    "fetch_dataset",
    "hold_out_validation",
    "list_datasets",
    "load_dataset",
    "load_for_config",
    "member_counts",
    "preview_images",
    "preview_table",
    "validation_indices",
]

DATASETS: dict[str, DatasetSpec] = {**BUILTIN_DATASETS, **OPENML_DATASETS, **CSV_DATASETS}


# ---------------------------------------------------------------------- public API
def load_dataset(name: str, *, data_path: Any = None, label_column: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, download: bool = True,
                 feature_columns: Sequence[str] | None = None) -> SplitData:
    """Load dataset ``name`` as a SplitData with fresh tensors (safe to modify).

    ``data_path`` (a path, bytes or a file-like object), ``label_column`` and ``feature_columns``
    (the columns the model reads; None: all but the label) are for ``name='csv'``. OpenML
    datasets are read from ``cache_dir`` (default
    ``$DPEXPLORER_DATA_DIR`` or ``~/.cache/dp-explorer``) and downloaded there first
    when missing and ``download`` is true. Raises DatasetError for unknown names,
    unreadable CSVs and datasets that are neither cached nor downloadable.

    >>> data = load_dataset("synthetic")
    >>> tuple(data.x_members.shape), tuple(data.x_non_members.shape), data.info.num_classes
    ((800, 128), (200, 128), 2)
    """
    spec = _spec(name)
    return spec.loader(spec, cache_dir=cache_dir_path(cache_dir), data_path=data_path,
                       label_column=label_column, download=download, feature_columns=feature_columns)


def load_for_config(cfg: TrainConfig, *, cache_dir: str | os.PathLike[str] | None = None) -> SplitData:
    """Load the dataset ``cfg`` names (``cfg.dataset``, ``cfg.data_path``, ``cfg.label_column``).

    With ``cfg.validation_fraction`` > 0 the validation slice is held out of the members
    (``hold_out_validation``), so the members are exactly the examples that run trains on: what
    training, the membership attack on a stored run and delta < 1/N all need.
    """
    data = load_dataset(cfg.dataset, data_path=cfg.data_path, label_column=cfg.label_column, cache_dir=cache_dir,
                        feature_columns=getattr(cfg, "feature_columns", None))
    fraction = float(getattr(cfg, "validation_fraction", 0.0) or 0.0)
    return hold_out_validation(data, fraction=fraction) if fraction > 0 else data


def cache_path(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the compact arrays of downloadable dataset ``name`` live: ``<cache dir>/<name>.npz``."""
    spec = _spec(name)
    if spec.source != "openml":
        raise DatasetError(f"dataset {name!r} is {spec.source}, not downloaded, so it has no cache file; "
                           f"downloadable datasets: {', '.join(_names('openml'))}")
    return cache_dir_path(cache_dir) / f"{name}.npz"


def dataset_status(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """'offline' (built in or a local CSV), 'cached' (downloaded already) or 'download' (needs internet once)."""
    spec = _spec(name)
    if spec.source != "openml":
        return "offline"
    return "cached" if cache_path(name, cache_dir=cache_dir).is_file() else "download"


def list_datasets(*, cache_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per registered dataset: name, title, kind, source, status, n (total rows, <NA> if unknown), description.

    ``status`` is what ``dataset_status`` returns: 'offline', 'cached' or 'download'.
    """
    rows = [{"name": spec.name, "title": spec.title, "kind": spec.kind, "source": spec.source,
             "status": dataset_status(spec.name, cache_dir=cache_dir), "n": spec.n_examples,
             "description": spec.description} for spec in DATASETS.values()]
    frame = pd.DataFrame(rows, columns=["name", "title", "kind", "source", "status", "n", "description"])
    frame["n"] = frame["n"].astype("Int64")
    return frame


def member_counts() -> dict[str, int]:
    """Training-set (member) size of every registered dataset whose size is known without loading it.

    Built-in and OpenML tabular datasets use the fixed stratified split (``NON_MEMBER_FRACTION``
    held out, rounded up as scikit-learn does); image datasets use their standard train split.
    CSV uploads have no known size and are left out. Returns ``{name: n_members}``.
    """
    counts: dict[str, int] = {}
    for name, spec in DATASETS.items():
        if spec.n_train:
            counts[name] = int(spec.n_train)
        elif spec.n_examples:
            counts[name] = int(spec.n_examples - math.ceil(NON_MEMBER_FRACTION * spec.n_examples))
    return counts


def fetch_dataset(name: str, *, cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path | None:
    """Download OpenML dataset ``name`` into the cache and return the .npz path.

    Returns None for built-in datasets (nothing to download). An existing cache
    file is kept unless ``force``. Raises DatasetError when the download fails.
    """
    spec = _spec(name)
    if spec.source == "builtin":
        return None
    if spec.source != "openml":
        raise DatasetError(f"dataset {name!r} is a local {spec.source} file and cannot be fetched; "
                           f"downloadable datasets: {', '.join(_names('openml'))}")
    path = cache_path(name, cache_dir=cache_dir)
    if path.is_file() and not force:
        return path
    download_to_cache(spec, path)
    openml_raw.cache_clear()
    return path


def clear_cache() -> None:
    """Forget every dataset held in memory (the on-disk download cache is untouched)."""
    builtin_raw.cache_clear()
    openml_raw.cache_clear()
    csv_raw.cache_clear()


def preview_images(data: SplitData, n: int = 16) -> np.ndarray:
    """The first ``n`` member images as uint8 pixels, shape (n, H, W, C) with C = 1 (grayscale) or 3.

    Standardisation is undone, so 0 is black and 255 white. Fewer than ``n`` are
    returned when the dataset is smaller.
    """
    if data.info.kind != "image":
        raise DatasetError(f"preview_images needs an image dataset; {data.info.name!r} is {data.info.kind}: "
                           "use preview_table")
    x = data.x_members[: max(int(n), 0)].detach().cpu().numpy().astype(np.float64)
    channels = x.shape[1]
    mean = np.zeros(channels) if data.feature_mean is None else np.asarray(data.feature_mean, dtype=np.float64)
    std = np.ones(channels) if data.feature_std is None else np.asarray(data.feature_std, dtype=np.float64)
    unit = x * std.reshape(1, -1, 1, 1) + mean.reshape(1, -1, 1, 1)
    pixels = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def preview_table(data: SplitData, n: int = 10) -> pd.DataFrame:
    """The first ``n`` member rows with original values (standardisation undone) plus a 'label' column.

    For CSV data the original cells (text included) are shown and 'label' holds
    the original label values; otherwise 'label' holds the class names.
    """
    if data.info.kind != "tabular":
        raise DatasetError(f"preview_table needs a tabular dataset; {data.info.name!r} is {data.info.kind}: "
                           "use preview_images")
    n = max(int(n), 0)
    if data.raw is not None and data.info.label_column in data.raw.columns:
        head = data.raw.head(n)
        table = head.drop(columns=[data.info.label_column]).reset_index(drop=True)
        if "label" in table.columns:
            table = table.rename(columns={"label": "label (feature)"})
        table["label"] = head[data.info.label_column].to_numpy()
        return table
    x = data.x_members[:n].detach().cpu().numpy().astype(np.float64)
    if data.feature_mean is not None and data.feature_std is not None:
        mean, std = np.asarray(data.feature_mean), np.asarray(data.feature_std)
        x = x * std + mean
        # float32 round trips leave noise like 7e-09 where the original was 0: snap to a grid a
        # millionth of each feature's scale, which keeps every digit the original data had.
        step = 10.0 ** np.floor(np.log10((np.abs(mean) + std) * 1e-6))
        x = np.round(x / step) * step
    names = data.info.feature_names or tuple(f"x{i}" for i in range(x.shape[1]))
    table = pd.DataFrame(x, columns=list(names))
    if "label" in table.columns:
        table = table.rename(columns={"label": "label (feature)"})
    table["label"] = [data.info.class_names[int(i)] for i in data.y_members[:n]]
    return table


# ---------------------------------------------------------------------- registry plumbing
def _spec(name: str) -> DatasetSpec:
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(DATASETS)}")
    return spec


def _names(source: str) -> list[str]:
    return [name for name, spec in DATASETS.items() if spec.source == source]
