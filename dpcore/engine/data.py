"""Datasets: the ``DATASETS`` registry, fixed member/non-member splits, cached OpenML downloads and CSV uploads.

Every dataset loads as a ``SplitData``: float32 features and int64 labels split into
members (the training set) and non-members (held out, same distribution; used for
test accuracy and as the membership attacker's negatives). The split never depends
on the training seed.
"""

from __future__ import annotations

import csv as _csv
import dataclasses
import difflib
import functools
import io
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

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
    "preview_images",
    "preview_table",
    "validation_indices",
]

SPLIT_SEED = 42  # fixed: the member/non-member split must not move with the training seed
NON_MEMBER_FRACTION = 0.2
VALIDATION_SEED = 4242  # fixed: the validation slice of the members must not move with the training seed
MAX_CSV_ROWS = 200_000
MAX_CSV_FEATURES = 1000  # columns after one-hot encoding
MAX_CSV_CATEGORIES = 100  # distinct values in one categorical column
MAX_CSV_CLASSES = 100  # distinct label values
MIN_CSV_ROWS = 20
CACHE_ENV_VAR = "DPEXPLORER_DATA_DIR"
CACHE_FORMAT_VERSION = 1

# ---------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class DatasetInfo:
    """What a loaded dataset is. ``input_shape`` is per example: (1, 8, 8), (3, 32, 32) or (d,)."""

    name: str
    title: str
    description: str
    kind: str  # 'image' | 'tabular'
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    n_members: int
    n_non_members: int
    source: str  # 'builtin' | 'openml' | 'csv'
    feature_names: tuple[str, ...] | None = None
    label_column: str | None = None  # CSV only: the column the labels came from


