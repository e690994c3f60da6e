"""The inference record schema, the never-raising writer, the reader, local and GCS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from civicsense import LABELS
from civicsense.features.featurizer import DESCRIPTOR_NAMES, describe
from civicsense.monitoring.inference_log import (
    RECORD_COLUMNS,
    InferenceLogger,
    make_records,
    read_log,
    validate_record,
    write_records,
)
from civicsense.settings import Settings

TEXTS = ["I love this reform :) #win", "Never again. This is NOT ok!!", "meeting at 5 @bob"]
PROBS = np.array([[0.1, 0.2, 0.7], [0.8, 0.15, 0.05], [0.2, 0.7, 0.1]], dtype=np.float32)
LABELS_OUT = [LABELS[i] for i in PROBS.argmax(axis=1)]


def test_a_record_has_the_schema_and_the_featurizer_descriptors():
    records = make_records(TEXTS, LABELS_OUT, PROBS, "3+run", request_id="r1")
    assert [list(r) for r in records] == [list(RECORD_COLUMNS)] * 3
    expected = describe(TEXTS)
    for record, (_, row) in zip(records, expected.iterrows(), strict=True):
        assert record["model_version"] == "3+run" and record["request_id"] == "r1"
        assert record["p_positive"] == pytest.approx(float(PROBS[TEXTS.index(record["text"])][2]))
        assert {n: record[n] for n in DESCRIPTOR_NAMES} == pytest.approx(row.to_dict())
    with pytest.raises(ValueError, match="lacks"):
        validate_record({"text": "x"})


def test_descriptors_given_by_the_server_are_the_ones_logged():
    given = describe(TEXTS).to_numpy()
    given[0, 0] = 999.0  # the server's own values are used as they are, not recomputed
    records = make_records(TEXTS, LABELS_OUT, PROBS, "3+run", descriptors=given)
    assert records[0][DESCRIPTOR_NAMES[0]] == 999.0
    assert records[1] == pytest.approx(make_records(TEXTS, LABELS_OUT, PROBS, "3+run",
                                                    request_id=records[1]["request_id"],
                                                    when=datetime.fromisoformat(
                                                        records[1]["time"]))[1])


def test_local_round_trip_partitioned_by_day(tmp_path):
    settings = Settings(home=tmp_path / "home")
    root = str(tmp_path / "log")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    old = make_records(TEXTS[:1], LABELS_OUT[:1], PROBS[:1], "1+a", when=yesterday)
    new = make_records(TEXTS, LABELS_OUT, PROBS, "2+b")
    assert write_records(old + new, root, settings) == 4
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == [f"date={yesterday:%Y-%m-%d}", f"date={datetime.now(UTC):%Y-%m-%d}"]
    frame = read_log(root, settings, since=yesterday - timedelta(minutes=1))
    assert list(frame.columns) == list(RECORD_COLUMNS) and len(frame) == 4
    assert frame["text"].tolist() == TEXTS[:1] + TEXTS
    # The default window is the last 24 h: the record of a day ago has just left it.
    assert read_log(root, settings)["model_version"].unique().tolist() == ["2+b"]
    assert len(read_log(root, settings, until=yesterday + timedelta(seconds=1),
                        since=yesterday - timedelta(hours=1))) == 1


def test_the_writer_never_raises_it_counts(tmp_path):
    settings = Settings(home=tmp_path / "home")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")  # like a full disk: every write fails
    logger = InferenceLogger(str(blocked), settings)
    logger.log(TEXTS, LABELS_OUT, PROBS, "1+a")
    logger.log(["x"], ["neutral"], [[0.3, 0.4]], "1+a")  # malformed probabilities
    assert logger.flush(10)
    assert logger.stats.failed == 4 and logger.stats.logged == 0
    tiny = InferenceLogger(str(tmp_path / "log"), settings, max_queue=1)
    for _ in range(50):
        tiny.log(TEXTS, LABELS_OUT, PROBS, "1+a")
    assert tiny.flush(30)
    assert tiny.stats.dropped > 0 and tiny.stats.logged + tiny.stats.dropped == 150
    assert len(read_log(str(tmp_path / "log"), settings)) == tiny.stats.logged


def test_gcs_round_trip_and_an_unreachable_bucket_is_counted(gcs, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    root = f"{gcs}/inference-log"
    write_records(make_records(TEXTS, LABELS_OUT, PROBS, "1+a"), root, settings)
    write_records(make_records(TEXTS[:2], LABELS_OUT[:2], PROBS[:2], "1+a"), root, settings)
    frame = read_log(root, settings)
    assert len(frame) == 5 and set(frame["text"]) == set(TEXTS)
    logger = InferenceLogger("gs://no-such-bucket/inference-log", settings)
    logger.log(TEXTS, LABELS_OUT, PROBS, "1+a")
    assert logger.flush(30) and logger.stats.failed == 3
