"""Splits: ``SplitData`` (members, non-members, validation), the fixed split and standardisation.

Every dataset loads as a ``SplitData``: float32 features and int64 labels split into
members (the training set) and non-members (held out, same distribution; used for
test accuracy and as the membership attacker's negatives). The split never depends
on the training seed. The loaders of each source (``builtin_data``, ``openml``,
``csv_data``) build a ``RawSplit`` of cached arrays; ``materialise`` turns it into fresh tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from dpcore.errors import DatasetError

SPLIT_SEED = 42  # fixed: the member/non-member split must not move with the training seed
NON_MEMBER_FRACTION = 0.2
VALIDATION_SEED = 4242  # fixed: the validation slice of the members must not move with the training seed


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
    only) holds the original member rows, in the order of ``x_members``; ``raw_non_members``
    (CSV only) the original non-member rows, in the order of ``x_non_members``.
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
    raw_non_members: pd.DataFrame | None = field(default=None, repr=False)

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
class RawSplit:
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
    raw_non_members: pd.DataFrame | None = None  # CSV only: the original non-member rows


# ---------------------------------------------------------------------- validation hold-out
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

    Non-members are unchanged (and their CSV ``raw_non_members`` rows); ``info.n_members`` counts the members
    left (those trained on); CSV ``raw`` rows follow the members. Feature standardisation keeps the statistics of all
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


# ---------------------------------------------------------------------- arrays to tensors, the fixed split
def readonly(array: np.ndarray) -> np.ndarray:
    """A contiguous read-only view or copy of ``array`` (cached arrays must never be modified in place)."""
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def materialise(raw: RawSplit) -> SplitData:
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
        raw_non_members=None if raw.raw_non_members is None else raw.raw_non_members.copy(),
    )


def stratified_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Member and non-member row indices: a stratified 80/20 split with the fixed SPLIT_SEED."""
    from sklearn.model_selection import train_test_split  # deferred: scikit-learn takes seconds to import

    indices = np.arange(len(y))
    try:
        members, non_members = train_test_split(indices, test_size=NON_MEMBER_FRACTION, stratify=y,
                                                random_state=SPLIT_SEED)
    except ValueError as err:
        raise DatasetError(f"cannot make a stratified {1 - NON_MEMBER_FRACTION:.0%}/{NON_MEMBER_FRACTION:.0%} "
                           f"member/non-member split of {len(y)} rows: {err}. Add rows or merge rare classes.") from err
    return np.asarray(members), np.asarray(non_members)


def member_stats(x_members: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature member mean and std (ddof 0); features outside ``mask`` and constant ones keep mean 0 / std 1."""
    mean = x_members.astype(np.float64).mean(axis=0)
    std = x_members.astype(np.float64).std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    if mask is not None:
        mean = np.where(mask, mean, 0.0)
        std = np.where(mask, std, 1.0)
    return mean, std


def channel_stats(unit_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel member mean and std of images [N, C, H, W] in [0, 1] units."""
    axes = (0, *range(2, unit_members.ndim))
    mean = unit_members.mean(axis=axes, dtype=np.float64)
    std = unit_members.std(axis=axes, dtype=np.float64)
    return mean, np.where(std > 1e-12, std, 1.0)


def image_raw(info: DatasetInfo, x_members: np.ndarray, y_members: np.ndarray, x_non_members: np.ndarray,
               y_non_members: np.ndarray, pixel_scale: float) -> RawSplit:
    """A ``RawSplit`` of integer images [N, C, H, W]; ``pixel_scale`` maps pixels to [0, 1] for per-channel stats."""
    mean, std = channel_stats(x_members.astype(np.float32) / np.float32(pixel_scale))
    return RawSplit(info, readonly(x_members), readonly(y_members.astype(np.int64)), readonly(x_non_members),
                    readonly(y_non_members.astype(np.int64)), float(pixel_scale), readonly(mean), readonly(std))