@dataclass(eq=False)
class SplitData:
    """A dataset split into members (train) and non-members (held out).

    ``x_*`` are float32 tensors of shape [N, *info.input_shape], standardised with
    member statistics; ``y_*`` are int64 class indices into ``info.class_names``.
    ``feature_mean``/``feature_std`` undo the standardisation (per channel for
    images, in [0, 1] pixel units; per feature for tabular data). ``raw`` (CSV
    only) holds the original member rows, in the order of ``x_members``.
    ``x_validation``/``y_validation`` (None unless a validation set was held out, see
    ``hold_out_validation``) are member-side rows kept out of training: neither members (not
    trained on, not attack positives) nor non-members (not test data, not attack negatives).
    Equality compares ``info`` and the four member/non-member tensors only.
    """

    info: DatasetInfo
    x_members: torch.Tensor
    y_members: torch.Tensor
    x_non_members: torch.Tensor
    y_non_members: torch.Tensor
    feature_mean: np.ndarray | None = field(default=None, repr=False)
    feature_std: np.ndarray | None = field(default=None, repr=False)
    raw: pd.DataFrame | None = field(default=None, repr=False)
    x_validation: torch.Tensor | None = field(default=None, repr=False)
    y_validation: torch.Tensor | None = field(default=None, repr=False)

    @property
    def members(self) -> TensorDataset:
        """The training set as a TensorDataset of (x, y)."""
        return TensorDataset(self.x_members, self.y_members)

    @property
    def non_members(self) -> TensorDataset:
        """The held-out set as a TensorDataset of (x, y)."""
        return TensorDataset(self.x_non_members, self.y_non_members)

    @property
    def n_members(self) -> int:
        """Number of training examples (the N in delta < 1/N)."""
        return int(self.x_members.shape[0])

    @property
    def n_non_members(self) -> int:
        """Number of held-out examples."""
        return int(self.x_non_members.shape[0])

    @property
    def n_validation(self) -> int:
        """Number of validation examples held out of training (0 when there is no validation set)."""
        return 0 if self.x_validation is None else int(self.x_validation.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SplitData):
            return NotImplemented
        return self.info == other.info and all(
            torch.equal(getattr(self, name), getattr(other, name))
            for name in ("x_members", "y_members", "x_non_members", "y_non_members")
        )

    __hash__ = None  # type: ignore[assignment]  # mutable tensors


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry. ``loader(spec, *, cache_dir, data_path, label_column, download)`` returns a SplitData.

    OpenML image datasets use the standard split: the first ``n_train`` rows are
    members, the last ``n_test`` non-members. ``n_examples`` is the total row count
    when known in advance (None for CSV uploads).
    """

    name: str
    title: str
    description: str
    kind: str
    source: str
    loader: Callable[..., SplitData]
    n_examples: int | None = None
    input_shape: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    openml_name: str | None = None
    openml_version: int | None = None
    n_train: int | None = None
    n_test: int | None = None


@dataclass(frozen=True)
class _RawSplit:
    """Cached arrays before standardisation (uint8 pixels or unstandardised float32), read-only."""

    info: DatasetInfo
    x_members: np.ndarray
    y_members: np.ndarray
    x_non_members: np.ndarray
    y_non_members: np.ndarray
    pixel_scale: float | None  # images: divide by this to get [0, 1]; None for tabular
    mean: np.ndarray  # member mean per channel (images, in [0, 1] units) or per feature
    std: np.ndarray
    raw: pd.DataFrame | None = None


# ---------------------------------------------------------------------- public API
def load_dataset(name: str, *, data_path: Any = None, label_column: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, download: bool = True) -> SplitData:
    """Load dataset ``name`` as a SplitData with fresh tensors (safe to modify).

    ``data_path`` (a path, bytes or a file-like object) and ``label_column`` are for
    ``name='csv'``. OpenML datasets are read from ``cache_dir`` (default
    ``$DPEXPLORER_DATA_DIR`` or ``~/.cache/dp-explorer``) and downloaded there first
    when missing and ``download`` is true. Raises DatasetError for unknown names,
    unreadable CSVs and datasets that are neither cached nor downloadable.

    >>> data = load_dataset("synthetic")
    >>> tuple(data.x_members.shape), tuple(data.x_non_members.shape), data.info.num_classes
    ((800, 128), (200, 128), 2)
    """
    spec = _spec(name)
    return spec.loader(spec, cache_dir=cache_dir_path(cache_dir), data_path=data_path,
                       label_column=label_column, download=download)


def load_for_config(cfg: TrainConfig, *, cache_dir: str | os.PathLike[str] | None = None) -> SplitData:
    """Load the dataset ``cfg`` names (``cfg.dataset``, ``cfg.data_path``, ``cfg.label_column``).

    With ``cfg.validation_fraction`` > 0 the validation slice is held out of the members
    (``hold_out_validation``), so the members are exactly the examples that run trains on: what
    training, the membership attack on a stored run and delta < 1/N all need.
    """
    data = load_dataset(cfg.dataset, data_path=cfg.data_path, label_column=cfg.label_column, cache_dir=cache_dir)
    fraction = float(getattr(cfg, "validation_fraction", 0.0) or 0.0)
    return hold_out_validation(data, fraction=fraction) if fraction > 0 else data


def validation_indices(y_members: np.ndarray | torch.Tensor, *, fraction: float) -> np.ndarray:
    """Sorted member row indices of the validation slice: about ``fraction`` of each class, fixed.

    Every member gets a random key from the fixed VALIDATION_SEED; each class gives up its
    ``round(fraction x class size)`` lowest-keyed rows (keeping at least one to train on). The
    slice depends only on the member labels and ``fraction``, never on the training seed, and a
    larger fraction's slice contains a smaller one's.

    >>> validation_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), fraction=0.5).size
    5
    """
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"validation fraction must be in [0, 1), got {fraction!r}")
    labels = np.asarray(y_members.cpu() if isinstance(y_members, torch.Tensor) else y_members)
    if fraction == 0.0 or labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.random.default_rng(VALIDATION_SEED).random(labels.size)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = min(round(fraction * rows.size), rows.size - 1)
        chosen.append(rows[np.argsort(keys[rows], kind="stable")[:take]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def hold_out_validation(data: SplitData, *, fraction: float) -> SplitData:
    """A copy of ``data`` whose members lose the validation slice (``validation_indices``) to ``x_validation``.

    Non-members are unchanged; ``info.n_members`` counts the members left (those trained on);
    CSV ``raw`` rows follow the members. Feature standardisation keeps the statistics of all
    members. DatasetError when ``data`` already has a validation set.
    """
    if data.x_validation is not None:
        raise DatasetError("this split already has a validation set; hold one out only once")
    held = validation_indices(data.y_members, fraction=fraction)
    keep = np.setdiff1d(np.arange(data.n_members), held)
    held_t, keep_t = torch.from_numpy(held), torch.from_numpy(keep)
    return dataclasses.replace(
        data, info=dataclasses.replace(data.info, n_members=int(keep.size)),
        x_members=data.x_members[keep_t], y_members=data.y_members[keep_t],
        x_validation=data.x_members[held_t], y_validation=data.y_members[held_t],
        raw=None if data.raw is None else data.raw.iloc[keep].reset_index(drop=True))


def cache_dir_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The download cache directory: ``cache_dir``, else ``$DPEXPLORER_DATA_DIR``, else ``~/.cache/dp-explorer``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dp-explorer"


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
    _download_to_cache(spec, path)
    _openml_raw.cache_clear()
    return path


def clear_cache() -> None:
    """Forget every dataset held in memory (the on-disk download cache is untouched)."""
    _builtin_raw.cache_clear()
    _openml_raw.cache_clear()
    _csv_raw.cache_clear()


def csv_columns(source: Any) -> list[str]:
    """Column names of a CSV (path, bytes or file-like), for a label picker. Raises DatasetError if unreadable."""
    content, _ = _csv_bytes(source)
    text = _decode_csv(content)
    try:
        header = pd.read_csv(io.StringIO(text), sep=_sniff_separator(text), nrows=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DatasetError(f"could not read the CSV header: {err}") from err
    return [str(column) for column in header.columns]


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


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _materialise(raw: _RawSplit) -> SplitData:
    """Fresh standardised float32 tensors from cached arrays (new memory on every call)."""
    def features(x: np.ndarray) -> torch.Tensor:
        if raw.pixel_scale is not None:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            unit = x.astype(np.float32) / np.float32(raw.pixel_scale)
            out = (unit - raw.mean.astype(np.float32).reshape(shape)) / raw.std.astype(np.float32).reshape(shape)
        else:
            out = (x.astype(np.float32) - raw.mean.astype(np.float32)) / raw.std.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    return SplitData(
        info=raw.info,
        x_members=features(raw.x_members),
        y_members=torch.from_numpy(raw.y_members.astype(np.int64, copy=True)),
        x_non_members=features(raw.x_non_members),
        y_non_members=torch.from_numpy(raw.y_non_members.astype(np.int64, copy=True)),
        feature_mean=raw.mean.astype(np.float64, copy=True),
        feature_std=raw.std.astype(np.float64, copy=True),
        raw=None if raw.raw is None else raw.raw.copy(),
    )


def _stratified_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Member and non-member row indices: a stratified 80/20 split with the fixed SPLIT_SEED."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(y))
    try:
        members, non_members = train_test_split(indices, test_size=NON_MEMBER_FRACTION, stratify=y,
                                                random_state=SPLIT_SEED)
    except ValueError as err:
        raise DatasetError(f"cannot make a stratified {1 - NON_MEMBER_FRACTION:.0%}/{NON_MEMBER_FRACTION:.0%} "
                           f"member/non-member split of {len(y)} rows: {err}. Add rows or merge rare classes.") from err
    return np.asarray(members), np.asarray(non_members)


def _member_stats(x_members: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature member mean and std (ddof 0); features outside ``mask`` and constant ones keep mean 0 / std 1."""
    mean = x_members.astype(np.float64).mean(axis=0)
    std = x_members.astype(np.float64).std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    if mask is not None:
        mean = np.where(mask, mean, 0.0)
        std = np.where(mask, std, 1.0)
    return mean, std


