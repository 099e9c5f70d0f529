"""CSV splits keep the original non-member rows too (``SplitData.raw_non_members``), in the order of the
non-member tensors, without moving the split or the member rows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from dpcore.engine import data
from dpcore.engine.splits import hold_out_validation

ROWS = ["id,city,height,label"] + [f"{i},{'north' if i % 3 else 'south'},{150 + i % 40},{'yes' if i % 2 else 'no'}"
                                   for i in range(80)]
CONTENT = "\n".join(ROWS).encode()


def _original() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(CONTENT.decode()))


def test_non_member_rows_are_kept_in_tensor_order_and_members_are_unchanged():
    split = data.load_dataset("csv", data_path=CONTENT, label_column="label")
    assert split.raw_non_members is not None and len(split.raw_non_members) == split.n_non_members == 16
    assert len(split.raw) == split.n_members == 64 and list(split.raw_non_members.columns) == list(split.raw.columns)
    names = np.array(split.info.class_names)
    assert list(split.raw_non_members["label"]) == list(names[split.y_non_members.numpy()])
    assert list(split.raw["label"]) == list(names[split.y_members.numpy()])
    ids = set(split.raw["id"]) | set(split.raw_non_members["id"])
    assert ids == set(range(80)) and not set(split.raw["id"]) & set(split.raw_non_members["id"])
    # the standardised height of each non-member row is its original height
    height = list(split.info.feature_names).index("height")
    restored = split.x_non_members[:, height].numpy() * split.feature_std[height] + split.feature_mean[height]
    np.testing.assert_allclose(restored, split.raw_non_members["height"].to_numpy(), rtol=1e-5)
    original = _original().set_index("id")
    assert (original.loc[split.raw_non_members["id"], "city"].to_numpy() == split.raw_non_members["city"]).all()


def test_the_split_and_validation_hold_out_leave_non_member_rows_alone():
    split = data.load_dataset("csv", data_path=CONTENT, label_column="label")
    again = data.load_dataset("csv", data_path=CONTENT, label_column="label")
    assert split == again and split.raw_non_members.equals(again.raw_non_members)
    split.raw_non_members.loc[0, "city"] = "changed"  # a fresh copy per load: the cache is not touched
    assert data.load_dataset("csv", data_path=CONTENT, label_column="label").raw_non_members.loc[0, "city"] != "changed"
    held = hold_out_validation(again, fraction=0.25)
    assert held.raw_non_members.equals(again.raw_non_members) and len(held.raw) == held.n_members < 64
    assert data.load_dataset("digits").raw_non_members is None  # built-in data has no original rows
