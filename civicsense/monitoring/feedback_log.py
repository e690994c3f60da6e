"""The feedback log: one record per "Wrong?" a reader sent on a badge, one schema, one writer,
one reader.

A record says when, which post (`post_key`, the id both logs and the labeling queue key posts
by, since the payload log has no post ids), its text, the model version and label that made
the badge, the label the reader chose, and the reader's random client id. Records are JSON
lines partitioned by day, like the payload log (civicsense.monitoring.inference_log), both
stored by civicsense.monitoring.day_log:

    <root>/date=YYYY-MM-DD/<writer>.<NNNN>.jsonl        root = a directory, or gs://bucket/prefix

Locally the HTTP process appends to files of its own, rotated by size and day with the payload
log's settings and retention (civicsense.monitoring.log_rotation); on GCS each write is a new
object (objects cannot be appended to). Records are validated on the way in (a bad one raises)
and on the way out (a bad line is skipped and counted by reason, never fatal).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from civicsense import LABELS
from civicsense.monitoring.day_log import (
    DayLogWindow,
    as_utc,
    decode_line,
    lines_between,
    read_records,
    records_frame,
    stamped_time,
    write_partitioned,
)
from civicsense.settings import Settings

log = logging.getLogger(__name__)

FEEDBACK_COLUMNS: tuple[str, ...] = ("time", "post_key", "text", "model_version",
                                     "predicted_label", "label", "client_id")
MAX_VERSION_CHARS = 200
# A client id is the extension's random id: no personal data fits in this alphabet and size.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
POST_KEY = re.compile(r"t[0-9a-f]{20}")


class BadFeedback(ValueError):
    """A feedback record that breaks the schema; its message says which field and why."""


def post_key(text: str) -> str:
    """The id of a served post: its text's hash (the same text is the same post everywhere)."""
    return "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _check(record: dict, max_text_chars: int) -> None:
    text = record["text"]
    if not isinstance(text, str) or not text.strip():
        raise BadFeedback("text must be a non-empty string")
    if len(text) > max_text_chars:
        raise BadFeedback(f"text is {len(text)} characters; at most {max_text_chars}")
    for column in ("label", "predicted_label"):
        if record[column] not in LABELS:
            raise BadFeedback(f"{column} must be one of {', '.join(LABELS)}")
    version = record["model_version"]
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_CHARS:
        raise BadFeedback(f"model_version must be a string of 1 to {MAX_VERSION_CHARS} "
                          "characters")
    client = record["client_id"]
    if not isinstance(client, str) or not CLIENT_ID.fullmatch(client):
        raise BadFeedback("client_id must be 8 to 64 characters of A-Z a-z 0-9 _ -")


def make_feedback(text: str, label: str, predicted_label: str, model_version: str,
                  client_id: str, when: datetime | None = None,
                  max_text_chars: int = 2000) -> dict:
    """One validated feedback record (FEEDBACK_COLUMNS, in order). BadFeedback if any field
    breaks the schema."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    record = {"time": when.isoformat(timespec="microseconds"), "post_key": None,
              "text": text, "model_version": model_version, "predicted_label": predicted_label,
              "label": label, "client_id": client_id}
    _check(record, max_text_chars)
    record["post_key"] = post_key(text)
    return record


def validate_feedback(record: dict, max_text_chars: int = 2000) -> dict:
    """A record with exactly the schema's fields, each valid (BadFeedback else; extras dropped)."""
    missing = [c for c in FEEDBACK_COLUMNS if c not in record]
    if missing:
        raise BadFeedback(f"feedback record lacks {missing}")
    record = {c: record[c] for c in FEEDBACK_COLUMNS}
    _check(record, max_text_chars)
    if record["post_key"] != post_key(record["text"]):
        raise BadFeedback("post_key is not the hash of the text")
    stamped_time(record["time"], BadFeedback, "time is not an ISO timestamp",
                 "time has no time zone")
    return record


# ---------------------------------------------------------------- writing


def write_feedback(records: Sequence[dict], root: str, settings: Settings,
                   writer: str | None = None) -> int:
    """Validate every record, then write them under their day partitions; returns how many.
    Raises BadFeedback before writing anything if one is invalid, OSError/GCS errors on I/O."""
    return write_partitioned((validate_feedback(record, settings.max_text_chars)
                              for record in records), root, settings, writer)


# ---------------------------------------------------------------- reading


def _parse(text: str, max_text_chars: int) -> dict:
    record = decode_line(text, FEEDBACK_COLUMNS, BadFeedback)
    try:
        record = validate_feedback(record, max_text_chars)
    except BadFeedback as error:
        reason = str(error).split(" ", 1)[0]
        raise BadFeedback(f"bad_{reason}" if reason in FEEDBACK_COLUMNS else "bad_field") from None
    record["time"] = datetime.fromisoformat(record["time"]).astimezone(UTC)
    return record


class FeedbackWindow(DayLogWindow):
    """The valid records of a window, and what was skipped: `lines` non-blank lines read,
    `skipped` {reason: count} (invalid_utf8, line_too_long, not_json, bad_label, …)."""


def read_feedback_window(root: str, settings: Settings, since: datetime | None = None,
                         until: datetime | None = None) -> FeedbackWindow:
    """Records with since <= time < until (either open when None: all of the log by default),
    validated line by line; an invalid line is skipped and counted by reason."""
    since, until = as_utc(since), as_utc(until)
    rows, read, skipped = read_records(
        lines_between(root, settings, since, until),
        lambda text: _parse(text, settings.max_text_chars), BadFeedback, since, until)
    if skipped:
        log.warning("feedback log: skipped %d invalid lines %s", sum(skipped.values()),
                    dict(skipped))
    frame = records_frame(rows, FEEDBACK_COLUMNS)
    frame.attrs["lines"], frame.attrs["skipped"] = read, dict(sorted(skipped.items()))
    return FeedbackWindow(frame, read, frame.attrs["skipped"])


def read_feedback(root: str, settings: Settings, since: datetime | None = None,
                  until: datetime | None = None) -> pd.DataFrame:
    """The valid feedback records as a DataFrame with FEEDBACK_COLUMNS (`time` a UTC timestamp,
    oldest first); invalid lines are skipped, counted in `frame.attrs["skipped"]`."""
    return read_feedback_window(root, settings, since, until).frame