def _channel_stats(unit_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel member mean and std of images [N, C, H, W] in [0, 1] units."""
    axes = (0, *range(2, unit_members.ndim))
    mean = unit_members.mean(axis=axes, dtype=np.float64)
    std = unit_members.std(axis=axes, dtype=np.float64)
    return mean, np.where(std > 1e-12, std, 1.0)


def _image_raw(info: DatasetInfo, x_members: np.ndarray, y_members: np.ndarray, x_non_members: np.ndarray,
               y_non_members: np.ndarray, pixel_scale: float) -> _RawSplit:
    mean, std = _channel_stats(x_members.astype(np.float32) / np.float32(pixel_scale))
    return _RawSplit(info, _readonly(x_members), _readonly(y_members.astype(np.int64)), _readonly(x_non_members),
                     _readonly(y_non_members.astype(np.int64)), float(pixel_scale), _readonly(mean), _readonly(std))


# ---------------------------------------------------------------------- built-in datasets
@functools.cache
def _builtin_raw(name: str) -> _RawSplit:
    spec = DATASETS[name]
    if name == "synthetic":
        return _synthetic_raw(spec)
    if name == "digits":
        return _digits_raw(spec)
    if name == "breast-cancer":
        return _breast_cancer_raw(spec)
    raise DatasetError(f"no built-in loader for {name!r}")  # pragma: no cover - registry misconfigured


def _load_builtin(spec: DatasetSpec, **_: Any) -> SplitData:
    return _materialise(_builtin_raw(spec.name))


def _synthetic_raw(spec: DatasetSpec) -> _RawSplit:
    # Same numbers as the original seed script `torch.manual_seed(42); X = torch.randn(1000, 128)`,
    # from a private generator so loading never disturbs the global RNG.
    generator = torch.Generator().manual_seed(42)
    x = torch.randn(1000, 128, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    x_np, y_np = x.numpy(), y.numpy()
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind="tabular",
                       input_shape=(128,), num_classes=2, class_names=spec.class_names or ("0", "1"),
                       n_members=800, n_non_members=200, source="builtin",
                       feature_names=tuple(f"x{i}" for i in range(128)))
    # Already standard Gaussian: no standardisation, so the tensors equal the seed script's exactly.
    return _RawSplit(info, _readonly(x_np[:800]), _readonly(y_np[:800]), _readonly(x_np[800:]),
                     _readonly(y_np[800:]), None, _readonly(np.zeros(128)), _readonly(np.ones(128)))


def _digits_raw(spec: DatasetSpec) -> _RawSplit:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)  # values 0..16
    y = bunch.target.astype(np.int64)
    members, non_members = _stratified_split(y)
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind="image",
                       input_shape=(1, 8, 8), num_classes=10, class_names=tuple(str(d) for d in range(10)),
                       n_members=len(members), n_non_members=len(non_members), source="builtin")
    return _image_raw(info, pixels[members], y[members], pixels[non_members], y[non_members], pixel_scale=16.0)


def _breast_cancer_raw(spec: DatasetSpec) -> _RawSplit:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    members, non_members = _stratified_split(y)
    mean, std = _member_stats(x[members])
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind="tabular",
                       input_shape=(x.shape[1],), num_classes=2,
                       class_names=tuple(str(c) for c in bunch.target_names), n_members=len(members),
                       n_non_members=len(non_members), source="builtin",
                       feature_names=tuple(str(f) for f in bunch.feature_names))
    return _RawSplit(info, _readonly(x[members]), _readonly(y[members]), _readonly(x[non_members]),
                     _readonly(y[non_members]), None, _readonly(mean), _readonly(std))


# ---------------------------------------------------------------------- OpenML datasets
_OPENML_IMAGE_NAMES = {"mnist_784", "Fashion-MNIST", "CIFAR_10"}


def _fetch_openml(name: str, version: int | None, data_home: str) -> tuple[Any, Any]:
    """Download (X, y) from OpenML. The single network entry point: tests replace it with a fake."""
    from sklearn.datasets import fetch_openml

    as_frame = name not in _OPENML_IMAGE_NAMES  # images as plain arrays; tabular keeps column dtypes
    kwargs: dict[str, Any] = {"data_home": data_home, "as_frame": as_frame, "parser": "auto"}
    if version is not None:
        kwargs["version"] = version
    return fetch_openml(name, return_X_y=True, **kwargs)


def _load_openml(spec: DatasetSpec, *, cache_dir: Path, download: bool = True, **_: Any) -> SplitData:
    path = cache_dir / f"{spec.name}.npz"
    if not path.is_file():
        if not download:
            raise DatasetError(_missing_cache_message(spec, path, reason="downloads are switched off"))
        _download_to_cache(spec, path)
        _openml_raw.cache_clear()
    return _materialise(_openml_raw(spec.name, str(path)))


def _missing_cache_message(spec: DatasetSpec, path: Path, *, reason: str) -> str:
    return (f"dataset {spec.name!r} ({spec.title}) is not in the download cache: checked {path} and {reason}. "
            f"On a machine with internet run `python -m dpcore datasets --fetch {spec.name}` (set "
            f"{CACHE_ENV_VAR} to choose the cache folder), then copy {path.name} into {path.parent} here; "
            f"or pick an offline dataset: {', '.join(_names('builtin'))}.")


def _download_to_cache(spec: DatasetSpec, path: Path) -> None:
    """Fetch ``spec`` from OpenML, convert to compact arrays and write ``path`` atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create the dataset cache folder {path.parent}: {err}; set {CACHE_ENV_VAR} "
                           "to a writable folder") from err
    with tempfile.TemporaryDirectory(prefix="openml-", dir=path.parent) as download_dir:
        try:
            x, y = _fetch_openml(spec.openml_name, spec.openml_version, download_dir)
        except DatasetError:
            raise
        except Exception as err:  # any network/OpenML failure becomes one actionable message
            reason = f"downloading it from OpenML failed ({type(err).__name__}: {err})"
            raise DatasetError(_missing_cache_message(spec, path, reason=reason)) from err
        arrays = _convert_adult(spec, x, y) if spec.kind == "tabular" else _convert_images(spec, x, y)
        arrays["format_version"] = np.array(CACHE_FORMAT_VERSION)
        partial = Path(download_dir) / path.name
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(partial, path)


