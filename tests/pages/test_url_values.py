"""Bad link values (issue 13): no server path reaches the CSV reader, every refused value is named, defaults kept.

Pure checks of ``dpcore.views.train_url`` over every parameter and four kinds of hostile value, then the
Train page (AppTest) with those links, an upload-id round trip, an unknown run id and a full queue.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.jobs import queue as jobs
from dpcore.jobs import sweep as sweeps
from dpcore.store import artifacts
from dpcore.views import train_form as tf
from dpcore.views import train_url

PAGE = "../../pages/train.py"
TIMEOUT = 60
HOSTILE = {
    "path": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "script": "<script>alert(1)</script>",
    "huge": "9" * 10_000,
    "unicode": "é漢字🙂\u202e",
}
FREE_TEXT = {"label_column"}  # a column name: any short text is a valid value (it names no file)
GOOD_CSV = "height,weight,label\n" + "\n".join(
    f"{150 + i % 40},{50 + (i * 7) % 30},{'tall' if i % 40 > 20 else 'short'}" for i in range(60))


pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


def _no_upload(text: str):
    return artifacts.upload_path("/nonexistent-runs-folder", text)  # raises UploadNotFound for every text


def _texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


# ---------------------------------------------------------------------- pure: read_link
@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("name", sorted(train_url.LINK_KEYS))
def test_every_parameter_refuses_hostile_values_by_name(name, kind):
    text = HOSTILE[kind]
    cfg, refused = train_url.read_link({name: text}, resolve_upload=_no_upload)
    assert cfg.data_path is None  # nothing from a link ever names a file to read
    long_text = len(text) > train_url.MAX_LABEL_CHARS
    if name in FREE_TEXT and not long_text:
        assert refused == [] and getattr(cfg, name) == text
        return
    assert [r.name for r in refused] == [name]
    message = train_url.refusal_text(refused)
    assert f"`{name}=" in message and refused[0].why in message
    assert len(message) < 600  # a 10k-character value is cut, not echoed
    assert getattr(cfg, name, None) == getattr(TrainConfig(), name, None)  # the default is kept


@pytest.mark.parametrize(("name", "text", "why"), [
    ("epochs", "1000000", "above 1000"), ("epochs", "0", "below 1"), ("batch_size", "0", "below 1"),
    ("target_epsilon", "-1", "below 0"), ("target_epsilon", "inf", "not a finite number"),
    ("target_epsilon", "1e9", "above 1000"), ("target_epsilon", "nan", "not a finite number"),
    ("target_delta", "1", "above 0.5"), ("max_grad_norm", "-1", "below 0"), ("lr", "-1", "below 0"),
    ("epochs", "ten", "not a whole number"), ("private", "maybe", "not true or false"),
    ("dataset", "imagenet", "not one of synthetic"), ("model", "gpt", "not one of logreg"),
    ("accountant", "moments", "not one of rdp"), ("data_path", "/etc/passwd", "cannot name a file on the server"),
    ("extra", "{}", "no such setting"),
])
def test_the_issue_values_are_named_with_the_reason(name, text, why):
    cfg, refused = train_url.read_link({name: text, "dataset": "digits"} if name != "dataset" else {name: text},
                                       resolve_upload=_no_upload)
    assert [(r.name, r.text) for r in refused] == [(name, text)]
    assert why in refused[0].why
    assert cfg.epochs is None and cfg.batch_size is None and cfg.lr is None  # the recipe's values stay


def test_good_values_pass_and_a_model_must_suit_the_data():
    cfg, refused = train_url.read_link({"dataset": "digits", "epochs": "7", "target_epsilon": "2.5", "run": "x",
                                        "accountant": "prv"}, resolve_upload=_no_upload)
    assert refused == [] and (cfg.dataset, cfg.epochs, cfg.target_epsilon, cfg.accountant) == ("digits", 7, 2.5, "prv")
    cfg, refused = train_url.read_link({"dataset": "breast-cancer", "model": "cnn"}, resolve_upload=_no_upload)
    assert [r.name for r in refused] == ["model"] and cfg.model is None


def test_upload_ids_round_trip_and_nothing_else_resolves(tmp_path):
    root = tmp_path / "runs"
    stored = artifacts.save_upload(root, GOOD_CSV.encode(), "people.csv")
    upload = artifacts.upload_id(root, stored)
    assert upload == f"{stored.parent.name}/people.csv"
    assert artifacts.upload_path(root, upload) == stored
    secret = tmp_path / "secret.csv"
    secret.write_text(GOOD_CSV)
    assert artifacts.upload_id(root, secret) is None  # a CLI path has no upload id: a link then names no file
    (root / "uploads" / "0123456789abcdef").mkdir()
    (root / "uploads" / "0123456789abcdef" / "link.csv").symlink_to(secret)
    for bad in ("../secret.csv", str(secret), f"{stored.parent.name}/../../../secret.csv", "0123456789abcdef/link.csv",
                f"{stored.parent.name}/other.csv", "", HOSTILE["huge"], HOSTILE["unicode"]):
        with pytest.raises(artifacts.UploadNotFound):
            artifacts.upload_path(root, bad)
    settings = {**tf.default_settings("csv"), "data_path": str(stored), "label_column": "label"}
    params = train_url.link_params(settings, upload_of=lambda path: artifacts.upload_id(root, path))
    assert "data_path" not in params and params["upload"] == upload
    cfg, refused = train_url.read_link(params, resolve_upload=lambda text: artifacts.upload_path(root, text))
    assert refused == [] and cfg.data_path == str(stored) and cfg.label_column == "label"
    assert "upload" not in train_url.link_params({**settings, "data_path": str(secret)},
                                                 upload_of=lambda path: artifacts.upload_id(root, path))


# ---------------------------------------------------------------------- the Train page
def _page(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_link_naming_a_server_file_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "passwd.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash,secret_column\n" + "a,b\n" * 30)
    at = _page({"dataset": "csv", "data_path": str(secret), "label_column": "x"})
    assert "data_path=" in _texts(at.warning) and "cannot name a file on the server" in _texts(at.warning)
    shown = _texts(at.selectbox) + _texts(at.caption) + _texts(at.markdown) + _texts(at.error)
    assert "root:x:0:0" not in shown and "secret_column" not in shown
    assert "Upload a CSV" in _texts(at.info)
    assert at.session_state["train_form"]["data_path"] is None


@pytest.mark.parametrize("kind", ["path", "script", "huge", "unicode"])
def test_the_train_page_names_every_hostile_value_in_one_warning(kind):
    params = {name: HOSTILE[kind] for name in sorted(train_url.LINK_KEYS - FREE_TEXT)}
    at = _page(params)
    [warning] = [w for w in at.warning if "This link has values" in w.value]
    for name in params:
        assert f"`{name}=" in warning.value, name
    assert len(warning.value) < 20_000
    assert at.session_state["train_form"]["dataset"] == tf.DEFAULT_DATASET
    assert at.session_state["train_form"]["epochs"] == tf.default_settings()["epochs"]


def test_out_of_range_values_keep_the_default_and_say_so():
    at = _page({"epochs": "1000000", "batch_size": "0", "target_epsilon": "1e9", "lr": "-1"})
    warning = _texts(at.warning)
    for text in ("`epochs=1000000` (above 1000", "`batch_size=0` (below 1", "`target_epsilon=1e9` (above 1000",
                 "`lr=-1` (below 0"):
        assert text in warning
    defaults = tf.default_settings()
    assert at.number_input(key="train_w_epochs").value == defaults["epochs"]
    assert at.number_input(key="train_w_batch_size").value == defaults["batch_size"]
    assert at.number_input(key="train_w_target_epsilon").value == defaults["target_epsilon"]
    assert "got 0.0" not in _texts(at.error)


def test_an_upload_link_reopens_the_upload_and_an_unknown_one_is_refused():
    at = _page({"dataset": "csv"})
    at.file_uploader(key="train_w_csv_file").set_value(("people.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    upload = at.query_params["upload"]
    upload = upload[-1] if isinstance(upload, list) else upload
    assert "data_path" not in at.query_params and upload.endswith("/people.csv")
    again = _page({"dataset": "csv", "upload": upload, "label_column": "label"})
    assert "This link" not in _texts(again.warning) and "uploaded earlier" in _texts(again.caption)
    assert again.session_state["train_form"]["label_column"] == "label"
    missing = _page({"dataset": "csv", "upload": "0123456789abcdef/gone.csv"})
    assert "`upload=0123456789abcdef/gone.csv`" in _texts(missing.warning)
    assert "upload the CSV again" in _texts(missing.warning)


def test_an_unknown_run_id_is_named():
    at = _page({"run": "../../etc/passwd"})
    assert "Run `../../etc/passwd` is not in" in _texts(at.warning)


def test_a_full_queue_says_so_where_train_is_pressed(monkeypatch):
    at = _page({"epochs": "1"})
    queue = jobs.get_queue()

    def full(*args, **kwargs):
        raise jobs.QueueFull("queue is full: 32 jobs are waiting (limit 32); wait for some to finish or cancel "
                             "queued ones, then submit again")

    monkeypatch.setattr(queue, "submit", full)
    at.button(key="train-submit").click().run()
    assert not at.exception
    assert "queue is full: 32 jobs are waiting" in _texts(at.error)
    assert "train_run_id" not in at.session_state or at.session_state["train_run_id"] is None


def test_a_rejected_upload_is_not_kept_and_a_good_one_is(tmp_path):
    uploads = tmp_path / "runs" / artifacts.UPLOADS_DIR  # conftest points DPEXPLORER_RUNS_DIR at tmp_path/runs
    at = _page({"dataset": "csv"})
    at.file_uploader(key="train_w_csv_file").set_value(("bad.csv", b"a,b\n1,2\n", "text/csv")).run()
    assert not at.exception and at.error  # too few rows
    assert not [path for path in uploads.rglob("*") if path.is_file()]
    at.file_uploader(key="train_w_csv_file").set_value(("people.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert not at.exception and not at.error
    assert [path.name for path in uploads.rglob("*") if path.is_file()] == ["people.csv"]


def test_a_full_queue_stops_a_sweep_before_it_is_recorded(monkeypatch):
    at = AppTest.from_file("../../pages/tradeoffs.py", default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="tradeoffs_new_dataset").set_value("synthetic").run()
    queue = jobs.get_queue()
    monkeypatch.setattr(queue, "pending", lambda: ["waiting"] * queue.max_pending)
    at.button(key="tradeoffs_start").click().run()
    assert not at.exception
    assert f"The job queue is full: {queue.max_pending} jobs are waiting" in _texts(at.error)
    assert sweeps.list_sweeps(queue.store) == []


def _reader() -> None:
    import streamlit as st

    from pages import state

    try:
        state.url_value("epochs", int, low=1, high=1000)
        state.url_value("accountant", choices=("rdp", "prv"))
    except state.BadUrlValue as err:
        st.warning(f"{err} | {err.why}")


@pytest.mark.parametrize(("params", "said"), [
    ({"epochs": "1000000"}, "epochs=1000000 | above 1000"), ({"epochs": "0"}, "epochs=0 | below 1"),
    ({"epochs": "x"}, "epochs=x | does not parse"),
    ({"accountant": "moments"}, "accountant=moments | not one of rdp, prv"),
])
def test_url_value_says_why_a_value_was_not_used(params, said):
    at = AppTest.from_function(_reader)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception and [w.value for w in at.warning] == [said]
