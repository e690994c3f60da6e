"""The payload-log reader on damaged logs (issue 12): each invalid line is skipped and counted
by reason, the valid ones are read; a corrupt trigger state starts no run."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicsense.monitoring.inference_log import (
    RECORD_COLUMNS,
    make_records,
    read_log,
    read_window,
    write_records,
)
from civicsense.monitoring.trigger import (
    STATE_FILE,
    TriggerStateError,
    maybe_retrain,
    read_decisions,
)
from civicsense.settings import Settings

TEXTS = ["the reform is great", "awful bill", "vote on Tuesday"]
PROBS = np.array([[0.1, 0.2, 0.7], [0.8, 0.15, 0.05], [0.2, 0.7, 0.1]])


def damaged_lines(record: dict) -> list[bytes]:
    """One line for each kind of damage, each built from a valid record."""
    def variant(**changes) -> bytes:
        return json.dumps(record | changes).encode()

    return [
        variant(text="caf\u00e9").replace(b"\\u00e9", b"\xe9"),  # invalid UTF-8 byte
        variant(time="yesterday-ish"),
        variant(time="2026-01-01T10:00:00"),  # no zone: ambiguous
        variant(p_positive="high"),
        variant(p_negative=float("nan")),  # json writes NaN, which parses: not a probability
        variant(p_neutral=7.0),
        variant(n_chars="long"),
        b"{not json",
        b"[1, 2, 3]",
        json.dumps({"text": "only a text"}).encode(),
        b"x" * (2 << 20),  # 2 MiB: over the record cap
    ]


def write_damaged_log(root, settings: Settings) -> None:
    records = make_records(TEXTS, ["positive", "negative", "neutral"], PROBS, "1+a")
    write_records(records, str(root), settings, writer="good")
    day = records[0]["time"][:10]
    with open(root / f"date={day}" / "bad.jsonl", "wb") as handle:
        handle.write(b"\n".join(damaged_lines(records[0])) + b"\n\n")


def test_invalid_lines_are_skipped_and_counted_by_reason(tmp_path):
    settings = Settings(home=tmp_path / "home")
    write_damaged_log(tmp_path / "log", settings)
    window = read_window(str(tmp_path / "log"), settings)
    assert window.frame["text"].tolist() == TEXTS
    assert list(window.frame.columns) == list(RECORD_COLUMNS)
    assert window.skipped == {"bad_descriptor": 1, "bad_probability": 3, "bad_time": 2,
                              "invalid_utf8": 1, "line_too_long": 1, "missing_fields": 1,
                              "not_a_record": 1, "not_json": 1}
    assert window.lines == 14 and window.valid_share == pytest.approx(3 / 14)
    assert window.frame["time"].dt.tz is not None
    assert read_log(str(tmp_path / "log"), settings)["text"].tolist() == TEXTS


def test_the_window_filters_on_the_parsed_time(tmp_path):
    settings = Settings(home=tmp_path / "home")
    now = datetime.now(UTC)
    old = make_records(TEXTS[:1], ["positive"], PROBS[:1], "1+a", when=now - timedelta(hours=2))
    new = make_records(TEXTS[1:], ["negative", "neutral"], PROBS[1:], "1+a")
    write_records(old + new, str(tmp_path / "log"), settings)
    window = read_window(str(tmp_path / "log"), settings, since=now - timedelta(hours=1))
    assert window.frame["text"].tolist() == TEXTS[1:] and window.skipped == {}


def test_damaged_lines_in_gcs_objects_are_skipped_too(gcs, tmp_path):
    from civicsense.storage import gcs_client, split_gcs_uri

    settings = Settings(home=tmp_path / "home")
    root = f"{gcs}/inference-log"
    records = make_records(TEXTS, ["positive", "negative", "neutral"], PROBS, "1+a")
    write_records(records, root, settings)
    bucket, prefix = split_gcs_uri(root)
    blob = gcs_client(settings).bucket(bucket).blob(f"{prefix}/date={records[0]['time'][:10]}/"
                                                    "bad.jsonl")
    blob.upload_from_string(b"\n".join(damaged_lines(records[0])[:4]) + b"\n")
    window = read_window(root, settings)
    assert len(window.frame) == 3
    assert window.skipped == {"bad_probability": 1, "bad_time": 2, "invalid_utf8": 1}


@pytest.mark.parametrize("content", [b"{truncated", b"\xff\xfe", b"[]", b'{"triggered_at": 5}',
                                     b'{"triggered_at": "not a time"}',
                                     b'{"triggered_at": "2026-01-01T00:00:00+00:00", '
                                     b'"run": {"pid": "x"}}'])
def test_a_corrupt_trigger_state_starts_no_run(tmp_path, content):
    settings = Settings(home=tmp_path / "home", retrain_cooldown_minutes=0)
    settings.monitor_dir.mkdir(parents=True)
    (settings.monitor_dir / STATE_FILE).write_bytes(content)
    launched = []
    with pytest.raises(TriggerStateError, match="no run started"):
        maybe_retrain(settings, True, 0.9, "1", launcher=lambda s: launched.append(1) or {})
    assert launched == []
    last = read_decisions(settings)[-1]
    assert last["decision"] == "skipped" and STATE_FILE in last["reason"]
    assert (settings.monitor_dir / STATE_FILE).read_bytes() == content  # left for a human


FIELD_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) \
    | st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-13-01T00:00:00Z", "nan", "1e999"])


def changes_in(line: bytes) -> dict | None:
    """The field changes a generated line carries, None for raw bytes (fed in as they are)."""
    try:
        changes = json.loads(line)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return None
    return changes if isinstance(changes, dict) else None


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(damage=st.lists(st.binary(max_size=40) | st.dictionaries(
    st.sampled_from(list(RECORD_COLUMNS)), FIELD_VALUES, max_size=6).map(
        lambda changes: json.dumps(changes).encode()), max_size=8),
    overwrite=st.booleans())
def test_fuzzed_log_lines_are_skipped_never_fatal(damage, overwrite):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings_ = Settings(home=root / "home")
        records = make_records(TEXTS, ["positive", "negative", "neutral"], PROBS, "1+a")
        write_records(records, str(root / "log"), settings_, writer="good")
        lines = [json.dumps(records[0] | changes_in(d)).encode() if overwrite and
                 changes_in(d) is not None else d for d in damage]
        (root / "log" / f"date={records[0]['time'][:10]}" / "bad.jsonl").write_bytes(
            b"\n".join(lines))
        window = read_window(str(root / "log"), settings_)
        assert set(TEXTS) <= set(window.frame["text"])
        # lines outside the window are valid but not in it
        assert window.lines >= len(window.frame) + sum(window.skipped.values())