def _convert_images(spec: DatasetSpec, x: Any, y: Any) -> dict[str, np.ndarray]:
    """OpenML rows of flat pixels (channel-major for colour) -> uint8 [N, C, H, W], standard train/test split."""
    pixels = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y).astype(str)
    expected = spec.n_train + spec.n_test
    size = int(np.prod(spec.input_shape))
    if pixels.ndim != 2 or pixels.shape != (expected, size) or len(labels) != expected:
        raise DatasetError(f"OpenML returned {pixels.shape} pixels and {len(labels)} labels for {spec.name!r}; "
                           f"expected ({expected}, {size}). The OpenML dataset may have changed: report this.")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError(f"OpenML pixels for {spec.name!r} are outside 0..255 "
                           f"({pixels.min():g}..{pixels.max():g}); the dataset may have changed: report this.")
    images = np.rint(pixels).astype(np.uint8).reshape((expected, *spec.input_shape))
    targets = np.array([int(float(label)) for label in labels], dtype=np.int64)
    return {"x_members": images[: spec.n_train], "y_members": targets[: spec.n_train],
            "x_non_members": images[spec.n_train:], "y_non_members": targets[spec.n_train:]}


def _convert_adult(spec: DatasetSpec, x: Any, y: Any) -> dict[str, np.ndarray]:
    """Adult census frame -> float32 (numerics raw, categoricals one-hot) with a stratified split."""
    frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
    labels = pd.Series(np.asarray(y)).astype(str).str.strip().str.rstrip(".")
    target = (labels == ">50K").to_numpy().astype(np.int64)
    encoded, names, numeric = _encode_features(frame, missing_category="missing")
    members, non_members = _stratified_split(target)
    return {"x_members": encoded[members], "y_members": target[members], "x_non_members": encoded[non_members],
            "y_non_members": target[non_members], "feature_names": np.array(names, dtype=str),
            "numeric_mask": np.array(numeric, dtype=bool)}


