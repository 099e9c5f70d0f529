"""CSV values outside float32 range (issue 13): refused with the column and the row, never "diverged at step 0"."""

from __future__ import annotations

import pytest
import torch

from dpcore.engine.data import load_dataset
from dpcore.errors import DatasetError


def _csv(value: str, *, row: int = 7, rows: int = 40) -> bytes:
    lines = ["height,weight,label"]
    for i in range(rows):
        weight = value if i == row else str(50 + i % 9)
        lines.append(f"{150 + i % 30},{weight},{'a' if i % 2 else 'b'}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("value", ["1e308", "-1e308", "3.5e38", "1e39"])
def test_a_value_outside_float32_range_names_column_and_row(value):
    with pytest.raises(DatasetError) as err:
        load_dataset("csv", data_path=_csv(value), label_column="label")
    message = str(err.value)
    assert "'weight'" in message and "float32" in message
    assert "data row 8" in message and "line 9 of the file" in message  # row 7 (0-based) is line 9 after the header


def test_values_inside_float32_range_still_load():
    split = load_dataset("csv", data_path=_csv("3e38"), label_column="label")
    assert split.n_members + split.info.n_non_members == 40
    assert bool(torch.isfinite(split.x_members).all())  # standardised without overflow
