"""Tests for dpcore.engine.data and its parts (splits, builtin_data, openml, csv_data).

Built-in datasets, the OpenML download cache (faked, no network) and CSV uploads.
"""

from __future__ import annotations

import dataclasses
import io
import urllib.error

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from dpcore.config import TrainConfig
from dpcore.engine import csv_data, data, openml
from dpcore.engine.data import DATASETS, load_dataset
from dpcore.errors import DatasetError, DPExplorerError


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Empty in-memory cache, a private download cache folder and no network for every test."""
    monkeypatch.setenv(openml.CACHE_ENV_VAR, str(tmp_path / "env-cache"))

    def no_network(name, version, data_home):
        raise AssertionError(f"test tried to download {name!r} from OpenML")

    monkeypatch.setattr(openml, "_fetch_openml", no_network)
    data.clear_cache()
    yield
    data.clear_cache()


class FakeOpenML:
    """Stands in for ``_fetch_openml``: returns small arrays shaped like OpenML's and counts calls."""

    def __init__(self, x, y):
        self.x, self.y, self.calls = x, y, []

    def __call__(self, name, version, data_home):
        self.calls.append((name, version, data_home))
        return self.x, self.y


def shrink(monkeypatch, name, **changes):
    """Replace a registry entry (e.g. a 70-row MNIST) for the duration of a test."""
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], **changes))


@pytest.fixture
def fake_mnist(monkeypatch):
    """A 70-row MNIST (60 members, 10 non-members) served by a fake fetch."""
    shrink(monkeypatch, "mnist", n_train=60, n_test=10, n_examples=70)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(70, 784)).astype(np.float64)  # OpenML gives float pixels
    y = np.array([str(i % 10) for i in range(70)], dtype=object)  # and string labels
    fake = FakeOpenML(x, y)
    monkeypatch.setattr(openml, "_fetch_openml", fake)
    return fake


def csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode("utf-8")


def good_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "age": rng.integers(18, 90, size=n),
        "color": np.array(["red", "green", "blue", "green"])[np.arange(n) % 4],
        "income": rng.normal(50_000, 10_000, size=n).round(2),
        "buys": np.array(["yes", "no"])[np.arange(n) % 2],
    })


# ---------------------------------------------------------------------- built-in datasets
def test_synthetic_matches_the_seed_script_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    split = load_dataset("synthetic")
    assert torch.equal(torch.get_rng_state(), before)

    with torch.random.fork_rng():
        torch.manual_seed(42)
        x = torch.randn(1000, 128)
        y = (x[:, 0] + x[:, 1] > 0).long()
    assert torch.equal(split.x_members, x[:800]) and torch.equal(split.x_non_members, x[800:])
    assert torch.equal(split.y_members, y[:800]) and torch.equal(split.y_non_members, y[800:])
    assert split.x_members.dtype == torch.float32 and split.y_members.dtype == torch.int64
    info = split.info
    assert (info.kind, info.input_shape, info.num_classes, info.source) == ("tabular", (128,), 2, "builtin")
    assert (info.n_members, info.n_non_members, split.n_members, split.n_non_members) == (800, 200, 800, 200)
    assert len(split.members) == 800 and len(split.non_members) == 200


def test_digits_shapes_stratified_split_and_member_standardisation():
    split = load_dataset("digits")
    assert split.x_members.shape == (1437, 1, 8, 8) and split.x_non_members.shape == (360, 1, 8, 8)
    assert split.x_members.dtype == torch.float32 and split.y_non_members.dtype == torch.int64
    assert split.info.kind == "image" and split.info.num_classes == 10 and split.info.class_names[3] == "3"
    # Stratified: every class is in both parts in about the same proportion.
    member_share = np.bincount(split.y_members.numpy(), minlength=10) / 1437
    non_member_share = np.bincount(split.y_non_members.numpy(), minlength=10) / 360
    assert np.abs(member_share - non_member_share).max() < 0.01
    # Standardised with member statistics: members have mean 0 / std 1, non-members only approximately.
    assert abs(split.x_members.mean().item()) < 1e-5 and abs(split.x_members.std(unbiased=False).item() - 1) < 1e-4
    assert abs(split.x_non_members.mean().item()) > 1e-4
    # Pixels were scaled to [0, 1] before standardising.
    pixels = load_digits().images / 16.0
    assert np.isclose(split.feature_mean[0], pixels.mean(), atol=0.01)