@functools.lru_cache(maxsize=8)
def _openml_raw(name: str, path: str) -> _RawSplit:
    spec = DATASETS[name]
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"the cached file {path} for {name!r} cannot be read ({err}); delete it and run "
                           f"`python -m dpcore datasets --fetch {name}` again") from err
    required = {"x_members", "y_members", "x_non_members", "y_non_members"}
    if spec.kind == "tabular":
        required |= {"feature_names", "numeric_mask"}
    missing = sorted(required - set(arrays))
    if missing or int(arrays.get("format_version", 0)) != CACHE_FORMAT_VERSION:
        raise DatasetError(f"the cached file {path} for {name!r} has an unexpected layout (missing "
                           f"{', '.join(missing) or 'format_version'}); delete it and fetch {name!r} again")
    x_m, y_m, x_n, y_n = (arrays[key] for key in ("x_members", "y_members", "x_non_members", "y_non_members"))
    feature_names = None
    if spec.kind == "tabular":
        feature_names = tuple(str(f) for f in arrays["feature_names"])
        input_shape: tuple[int, ...] = (len(feature_names),)
    else:
        input_shape = tuple(spec.input_shape)
    if tuple(x_m.shape[1:]) != input_shape or tuple(x_n.shape[1:]) != input_shape:
        raise DatasetError(f"the cached file {path} holds examples of shape {tuple(x_m.shape[1:])}, expected "
                           f"{input_shape} for {name!r}; delete it and fetch {name!r} again")
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind=spec.kind,
                       input_shape=input_shape, num_classes=len(spec.class_names), class_names=spec.class_names,
                       n_members=len(x_m), n_non_members=len(x_n), source="openml", feature_names=feature_names)
    if spec.kind == "image":
        return _image_raw(info, x_m, y_m, x_n, y_n, pixel_scale=255.0)
    mean, std = _member_stats(x_m, arrays["numeric_mask"])
    return _RawSplit(info, _readonly(x_m.astype(np.float32)), _readonly(y_m.astype(np.int64)),
                     _readonly(x_n.astype(np.float32)), _readonly(y_n.astype(np.int64)), None,
                     _readonly(mean), _readonly(std))


