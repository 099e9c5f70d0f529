"""The built-in datasets (no download): synthetic embeddings, scikit-learn's digits and breast cancer."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

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

DIGIT_CLASSES = tuple(str(d) for d in range(10))


@functools.cache
def builtin_raw(spec: DatasetSpec) -> RawSplit:
    """The read-only arrays of built-in dataset ``spec``, built once per process (``clear_cache`` forgets them)."""
    if spec.name == "synthetic":
        return _synthetic_raw(spec)
    if spec.name == "digits":
        return _digits_raw(spec)
    if spec.name == "breast-cancer":
        return _breast_cancer_raw(spec)
    raise DatasetError(f"no built-in loader for {spec.name!r}")  # pragma: no cover - registry misconfigured


def load_builtin(spec: DatasetSpec, **_: Any) -> SplitData:
    """The registry loader of the built-in datasets: fresh tensors of ``spec``'s split."""
    return materialise(builtin_raw(spec))


def _synthetic_raw(spec: DatasetSpec) -> RawSplit:
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
    return RawSplit(info, readonly(x_np[:800]), readonly(y_np[:800]), readonly(x_np[800:]),
                    readonly(y_np[800:]), None, readonly(np.zeros(128)), readonly(np.ones(128)))


def _digits_raw(spec: DatasetSpec) -> RawSplit:
    from sklearn.datasets import load_digits  # deferred: scikit-learn takes seconds to import

    bunch = load_digits()
    pixels = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)  # values 0..16
    y = bunch.target.astype(np.int64)
    members, non_members = stratified_split(y)
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind="image",
                       input_shape=(1, 8, 8), num_classes=10, class_names=tuple(str(d) for d in range(10)),
                       n_members=len(members), n_non_members=len(non_members), source="builtin")
    return image_raw(info, pixels[members], y[members], pixels[non_members], y[non_members], pixel_scale=16.0)


def _breast_cancer_raw(spec: DatasetSpec) -> RawSplit:
    from sklearn.datasets import load_breast_cancer  # deferred: scikit-learn takes seconds to import

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    members, non_members = stratified_split(y)
    mean, std = member_stats(x[members])
    info = DatasetInfo(name=spec.name, title=spec.title, description=spec.description, kind="tabular",
                       input_shape=(x.shape[1],), num_classes=2,
                       class_names=tuple(str(c) for c in bunch.target_names), n_members=len(members),
                       n_non_members=len(non_members), source="builtin",
                       feature_names=tuple(str(f) for f in bunch.feature_names))
    return RawSplit(info, readonly(x[members]), readonly(y[members]), readonly(x[non_members]),
                    readonly(y[non_members]), None, readonly(mean), readonly(std))


BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(
        "synthetic", "Synthetic embeddings",
        "1000 standard Gaussian 128-d 'embeddings', label = (x0 + x1 > 0); 800 members, 200 non-members.",
        "tabular", "builtin", load_builtin, n_examples=1000, input_shape=(128,),
        class_names=("x0+x1<=0", "x0+x1>0")),
    "digits": DatasetSpec(
        "digits", "Handwritten digits (8x8)",
        "scikit-learn's 1797 8x8 grayscale digits, 10 classes; stratified 80/20 split.",
        "image", "builtin", load_builtin, n_examples=1797, input_shape=(1, 8, 8), class_names=DIGIT_CLASSES),
    "breast-cancer": DatasetSpec(
        "breast-cancer", "Breast cancer (Wisconsin)",
        "569 tumours, 30 numeric features, malignant vs benign; stratified 80/20 split.",
        "tabular", "builtin", load_builtin, n_examples=569, input_shape=(30,),
        class_names=("malignant", "benign")),
}