def test_digits_members_and_non_members_partition_the_dataset():
    split = load_dataset("digits")
    unit = lambda x: x.numpy().astype(np.float64) * split.feature_std[0] + split.feature_mean[0]  # noqa: E731
    recovered = np.rint(np.concatenate([unit(split.x_members), unit(split.x_non_members)]) * 16).reshape(-1, 64)
    labels = np.concatenate([split.y_members.numpy(), split.y_non_members.numpy()])
    original = load_digits()
    ours = np.column_stack([recovered, labels])
    theirs = np.column_stack([original.data, original.target])
    # Same multiset of (pixels, label) rows, same count: every example is in exactly one part.
    assert len(ours) == len(theirs) == 1797
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])


def test_breast_cancer_uses_member_statistics_and_fixed_split():
    split = load_dataset("breast-cancer")
    assert split.x_members.shape == (455, 30) and split.x_non_members.shape == (114, 30)
    assert split.info.class_names == ("malignant", "benign") and split.info.feature_names[0] == "mean radius"
    bunch = load_breast_cancer()
    members, non_members = train_test_split(np.arange(569), test_size=0.2, stratify=bunch.target, random_state=42)
    assert not set(members) & set(non_members)
    x = bunch.data.astype(np.float32).astype(np.float64)
    mean, std = x[members].mean(axis=0), x[members].std(axis=0)
    np.testing.assert_allclose(split.x_members.numpy(), (x[members] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(split.x_non_members.numpy(), (x[non_members] - mean) / std, atol=1e-4)
    np.testing.assert_array_equal(split.y_non_members.numpy(), bunch.target[non_members])
    np.testing.assert_allclose(split.x_members.numpy().mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(split.x_members.numpy().std(axis=0), 1, atol=1e-4)
    assert np.abs(split.x_non_members.numpy().mean(axis=0)).max() > 0.01  # not re-standardised on its own


def test_split_does_not_depend_on_global_seeds():
    first = load_dataset("breast-cancer")
    data.clear_cache()
    with torch.random.fork_rng():
        torch.manual_seed(7)
        np.random.seed(7)
        second = load_dataset("breast-cancer")
    assert first == second


def test_each_load_returns_fresh_tensors():
    first = load_dataset("digits")
    first.x_members.zero_()
    first.y_members.fill_(3)
    second = load_dataset("digits")
    assert second.x_members.abs().sum() > 0 and not torch.all(second.y_members == 3)
    assert second.x_members.data_ptr() != load_dataset("digits").x_members.data_ptr()


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DatasetError) as err:
        load_dataset("mnsit")
    message = str(err.value)
    assert "mnsit" in message and "did you mean 'mnist'" in message
    assert all(name in message for name in DATASETS)
    assert isinstance(err.value, DPExplorerError) and isinstance(err.value, ValueError)


def test_load_for_config():
    split = data.load_for_config(TrainConfig(dataset="breast-cancer", target_epsilon=3.0))
    assert split == load_dataset("breast-cancer")


# ---------------------------------------------------------------------- OpenML (faked)
def test_mnist_is_fetched_once_cached_compactly_and_loads_offline(fake_mnist, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert data.dataset_status("mnist", cache_dir=cache) == "download"
    split = load_dataset("mnist", cache_dir=cache)
    assert len(fake_mnist.calls) == 1 and fake_mnist.calls[0][:2] == ("mnist_784", 1)
    assert split.x_members.shape == (60, 1, 28, 28) and split.x_non_members.shape == (10, 1, 28, 28)
    assert split.x_members.dtype == torch.float32 and split.y_members.dtype == torch.int64
    assert split.info.source == "openml" and split.info.n_members == 60
    # Standard split: the first n_train rows are members, the rest non-members.
    np.testing.assert_array_equal(split.y_members.numpy(), np.arange(60) % 10)
    np.testing.assert_array_equal(split.y_non_members.numpy(), np.arange(60, 70) % 10)
    pixels = fake_mnist.x.reshape(70, 1, 28, 28)
    np.testing.assert_array_equal(data.preview_images(split, n=3)[..., 0], pixels[:3, 0].astype(np.uint8))

    cached = cache / "mnist.npz"
    assert cached.is_file() and data.dataset_status("mnist", cache_dir=cache) == "cached"
    with np.load(cached) as npz:
        assert npz["x_members"].dtype == np.uint8 and npz["x_members"].shape == (60, 1, 28, 28)
    assert [p.name for p in cache.iterdir()] == ["mnist.npz"]  # the raw download was cleaned up

    def offline(name, version, data_home):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(openml, "_fetch_openml", offline)
    data.clear_cache()
    assert load_dataset("mnist", cache_dir=cache) == split


def test_cache_dir_comes_from_environment(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(openml.CACHE_ENV_VAR, str(tmp_path / "from-env"))
    assert data.fetch_dataset("mnist") == tmp_path / "from-env" / "mnist.npz"
    assert data.dataset_status("mnist") == "cached"
    assert data.fetch_dataset("mnist") == tmp_path / "from-env" / "mnist.npz"
    assert len(fake_mnist.calls) == 1  # cached: not downloaded again
    data.fetch_dataset("mnist", force=True)
    assert len(fake_mnist.calls) == 2


def test_offline_without_cache_explains_how_to_get_the_data(tmp_path, monkeypatch):
    def offline(name, version, data_home):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(openml, "_fetch_openml", offline)
    cache = tmp_path / "empty"
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", cache_dir=cache)
    message = str(err.value)
    assert "'mnist'" in message and str(cache / "mnist.npz") in message
    assert "python -m dpcore datasets --fetch mnist" in message and "name resolution" in message
    assert not (cache / "mnist.npz").exists()


def test_download_false_never_fetches(tmp_path):
    with pytest.raises(DatasetError, match="downloads are switched off"):
        load_dataset("fashion-mnist", cache_dir=tmp_path, download=False)  # the no-network fake would fail


def test_unreadable_cache_file_is_a_clear_error(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="delete it"):
        load_dataset("mnist", cache_dir=tmp_path)


def test_cifar10_columns_are_channel_major(monkeypatch, tmp_path):
    shrink(monkeypatch, "cifar10", n_train=10, n_test=2, n_examples=12)
    red = np.arange(1024) % 200
    row = np.concatenate([red, np.full(1024, 7), np.full(1024, 250)]).astype(np.float64)
    x = np.tile(row, (12, 1))
    monkeypatch.setattr(openml, "_fetch_openml", FakeOpenML(x, np.array(["1"] * 6 + ["2"] * 6)))
    split = load_dataset("cifar10", cache_dir=tmp_path)
    assert split.x_members.shape == (10, 3, 32, 32) and split.x_non_members.shape == (2, 3, 32, 32)
    images = data.preview_images(split, n=2)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0, :, :, 0], red.reshape(32, 32))
    assert (images[..., 1] == 7).all() and (images[..., 2] == 250).all()
    assert split.info.class_names[1] == "automobile"


def test_wrong_row_count_from_openml_is_reported(monkeypatch, tmp_path):
    shrink(monkeypatch, "mnist", n_train=60, n_test=10)
    monkeypatch.setattr(openml, "_fetch_openml", FakeOpenML(np.zeros((50, 784)), np.array(["0"] * 50)))
    with pytest.raises(DatasetError, match="expected"):
        load_dataset("mnist", cache_dir=tmp_path)


def test_adult_is_one_hot_encoded_and_cached_as_float32(monkeypatch, tmp_path):
    n = 50
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "age": rng.integers(17, 90, size=n).astype(float),
        "workclass": pd.Categorical(np.array(["Private", "State-gov", None, "Private", "Self-emp"])[np.arange(n) % 5]),
        "hours-per-week": rng.integers(10, 60, size=n).astype(float),
    })
    target = pd.Series(pd.Categorical(np.array([">50K", "<=50K", "<=50K"])[np.arange(n) % 3]))
    fake = FakeOpenML(frame, target)
    monkeypatch.setattr(openml, "_fetch_openml", fake)
    split = load_dataset("adult", cache_dir=tmp_path)
    assert fake.calls[0][:2] == ("adult", 2)
    assert split.info.feature_names == ("age", "workclass=Private", "workclass=Self-emp", "workclass=State-gov",
                                        "workclass=missing", "hours-per-week")
    assert split.info.class_names == ("<=50K", ">50K") and split.n_members == 40 and split.n_non_members == 10
    x = split.x_members.numpy()
    np.testing.assert_allclose(x[:, [0, 5]].mean(axis=0), 0, atol=1e-5)
    assert set(np.unique(x[:, 1:5])) <= {0.0, 1.0} and (x[:, 1:5].sum(axis=1) == 1).all()
    labels = np.concatenate([split.y_members.numpy(), split.y_non_members.numpy()])
    assert labels.sum() == (target == ">50K").sum()
    with np.load(tmp_path / "adult.npz") as npz:
        assert npz["x_members"].dtype == np.float32
    table = data.preview_table(split, n=5)
    assert set(table["age"].round(3)) <= set(frame["age"]) and list(table.columns)[-1] == "label"


