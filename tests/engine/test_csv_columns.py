"""CSV feature columns (issue 12): choose them in the config, round-trip them through the URL, and messages a
person can act on (which rows are not numbers, plain label values)."""

from __future__ import annotations

import pytest

from dpcore.config import TrainConfig
from dpcore.engine import data
from dpcore.errors import ConfigError, DatasetError
from dpcore.query import from_query, to_query
from dpcore.views import train_form as tf

ROWS = ["id,height,weight,label"] + [
    f"{i},{150 + i % 40},{'abc' if i in (3, 17) else 50 + (i * 7) % 30},{i % 2}" for i in range(60)]
CONTENT = "\n".join(ROWS).encode()


def test_a_numeric_column_with_a_few_words_names_its_rows_and_the_way_out():
    with pytest.raises(DatasetError) as err:
        data.load_dataset("csv", data_path=CONTENT, label_column="label")
    message = str(err.value)
    assert "'weight'" in message and "data rows 4, 18" in message and "lines 5, 19" in message
    assert "'abc'" in message and "leave the column out" in message and "looks like an ID" not in message


def test_feature_columns_leave_a_column_out_and_unknown_ones_are_named():
    loaded = data.load_dataset("csv", data_path=CONTENT, label_column="label", feature_columns=["id", "height"])
    assert loaded.info.feature_names == ("id", "height") and loaded.info.input_shape == (2,)
    with pytest.raises(DatasetError, match="'shoe size' are not in the CSV"):
        data.load_dataset("csv", data_path=CONTENT, label_column="label", feature_columns=["shoe size"])


def test_a_single_class_label_is_shown_as_the_plain_value():
    one_class = ("a,label\n" + "\n".join(f"{i},1" for i in range(30))).encode()
    with pytest.raises(DatasetError) as err:
        data.load_dataset("csv", data_path=one_class, label_column="label")
    assert "single class (1)" in str(err.value) and "np." not in str(err.value)


def test_feature_columns_validate_and_round_trip_through_the_url():
    cfg = TrainConfig(dataset="csv", data_path="/tmp/x.csv", label_column="label", feature_columns=["height", "a,b"],
                      target_epsilon=3.0)
    assert from_query(to_query(cfg)) == cfg
    assert "feature_columns" not in to_query(cfg.replace(feature_columns=None))  # the default stays out of links
    with pytest.raises(ConfigError, match="label column"):
        cfg.replace(feature_columns=["height", "label"]).validate()
    with pytest.raises(ConfigError, match="empty"):
        cfg.replace(feature_columns=[]).validate()
    with pytest.raises(ConfigError, match="csv"):
        TrainConfig(dataset="digits", target_epsilon=3.0, feature_columns=["x"]).validate()
    with pytest.raises(ConfigError, match="feature_columns"):
        from_query({"dataset": "csv", "feature_columns": '{"not": "a list"}'})


def test_the_form_keeps_all_columns_as_none_and_a_choice_as_a_list():
    columns = ["id", "height", "weight", "label"]
    assert tf.feature_columns_for(columns, "label", None) == ["id", "height", "weight"]
    assert tf.feature_columns_for(columns, "label", ["weight", "gone"]) == ["weight"]
    assert tf.chosen_features(columns, "label", ["weight", "id", "height"]) is None  # all: the default
    assert tf.chosen_features(columns, "label", ["weight", "id"]) == ["id", "weight"]  # file order
    settings = {**tf.default_settings("csv"), "data_path": "/tmp/x.csv", "label_column": "label",
                "feature_columns": ["id", "weight"]}
    cfg = tf.config_from(settings)
    assert cfg.feature_columns == ["id", "weight"]
    back = tf.settings_from(cfg)
    assert back["feature_columns"] == back["feature_choice"] == ["id", "weight"]
    assert tf.config_from({**settings, "dataset": "synthetic"}).feature_columns is None
