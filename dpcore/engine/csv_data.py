"""CSV uploads: read a CSV (path, bytes or upload), pick the label column, encode features, split 80/20.

Numeric columns are standardised with member statistics, text columns one-hot encoded
(``encode_features``, also used for OpenML's Adult census).
"""

from __future__ import annotations

import csv as _csv
import functools
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dpcore.engine.splits import (
    NON_MEMBER_FRACTION,
    DatasetInfo,
    DatasetSpec,
    RawSplit,
    SplitData,
    materialise,
    member_stats,
    readonly,
    stratified_split,
)
from dpcore.errors import DatasetError

MAX_CSV_ROWS = 200_000
MAX_CSV_FEATURES = 1000  # columns after one-hot encoding
MAX_CSV_CATEGORIES = 100  # distinct values in one categorical column
MAX_CSV_CLASSES = 100  # distinct label values
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger numeric values are refused (they overflow the model)
MIN_CSV_ROWS = 20


def csv_columns(source: Any) -> list[str]:
    """Column names of a CSV (path, bytes or file-like), for a label picker. Raises DatasetError if unreadable."""
    content, _ = _csv_bytes(source)
    text = _decode_csv(content)
    try:
        header = pd.read_csv(io.StringIO(text), sep=_sniff_separator(text), nrows=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DatasetError(f"could not read the CSV header: {err}") from err
    return [str(column) for column in header.columns]


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


def load_csv(spec: DatasetSpec, *, data_path: Any = None, label_column: str | None = None,
             feature_columns: Sequence[str] | None = None, **_: Any) -> SplitData:
    """The registry loader of CSV uploads: ``data_path`` (path, bytes or file-like) split on ``label_column``;
    the model reads ``feature_columns`` (None: every other column)."""
    content, title = _csv_bytes(data_path)
    return materialise(csv_raw(content, label_column, title,
                               tuple(feature_columns) if feature_columns is not None else None))


@functools.lru_cache(maxsize=4)
def csv_raw(content: bytes, label_column: str | None, title: str,
            feature_columns: tuple[str, ...] | None = None) -> RawSplit:
    """The read-only arrays of a CSV's ``content`` split on ``label_column``, features ``feature_columns`` (None:
    all other columns) (memoised; DatasetError if unusable)."""
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
    if feature_columns is not None:
        unknown = [name for name in feature_columns if name not in frame.columns]
        if unknown:
            raise DatasetError(f"feature column(s) {', '.join(map(repr, unknown))} are not in the CSV; available "
                               f"columns: {', '.join(columns)}")
        frame = frame[[name for name in columns if name in feature_columns or name == label_column]]
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
    encoded, names, numeric = encode_features(features)
    members, non_members = stratified_split(target)
    mean, std = member_stats(encoded[members], np.array(numeric, dtype=bool))
    info = DatasetInfo(name="csv", title=f"CSV: {title}", description=(
        f"{len(frame)} rows, {features.shape[1]} feature columns ({len(names)} after one-hot encoding), "
        f"label {label_column!r} with {len(class_names)} classes"), kind="tabular", input_shape=(len(names),),
        num_classes=len(class_names), class_names=class_names, n_members=len(members),
        n_non_members=len(non_members), source="csv", feature_names=tuple(names), label_column=label_column)
    raw = frame.iloc[members].reset_index(drop=True)
    return RawSplit(info, readonly(encoded[members]), readonly(target[members]), readonly(encoded[non_members]),
                    readonly(target[non_members]), None, readonly(mean), readonly(std), raw,
                    raw_non_members=frame.iloc[non_members].reset_index(drop=True))


def _encode_labels(labels: pd.Series, label_column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (by sorted label value) and the original values as strings."""
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DatasetError(f"label column {label_column!r} has a single class ({_shown(counts.index[0])}); a "
                           "classifier needs at least two")
    if len(counts) > MAX_CSV_CLASSES:
        raise DatasetError(f"label column {label_column!r} has {len(counts)} distinct values (at most "
                           f"{MAX_CSV_CLASSES} classes allowed); it looks continuous or like an ID: pick a "
                           "categorical label column")
    rare = counts[counts < 2]
    if len(rare):
        listed = ", ".join(_shown(value) for value in rare.index[:10])
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


def _shown(value: Any) -> str:
    """A value as a person reads it in a message: text quoted, numbers plain (``1``, not ``np.int64(1)``)."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _rows_text(rows: Sequence[int], values: Sequence[str]) -> str:
    """'data rows 3, 17 and 40 (lines 4, 18 and 41 of the file: 'abc', 'n/a', …)' for 0-based ``rows``."""
    shown = [row + 1 for row in rows[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    examples = ", ".join(repr(value) for value in list(dict.fromkeys(values))[:3])
    plural = "s" if len(rows) > 1 else ""
    return (f"data row{plural} {', '.join(map(str, shown))}{more} (line{plural} "
            f"{', '.join(str(row + 1) for row in shown)} of the file), e.g. {examples}")


def _check_float32_range(block: np.ndarray, column: str) -> None:
    """DatasetError naming the column and row of the first value too large for float32 (the model's precision)."""
    too_big = np.abs(block) > FLOAT32_MAX
    if too_big.any():
        row = int(np.argmax(too_big))
        raise DatasetError(f"column {column!r} has {int(too_big.sum())} value(s) outside the float32 range "
                           f"(±{FLOAT32_MAX:.1e}), the first {block[row]:g} in data row {row + 1} (line {row + 2} of "
                           "the file); rescale the column or drop those rows")


def encode_features(frame: pd.DataFrame, *, missing_category: str | None = None
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
            _check_float32_range(block, column)
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
        if n_numbers >= 0.5 * len(text) and n_numbers < len(text):
            bad = np.flatnonzero(as_numbers.isna().to_numpy())
            raise DatasetError(f"column {column!r} is mostly numbers but has {len(bad)} non-numeric value(s) in "
                               f"{_rows_text(bad.tolist(), text.iloc[bad].tolist())}; fix those rows so it is read "
                               "as numbers, or leave the column out (Feature columns)")
        categories = sorted(set(text))
        if len(categories) > MAX_CSV_CATEGORIES:
            raise DatasetError(f"column {column!r} has {len(categories)} distinct text values (at most "
                               f"{MAX_CSV_CATEGORIES} allowed for one-hot encoding); it looks like an ID or free-text "
                               "column: leave it out of the feature columns")
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


CSV_DATASETS: dict[str, DatasetSpec] = {
    "csv": DatasetSpec(
        "csv", "Your CSV", "A CSV you upload: pick the label column; numeric columns are standardised, text columns "
        "one-hot encoded; stratified 80/20 split.", "tabular", "csv", load_csv),
}