# ---------------------------------------------------------------------- status and listing
def test_dataset_status_and_list_datasets(fake_mnist, tmp_path):
    for name in ("synthetic", "digits", "breast-cancer", "csv"):
        assert data.dataset_status(name, cache_dir=tmp_path) == "offline"
    for name in ("mnist", "fashion-mnist", "cifar10", "adult"):
        assert data.dataset_status(name, cache_dir=tmp_path) == "download"
    data.fetch_dataset("mnist", cache_dir=tmp_path)
    listing = data.list_datasets(cache_dir=tmp_path)
    assert list(listing.columns)[:6] == ["name", "title", "kind", "source", "status", "n"]
    assert list(listing["name"]) == list(DATASETS)
    row = listing.set_index("name")
    assert row.loc["mnist", "status"] == "cached" and row.loc["cifar10", "status"] == "download"
    assert row.loc["digits", "n"] == 1797 and pd.isna(row.loc["csv", "n"])
    assert row.loc["cifar10", "kind"] == "image" and row.loc["adult", "source"] == "openml"


def test_fetch_dataset_for_local_datasets():
    assert data.fetch_dataset("digits") is None
    with pytest.raises(DatasetError, match="cannot be fetched"):
        data.fetch_dataset("csv")


# ---------------------------------------------------------------------- previews
def test_preview_images_undoes_standardisation():
    split = load_dataset("digits")
    images = data.preview_images(split)
    assert images.shape == (16, 8, 8, 1) and images.dtype == np.uint8
    members, _ = train_test_split(np.arange(1797), test_size=0.2, stratify=load_digits().target, random_state=42)
    expected = np.rint(load_digits().images[members[:16]] / 16 * 255)
    np.testing.assert_array_equal(images[..., 0], expected)
    assert data.preview_images(split, n=3).shape == (3, 8, 8, 1)
    with pytest.raises(DatasetError, match="preview_table"):
        data.preview_images(load_dataset("breast-cancer"))