# ---------------------------------------------------------------------- CSV uploads
def _csv_bytes(source: Any) -> tuple[bytes, str]:
    """(content, title) from a path, bytes or file-like object (e.g. a Streamlit upload)."""
    if source is None:
        raise DatasetError("dataset 'csv' needs data_path: the path of a CSV file (or its bytes)")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "uploaded CSV"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        try:
            return path.read_bytes(), path.name
        except FileNotFoundError as err:
            raise DatasetError(f"CSV file {str(path)!r} does not exist; check the path") from err
        except IsADirectoryError as err:
            raise DatasetError(f"CSV path {str(path)!r} is a folder; give the path of a .csv file") from err
        except OSError as err:
            raise DatasetError(f"cannot read CSV file {str(path)!r}: {err}") from err
    title = str(getattr(source, "name", "") or "uploaded CSV")
    if hasattr(source, "getvalue"):
        content = source.getvalue()
    elif hasattr(source, "read"):
        content = source.read()
    else:
        raise DatasetError(f"a CSV must be given as a path, bytes or a file object, got {type(source).__name__}")
    if isinstance(content, str):
        content = content.encode("utf-8")
    return bytes(content), Path(title).name


def _decode_csv(content: bytes) -> str:
    if not content.strip():
        raise DatasetError("the CSV file is empty: it needs a header row and at least "
                           f"{MIN_CSV_ROWS} data rows")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = content[err.start:err.start + 1]
        guess = ""
        try:
            content.decode("cp1252")
            guess = " (it looks like Windows-1252/Latin-1)"
        except UnicodeDecodeError:
            pass
        raise DatasetError(f"the CSV is not UTF-8 text: byte 0x{bad.hex()} at offset {err.start} is not valid "
                           f"UTF-8{guess}. Re-save the file as UTF-8 (in Excel: 'CSV UTF-8') and upload it again.") \
            from err


def _sniff_separator(text: str) -> str:
    """',' unless the header clearly uses ';', tab or '|' (spreadsheets in many locales write ';')."""
    sample = text[:65536]
    try:
        return _csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except _csv.Error:
        return ","


def _load_csv(spec: DatasetSpec, *, data_path: Any = None, label_column: str | None = None, **_: Any) -> SplitData:
    content, title = _csv_bytes(data_path)
    return _materialise(_csv_raw(content, label_column, title))


