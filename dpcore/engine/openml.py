"""Datasets downloaded once from OpenML (MNIST, Fashion-MNIST, CIFAR-10, Adult) and kept as compact .npz files.

The download cache lives in ``cache_dir_path()``; every cache file is written atomically, so an
interrupted download never leaves a half-written file that looks cached.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dpcore.atomic import atomic_write
from dpcore.engine.builtin_data import BUILTIN_DATASETS, DIGIT_CLASSES
from dpcore.engine.csv_data import encode_features
from dpcore.engine.splits import (
    DatasetInfo,
    DatasetSpec,
    RawSplit,
    SplitData,
    image_raw,
    materialise,
    member_stats,
    readonly,
    stratified_split,
)
from dpcore.errors import DatasetError

CACHE_ENV_VAR = "DPEXPLORER_DATA_DIR"
CACHE_FORMAT_VERSION = 1


def cache_dir_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The download cache directory: ``cache_dir``, else ``$DPEXPLORER_DATA_DIR``, else ``~/.cache/dp-explorer``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dp-explorer"


_OPENML_IMAGE_NAMES = {"mnist_784", "Fashion-MNIST", "CIFAR_10"}


def _fetch_openml(name: str, version: int | None, data_home: str) -> tuple[Any, Any]:
    """Download (X, y) from OpenML. The single network entry point: tests replace it with a fake."""
    from sklearn.datasets import fetch_openml  # deferred: scikit-learn takes seconds to import

    as_frame = name not in _OPENML_IMAGE_NAMES  # images as plain arrays; tabular keeps column dtypes
    kwargs: dict[str, Any] = {"data_home": data_home, "as_frame": as_frame, "parser": "auto"}
    if version is not None:
        kwargs["version"] = version
    return fetch_openml(name, return_X_y=True, **kwargs)


def load_openml(spec: DatasetSpec, *, cache_dir: Path, download: bool = True, **_: Any) -> SplitData:
    """The registry loader of the OpenML datasets: from ``<cache_dir>/<name>.npz``, downloaded first if missing."""
    path = cache_dir / f"{spec.name}.npz"
    if not path.is_file():
        if not download:
            raise DatasetError(_missing_cache_message(spec, path, reason="downloads are switched off"))
        download_to_cache(spec, path)
        openml_raw.cache_clear()
    return materialise(openml_raw(spec, str(path)))


def _missing_cache_message(spec: DatasetSpec, path: Path, *, reason: str) -> str:
    return (f"dataset {spec.name!r} ({spec.title}) is not in the download cache: checked {path} and {reason}. "
            f"On a machine with internet run `python -m dpcore datasets --fetch {spec.name}` (set "
            f"{CACHE_ENV_VAR} to choose the cache folder), then copy {path.name} into {path.parent} here; "
            f"or pick an offline dataset: {', '.join(BUILTIN_DATASETS)}.")


def download_to_cache(spec: DatasetSpec, path: Path) -> None:
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
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


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
    encoded, names, numeric = encode_features(frame, missing_category="missing")
    members, non_members = stratified_split(target)
    return {"x_members": encoded[members], "y_members": target[members], "x_non_members": encoded[non_members],
            "y_non_members": target[non_members], "feature_names": np.array(names, dtype=str),
            "numeric_mask": np.array(numeric, dtype=bool)}


@functools.lru_cache(maxsize=8)
def openml_raw(spec: DatasetSpec, path: str) -> RawSplit:
    """The read-only arrays of the cache file ``path`` of ``spec``, checked against its layout (memoised)."""
    name = spec.name
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
        return image_raw(info, x_m, y_m, x_n, y_n, pixel_scale=255.0)
    mean, std = member_stats(x_m, arrays["numeric_mask"])
    return RawSplit(info, readonly(x_m.astype(np.float32)), readonly(y_m.astype(np.int64)),
                    readonly(x_n.astype(np.float32)), readonly(y_n.astype(np.int64)), None,
                    readonly(mean), readonly(std))


_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot")
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

OPENML_DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", "MNIST digits (28x28)", "70000 28x28 grayscale handwritten digits; standard 60000/10000 split.",
        "image", "openml", load_openml, n_examples=70000, input_shape=(1, 28, 28), class_names=DIGIT_CLASSES,
        openml_name="mnist_784", openml_version=1, n_train=60000, n_test=10000),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "Fashion-MNIST (28x28)",
        "70000 28x28 grayscale clothing images, 10 classes; standard 60000/10000 split.",
        "image", "openml", load_openml, n_examples=70000, input_shape=(1, 28, 28), class_names=_FASHION_CLASSES,
        openml_name="Fashion-MNIST", openml_version=1, n_train=60000, n_test=10000),
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10 (32x32 colour)", "60000 32x32 colour images, 10 classes; standard 50000/10000 split.",
        "image", "openml", load_openml, n_examples=60000, input_shape=(3, 32, 32), class_names=_CIFAR_CLASSES,
        openml_name="CIFAR_10", openml_version=1, n_train=50000, n_test=10000),
    "adult": DatasetSpec(
        "adult", "Adult census income",
        "48842 census records, income >50K or not; categoricals one-hot, numerics standardised; "
        "stratified 80/20 split.",
        "tabular", "openml", load_openml, n_examples=48842, class_names=("<=50K", ">50K"),
        openml_name="adult", openml_version=2),
}