def test_preview_table_shows_original_values():
    split = load_dataset("breast-cancer")
    table = data.preview_table(split, n=5)
    assert table.shape == (5, 31) and list(table.columns)[-1] == "label"
    bunch = load_breast_cancer()
    members, _ = train_test_split(np.arange(569), test_size=0.2, stratify=bunch.target, random_state=42)
    np.testing.assert_allclose(table.iloc[:, :30].to_numpy(), bunch.data[members[:5]], rtol=1e-4)
    assert list(table["label"]) == [bunch.target_names[t] for t in bunch.target[members[:5]]]
    with pytest.raises(DatasetError, match="preview_images"):
        data.preview_table(load_dataset("digits"))


# ---------------------------------------------------------------------- CSV uploads
def test_good_csv_with_categorical_column_and_string_label(tmp_path):
    frame = good_frame()
    path = tmp_path / "shop.csv"
    path.write_bytes(csv_bytes(frame))
    split = load_dataset("csv", data_path=str(path), label_column="buys")
    info = split.info
    assert info.class_names == ("no", "yes") and info.num_classes == 2 and info.source == "csv"
    assert info.feature_names == ("age", "color=blue", "color=green", "color=red", "income")
    assert info.input_shape == (5,) and (info.n_members, info.n_non_members) == (32, 8)
    assert info.title == "CSV: shop.csv" and info.label_column == "buys"
    x = split.x_members.numpy()
    np.testing.assert_allclose(x[:, [0, 4]].mean(axis=0), 0, atol=1e-5)  # numerics: member stats
    np.testing.assert_allclose(x[:, [0, 4]].std(axis=0), 1, atol=1e-4)
    assert set(np.unique(x[:, 1:4])) == {0.0, 1.0} and (x[:, 1:4].sum(axis=1) == 1).all()  # one-hot untouched
    assert np.bincount(split.y_non_members.numpy()).tolist() == [4, 4]  # stratified
    # raw keeps the original member rows, aligned with x_members.
    assert split.raw is not None and len(split.raw) == 32
    decoded = np.array(info.class_names)[split.y_members.numpy()]
    np.testing.assert_array_equal(split.raw["buys"].to_numpy(), decoded)
    np.testing.assert_array_equal(split.raw["color"].to_numpy(),
                                  np.array(["blue", "green", "red"])[x[:, 1:4].argmax(axis=1)])
    table = data.preview_table(split, n=4)
    assert list(table.columns) == ["age", "color", "income", "label"]
    assert table["color"].isin(["red", "green", "blue"]).all() and list(table["label"]) == list(decoded[:4])
    # The same content given as bytes or as an upload-like object loads identically.
    same = load_dataset("csv", data_path=csv_bytes(frame), label_column="buys")
    assert same.info.title == "CSV: uploaded CSV"
    assert same == dataclasses.replace(split, info=same.info) and same.raw.equals(split.raw)
    upload = io.BytesIO(csv_bytes(frame))
    upload.name = "shop.csv"
    assert load_dataset("csv", data_path=upload, label_column="buys") == split
    assert split.raw is not same.raw  # copies, not the cached frame