@functools.lru_cache(maxsize=4)
def _csv_raw(content: bytes, label_column: str | None, title: str) -> _RawSplit:
    text = _decode_csv(content)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=_sniff_separator(text), nrows=MAX_CSV_ROWS + 1)
    except pd.errors.EmptyDataError as err:
        raise DatasetError("the CSV file is empty: it has no header row") from err
    except pd.errors.ParserError as err:
        raise DatasetError(f"the CSV cannot be parsed: {err}. Check that every row has as many fields as the "
                           "header and that quotes are closed.") from err
    frame.columns = [str(column) for column in frame.columns]
    if len(frame) > MAX_CSV_ROWS:
        raise DatasetError(f"the CSV has more than {MAX_CSV_ROWS:,} rows; DP Explorer trains interactively and "
                           f"accepts at most {MAX_CSV_ROWS:,}: upload a sample of the rows")
    columns = list(frame.columns)
    if not label_column:
        raise DatasetError(f"choose the label column of the CSV; columns: {', '.join(columns)}")
    if label_column not in frame.columns:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " (the file has a single column: is it separated by something other than commas?)"
        raise DatasetError(f"label column {label_column!r} is not in the CSV{hint}; available columns: "
                           f"{', '.join(columns)}")
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        listed = ", ".join(f"{column!r} ({count} missing)" for column, count in missing.items())
        raise DatasetError(f"the CSV has missing values in {len(missing)} column(s): {listed}. Fill them in or drop "
                           "those rows/columns, then upload again.")
    if len(frame) < MIN_CSV_ROWS:
        raise DatasetError(f"the CSV has {len(frame)} data rows; at least {MIN_CSV_ROWS} are needed to hold out "
                           f"{NON_MEMBER_FRACTION:.0%} as non-members")
    labels = frame[label_column]
    target, class_names = _encode_labels(labels, label_column)
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise DatasetError(f"the CSV has no feature columns besides the label {label_column!r}")
    encoded, names, numeric = _encode_features(features)
    members, non_members = _stratified_split(target)
    mean, std = _member_stats(encoded[members], np.array(numeric, dtype=bool))
    info = DatasetInfo(name="csv", title=f"CSV: {title}", description=(
        f"{len(frame)} rows, {features.shape[1]} feature columns ({len(names)} after one-hot encoding), "
        f"label {label_column!r} with {len(class_names)} classes"), kind="tabular", input_shape=(len(names),),
        num_classes=len(class_names), class_names=class_names, n_members=len(members),
        n_non_members=len(non_members), source="csv", feature_names=tuple(names), label_column=label_column)
    raw = frame.iloc[members].reset_index(drop=True)
    return _RawSplit(info, _readonly(encoded[members]), _readonly(target[members]), _readonly(encoded[non_members]),
                     _readonly(target[non_members]), None, _readonly(mean), _readonly(std), raw)


