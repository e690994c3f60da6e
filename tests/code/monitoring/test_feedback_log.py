"""The feedback record schema, the writer, the reader (bad lines skipped and counted), local
and GCS."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from civicsense.monitoring.feedback_log import (
    FEEDBACK_COLUMNS,
    BadFeedback,
    make_feedback,
    post_key,
    read_feedback,
    read_feedback_window,
    validate_feedback,
    write_feedback,
)
from civicsense.settings import Settings

CLIENT = "c-0123456789abcdef"


def _record(text="the pension reform is a disgrace", label="negative", predicted="positive",
            version="3", client=CLIENT, when=None):
    return make_feedback(text, label, predicted, version, client, when=when)


def test_post_key_is_the_contract_hash():
    text = "Ünïcode post 🚀"
    assert post_key(text) == "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
    assert len(post_key(text)) == 21 and post_key(text) != post_key(text + " ")


def test_a_record_has_the_schema_and_is_validated():
    record = _record()
    assert tuple(record) == FEEDBACK_COLUMNS
    assert record["post_key"] == post_key(record["text"])
    assert datetime.fromisoformat(record["time"]).tzinfo is not None
    cases = [({"label": "angry"}, "label must be one of"),
             ({"predicted": "x"}, "predicted_label must be one of"),
             ({"text": "   "}, "text must be a non-empty string"),
             ({"text": "x" * 2001}, "text is 2001 characters"),
             ({"version": ""}, "model_version"),
             ({"client": "short"}, "client_id must be"),
             ({"client": "has spaces in it!"}, "client_id must be")]
    for change, message in cases:
        with pytest.raises(BadFeedback, match=message):
            _record(**change)
    with pytest.raises(BadFeedback, match="lacks"):
        validate_feedback({"text": "x"})
    with pytest.raises(BadFeedback, match="post_key"):
        validate_feedback({**record, "post_key": post_key("another post")})


def test_local_round_trip_partitioned_by_day(tmp_path):
    settings = Settings(home=tmp_path / "home")
    root = str(tmp_path / "feedback")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    old = _record("yesterday's post", when=yesterday)
    new = [_record(), _record("a second post", "neutral", "neutral")]
    assert write_feedback([old], root, settings) == 1
    assert write_feedback(new, root, settings) == 2
    days = sorted(p.name for p in (tmp_path / "feedback").iterdir())
    assert days == [f"date={yesterday:%Y-%m-%d}", f"date={datetime.now(UTC):%Y-%m-%d}"]
    frame = read_feedback(root, settings)  # no window: the whole log
    assert list(frame.columns) == list(FEEDBACK_COLUMNS) and len(frame) == 3
    assert frame["text"].tolist() == ["yesterday's post", new[0]["text"], "a second post"]
    assert str(frame["time"].dt.tz) == "UTC"
    assert len(read_feedback(root, settings, since=yesterday + timedelta(seconds=1))) == 2
    assert read_feedback(root, settings, until=yesterday + timedelta(seconds=1))[
        "text"].tolist() == ["yesterday's post"]
    assert read_feedback(str(tmp_path / "nothing-yet"), settings).empty


def test_an_invalid_record_is_never_written(tmp_path):
    settings = Settings(home=tmp_path / "home")
    good, bad = _record(), {**_record(), "label": "furious"}
    with pytest.raises(BadFeedback, match="label"):
        write_feedback([good, bad], str(tmp_path / "feedback"), settings)
    assert not (tmp_path / "feedback").exists()  # nothing half-written


def test_bad_lines_are_skipped_and_counted(tmp_path):
    settings = Settings(home=tmp_path / "home")
    root = tmp_path / "feedback"
    write_feedback([_record()], str(root), settings, writer="w")
    good = _record("another good one")
    path = next(root.glob("date=*/w.0000.jsonl"))
    with open(path, "ab") as handle:
        handle.write(b"not json\n[1, 2]\n\n")
        handle.write(json.dumps({"text": "x"}).encode() + b"\n")
        handle.write(json.dumps({**good, "label": "meh"}).encode() + b"\n")
        handle.write(json.dumps({**good, "post_key": "t" + "0" * 20}).encode() + b"\n")
        handle.write(json.dumps({**good, "time": "yesterday"}).encode() + b"\n")
        handle.write(b"\xff\xfe broken utf-8\n")
        handle.write(json.dumps(good).encode() + b"\n")
    window = read_feedback_window(str(root), settings)
    assert window.frame["text"].tolist() == [_record()["text"], "another good one"]
    assert window.lines == 9  # the blank line is not counted
    assert window.skipped == {"bad_label": 1, "bad_post_key": 1, "bad_time": 1,
                              "invalid_utf8": 1, "missing_fields": 1, "not_a_record": 1,
                              "not_json": 1}
    assert read_feedback(str(root), settings).attrs["skipped"] == window.skipped


def test_gcs_round_trip(gcs, tmp_path):
    settings = Settings(home=tmp_path / "home")
    root = f"{gcs}/feedback-log"
    yesterday = datetime.now(UTC) - timedelta(days=1)
    write_feedback([_record("old", when=yesterday)], root, settings)
    write_feedback([_record(), _record("a second post", "positive", "neutral")], root,
                   settings)
    write_feedback([_record()], f"{gcs}/another-log", settings)  # a sibling prefix: not read
    frame = read_feedback(root, settings)
    assert frame["text"].tolist() == ["old", _record()["text"], "a second post"]
    assert frame["label"].tolist() == ["negative", "negative", "positive"]
    assert len(read_feedback(root, settings, since=datetime.now(UTC) - timedelta(hours=1))) == 2