def test_csv_numeric_label_semicolons_and_columns():
    frame = good_frame().assign(buys=np.arange(40) % 3 + 1)
    content = csv_bytes(frame, sep=";")
    assert data.csv_columns(content) == ["age", "color", "income", "buys"]
    split = load_dataset("csv", data_path=content, label_column="buys")
    assert split.info.class_names == ("1", "2", "3")
    assert data.preview_table(split, n=3)["label"].tolist() == (split.y_members[:3] + 1).tolist()


def test_csv_split_is_disjoint():
    frame = good_frame().assign(row_id=np.arange(40).astype(float))  # unique marker per row
    split = load_dataset("csv", data_path=csv_bytes(frame), label_column="buys")
    column = split.info.feature_names.index("row_id")
    ids = lambda x: x[:, column].numpy() * split.feature_std[column] + split.feature_mean[column]  # noqa: E731
    members, non_members = np.rint(ids(split.x_members)), np.rint(ids(split.x_non_members))
    assert not set(members) & set(non_members) and sorted(set(members) | set(non_members)) == list(range(40))


def frame_with(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


CSV_ERRORS = {
    "empty": (b"", "buys", ["empty"]),
    "blank": (b"  \n\n", "buys", ["empty"]),
    "not utf-8": ("name,buys\ncaf\xe9,1\n".encode("latin-1"), "buys", ["offset 13", "0xe9", "UTF-8", "Re-save"]),
    "missing label": (csv_bytes(good_frame()), "bought", ["'bought'", "available columns: age, color, income, buys"]),
    "no label chosen": (csv_bytes(good_frame()), None, ["label column", "age, color, income, buys"]),
    "missing values": (b"a,b,buys\n" + b"".join(b"1,,0\n" if i % 4 == 0 else b"1,2,%d\n" % (i % 2) for i in range(40))
                       + b",3,1\n", "buys", ["'a' (1 missing)", "'b' (10 missing)", "Fill them in or drop"]),
    "single class": (csv_bytes(good_frame().assign(buys="yes")), "buys", ["single class", "'yes'"]),
    "too few rows": (csv_bytes(good_frame(19)), "buys", ["19 data rows", "at least 20"]),
    "lonely class": (csv_bytes(good_frame().assign(buys=["a"] * 39 + ["b"])), "buys", ["single row", "'b'"]),
    "id column": (csv_bytes(good_frame(120).assign(customer=[f"C-{i:04d}" for i in range(120)])), "buys",
                  ["'customer'", "120 distinct", "ID"]),
    "too many features": (csv_bytes(pd.DataFrame(np.ones((20, 1001)), columns=[f"f{i}" for i in range(1001)])
                                    .assign(buys=[0, 1] * 10)), "buys", ["more than 1000 feature columns"]),
    "continuous label": (csv_bytes(good_frame(150).assign(buys=np.linspace(0, 1, 150))), "buys",
                         ["150 distinct values", "continuous"]),
    "mostly numeric": (csv_bytes(good_frame().assign(age=["unknown", *range(39)])), "buys",
                       ["'age'", "'unknown'", "non-numeric"]),
    "too few non-members": (csv_bytes(good_frame(20).assign(buys=np.arange(20) % 5)), "buys",
                            ["4 non-members", "5 classes"]),
    "ragged rows": (b"a,buys\n1,0\n2,1,3,4\n", "buys", ["cannot be parsed"]),
}


@pytest.mark.parametrize("case", list(CSV_ERRORS))
def test_csv_errors_say_what_is_wrong(case):
    content, label, fragments = CSV_ERRORS[case]
    with pytest.raises(DatasetError) as err:
        load_dataset("csv", data_path=content, label_column=label)
    for fragment in fragments:
        assert fragment in str(err.value), (case, str(err.value))


def test_csv_too_many_rows(monkeypatch):
    monkeypatch.setattr(csv_data, "MAX_CSV_ROWS", 30)
    with pytest.raises(DatasetError, match="more than 30 rows"):
        load_dataset("csv", data_path=csv_bytes(good_frame(31)), label_column="buys")
    assert load_dataset("csv", data_path=csv_bytes(good_frame(30)), label_column="buys").n_members == 24


def test_csv_missing_file_and_columns_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("csv", data_path=str(tmp_path / "nope.csv"), label_column="buys")
    with pytest.raises(DatasetError, match="needs data_path"):
        load_dataset("csv", label_column="buys")
    with pytest.raises(DatasetError, match="UTF-8"):
        data.csv_columns(b"a,b\n\xff,1\n")
    with pytest.raises(DatasetError, match="empty"):
        data.csv_columns(b"")


def test_member_counts_match_the_loaded_splits():
    counts = data.member_counts()
    for name in ("synthetic", "digits", "breast-cancer"):
        assert counts[name] == data.load_dataset(name).n_members
    assert counts["mnist"] == 60000 and counts["cifar10"] == 50000
    assert "csv" not in counts