def _encode_labels(labels: pd.Series, label_column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (by sorted label value) and the original values as strings."""
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DatasetError(f"label column {label_column!r} has a single class ({counts.index[0]!r}); a classifier "
                           "needs at least two")
    if len(counts) > MAX_CSV_CLASSES:
        raise DatasetError(f"label column {label_column!r} has {len(counts)} distinct values (at most "
                           f"{MAX_CSV_CLASSES} classes allowed); it looks continuous or like an ID: pick a "
                           "categorical label column")
    rare = counts[counts < 2]
    if len(rare):
        listed = ", ".join(repr(value) for value in rare.index[:10])
        raise DatasetError(f"label column {label_column!r} has class(es) with a single row: {listed}. The "
                           "stratified member/non-member split needs at least 2 rows per class: add rows or "
                           "drop/merge those classes.")
    n_test = math.ceil(len(labels) * NON_MEMBER_FRACTION)
    if n_test < len(counts):
        raise DatasetError(f"{len(labels)} rows hold out {n_test} non-members, fewer than the {len(counts)} classes "
                           f"of {label_column!r}; a stratified split needs at least {len(counts)} non-members: add "
                           "rows or merge classes")
    values = list(counts.index)
    try:
        values = sorted(values)
    except TypeError:  # mixed types: order by text
        values = sorted(values, key=str)
    index = {value: i for i, value in enumerate(values)}
    target = labels.map(index).to_numpy().astype(np.int64)
    return target, tuple(str(value) for value in values)


def _encode_features(frame: pd.DataFrame, *, missing_category: str | None = None
                     ) -> tuple[np.ndarray, list[str], list[bool]]:
    """float32 matrix: numeric columns as is, others one-hot (sorted categories), with names and a numeric mask."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    numeric: list[bool] = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
            block = values.to_numpy(dtype=np.float64)
            if missing_category is not None:
                block = np.nan_to_num(block, nan=np.nanmean(block) if np.isfinite(block).any() else 0.0)
            if not np.isfinite(block).all():
                bad = int((~np.isfinite(block)).sum())
                raise DatasetError(f"column {column!r} has {bad} infinite value(s); replace them with numbers")
            blocks.append(block.astype(np.float32).reshape(-1, 1))
            names.append(str(column))
            numeric.append(True)
            continue
        text = values.astype(object)
        if missing_category is not None:
            text = text.where(values.notna(), missing_category)
        text = text.astype(str).str.strip()
        as_numbers = pd.to_numeric(text, errors="coerce")
        n_numbers = int(as_numbers.notna().sum())
        if n_numbers >= 0.9 * len(text) and n_numbers < len(text):
            bad_values = sorted(set(text[as_numbers.isna()]))[:5]
            raise DatasetError(f"column {column!r} is mostly numbers but has {len(text) - n_numbers} non-numeric "
                               f"value(s) such as {', '.join(repr(v) for v in bad_values)}; fix or drop them so it "
                               "is read as numbers")
        categories = sorted(set(text))
        if len(categories) > MAX_CSV_CATEGORIES:
            raise DatasetError(f"column {column!r} has {len(categories)} distinct text values (at most "
                               f"{MAX_CSV_CATEGORIES} allowed for one-hot encoding); it looks like an ID or free-text "
                               "column: drop it")
        codes = pd.Categorical(text, categories=categories).codes
        blocks.append(np.eye(len(categories), dtype=np.float32)[codes])
        names.extend(f"{column}={category}" for category in categories)
        numeric.extend([False] * len(categories))
        if len(names) > MAX_CSV_FEATURES:
            break
    if len(names) > MAX_CSV_FEATURES:
        raise DatasetError(f"the CSV gives more than {MAX_CSV_FEATURES} feature columns after one-hot encoding "
                           f"(at least {len(names)}); drop columns or categorical columns with many values")
    return np.concatenate(blocks, axis=1).astype(np.float32), names, numeric


# ---------------------------------------------------------------------- the registry
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot")
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DIGIT_CLASSES = tuple(str(d) for d in range(10))

DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(
        "synthetic", "Synthetic embeddings",
        "1000 standard Gaussian 128-d 'embeddings', label = (x0 + x1 > 0); 800 members, 200 non-members.",
        "tabular", "builtin", _load_builtin, n_examples=1000, input_shape=(128,),
        class_names=("x0+x1<=0", "x0+x1>0")),
    "digits": DatasetSpec(
        "digits", "Handwritten digits (8x8)",
        "scikit-learn's 1797 8x8 grayscale digits, 10 classes; stratified 80/20 split.",
        "image", "builtin", _load_builtin, n_examples=1797, input_shape=(1, 8, 8), class_names=_DIGIT_CLASSES),
    "breast-cancer": DatasetSpec(
        "breast-cancer", "Breast cancer (Wisconsin)",
        "569 tumours, 30 numeric features, malignant vs benign; stratified 80/20 split.",
        "tabular", "builtin", _load_builtin, n_examples=569, input_shape=(30,),
        class_names=("malignant", "benign")),
    "mnist": DatasetSpec(
        "mnist", "MNIST digits (28x28)", "70000 28x28 grayscale handwritten digits; standard 60000/10000 split.",
        "image", "openml", _load_openml, n_examples=70000, input_shape=(1, 28, 28), class_names=_DIGIT_CLASSES,
        openml_name="mnist_784", openml_version=1, n_train=60000, n_test=10000),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "Fashion-MNIST (28x28)",
        "70000 28x28 grayscale clothing images, 10 classes; standard 60000/10000 split.",
        "image", "openml", _load_openml, n_examples=70000, input_shape=(1, 28, 28), class_names=_FASHION_CLASSES,
        openml_name="Fashion-MNIST", openml_version=1, n_train=60000, n_test=10000),
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10 (32x32 colour)", "60000 32x32 colour images, 10 classes; standard 50000/10000 split.",
        "image", "openml", _load_openml, n_examples=60000, input_shape=(3, 32, 32), class_names=_CIFAR_CLASSES,
        openml_name="CIFAR_10", openml_version=1, n_train=50000, n_test=10000),
    "adult": DatasetSpec(
        "adult", "Adult census income",
        "48842 census records, income >50K or not; categoricals one-hot, numerics standardised; "
        "stratified 80/20 split.",
        "tabular", "openml", _load_openml, n_examples=48842, class_names=("<=50K", ">50K"),
        openml_name="adult", openml_version=2),
    "csv": DatasetSpec(
        "csv", "Your CSV", "A CSV you upload: pick the label column; numeric columns are standardised, text columns "
        "one-hot encoded; stratified 80/20 split.", "tabular", "csv", _load_csv),
}
