"""Multi-source ingest: the base raw data plus labelled snapshots merged into one snapshot, by
post id, the later source winning; every raw row of every source accepted or quarantined."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from civicsense.data.ingest import (
    ACCEPTED_COLUMNS,
    DEFAULT_MAX_LINE_BYTES,
    IngestError,
    IngestResult,
    RawRecord,
    accepted_frame,
    content_hash,
    quarantine_frame,
    read_records,
    validate,
    write_outputs,
)
from civicsense.data.sources import fetch, fingerprint
from civicsense.settings import Settings

# A labelled snapshot (civicsense.labeling.snapshots): <dir>/snapshot.parquet + <dir>/meta.json.
SNAPSHOT_FILE, META_FILE = "snapshot.parquet", "meta.json"
SUPERSEDED = "superseded"
# The `source` of a labelled snapshot's rows (civicsense.labeling.snapshots writes the first
# two); a snapshot row naming another source is read as "labelled:<source>", so training can
# always tell new labels from the base data (is_labelled).
LABELLED_SOURCES = ("label-studio:", "feedback-consensus", "labelled:")


@dataclass
class SourcePart:
    """One source read and validated on its own: accepted records (unique post ids), quarantined
    (record, reason) pairs, what was read, and its own data version."""

    name: str
    accepted: list[RawRecord]
    quarantined: list[tuple[RawRecord, str]]
    records_read: int
    lines_read: int
    by_source: dict[str, int] = field(default_factory=dict)
    data_version: str = ""


def snapshot_file(path: Path) -> Path | None:
    """The labelled snapshot a local path names (the Parquet file itself or the directory that
    holds it), or None when the path is raw data."""
    if path.is_file() and path.name == SNAPSHOT_FILE:
        return path
    if path.is_dir() and (path / SNAPSHOT_FILE).is_file():
        return path / SNAPSHOT_FILE
    return None


def text_key(text: str) -> str:
    """A post's id in the labeling loop: its text's hash (= monitoring.feedback_log.post_key,
    which the labelled snapshots use as post_id)."""
    return "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def is_labelled(sources: pd.Series) -> pd.Series:
    """Which rows of a merged snapshot came from a labelled snapshot, by their `source`."""
    return sources.astype(str).str.startswith(LABELLED_SOURCES)


def _is_blank_or_null(value: object) -> bool:
    """None, NaN or NaT, or a string of white space only: a labelled snapshot's blank id, label
    or text is no value (stricter than a raw file's empty cell in civicsense.data.readers)."""
    return value is None or (isinstance(value, str) and not value.strip()) or bool(
        pd.isna(value))


def _snapshot_record(name: str, number: int, row: dict) -> RawRecord:
    """One row of a labelled snapshot as a record; a missing id or time sets its problem (a
    snapshot's rows carry both: nothing is derived)."""
    source = row["source"] if isinstance(row["source"], str) and row["source"] else name
    source = source if source.startswith(LABELLED_SOURCES) else f"labelled:{source}"
    label = row["label"]
    record = RawRecord(source, number, str(row),
                       post_id=None if _is_blank_or_null(row["post_id"]) else str(row["post_id"]),
                       label="" if _is_blank_or_null(label) else str(label).strip().lower(),
                       text="" if _is_blank_or_null(row["text"]) else str(row["text"]))
    if record.post_id is None:
        record.problem = "missing_post_id"
        return record
    try:
        created = pd.Timestamp(row["created_at"])
        if pd.isna(created):
            raise ValueError("no time")
        record.created_at = (created.tz_localize("UTC") if created.tzinfo is None
                             else created.tz_convert("UTC"))
    except (ValueError, TypeError, OverflowError):
        record.problem = "bad_created_at"
    return record


def read_snapshot(path: Path, name: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                  ) -> SourcePart:
    """A labelled snapshot's rows, read as already-accepted rows (ACCEPTED_COLUMNS, texts kept
    as they are) but validated again: a bad label, an empty text, a missing id or time, or
    conflicting labels for one post within the snapshot are quarantined with their reason."""
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types for unreadable files
        raise IngestError(f"{name}: unreadable snapshot ({error})") from error
    missing = sorted(set(ACCEPTED_COLUMNS) - set(frame.columns))
    if missing:
        raise IngestError(f"{name}: not a labelled snapshot, missing column(s) {missing}")
    records = []
    for number, row in enumerate(frame[ACCEPTED_COLUMNS].to_dict("records"), start=1):
        if isinstance(row["text"], str) and len(row["text"].encode()) > max_line_bytes:
            records.append(RawRecord(name, number, row["text"][:200] + "…",
                                     problem="line_too_long"))
        else:
            records.append(_snapshot_record(name, number, row))
    accepted, quarantined = validate(records, clean=False)
    return SourcePart(name, accepted, quarantined, len(records), len(records),
                      {name: len(records)}, content_hash(accepted_frame(accepted)))


def read_raw(path: Path, name: str, progress: bool = True,
             max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> SourcePart:
    """Raw data (SemEval, TweetEval, CSV, Parquet) read and validated as plain ingest does."""
    records, lines_read, by_source = read_records(path, progress, max_line_bytes)
    accepted, quarantined = validate(records)
    if not accepted:
        reasons = Counter(reason for _, reason in quarantined).most_common(3)
        raise IngestError(f"no valid rows in {name} ({len(records)} read; top reasons "
                          f"{reasons})")
    return SourcePart(name, accepted, quarantined, len(records), lines_read, by_source,
                      content_hash(accepted_frame(accepted)))


def merge_parts(parts: Sequence[SourcePart]) -> IngestResult:
    """One snapshot from several sources: a post id in more than one source keeps the row of
    the LAST source that has it (the newest label); every earlier row of it is quarantined as
    `superseded`, and so is a row whose text's hash (text_key) is a later source's post id: a
    labelled snapshot's id is its text's hash, a base post's the data's own id, so a served post
    that is also in the base data is trained on once, with its new label. Winners keep their
    sources' order (the base alone gives plain ingest's snapshot, row for row).
    accepted + quarantined == records read, summed over the sources."""
    if not parts:
        raise IngestError("no data source given")
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for record in part.accepted:
            owner[record.post_id] = index
    by_text = (lambda r: owner.get(text_key(r.text or ""), -1)) if len(parts) > 1 else (
        lambda r: -1)
    accepted: list[RawRecord] = []
    quarantined: list[tuple[RawRecord, str]] = []
    for index, part in enumerate(parts):
        quarantined.extend(part.quarantined)
        for record in part.accepted:
            if owner[record.post_id] == index and by_text(record) <= index:
                accepted.append(record)
            else:
                quarantined.append((record, SUPERSEDED))
    frame = accepted_frame(accepted)
    if frame.empty:
        raise IngestError("no valid rows in any source")
    by_source: dict[str, int] = {}
    for part in parts:
        for key, count in part.by_source.items():
            by_source[key] = by_source.get(key, 0) + count
    return IngestResult(frame, quarantine_frame(quarantined),
                        sum(p.records_read for p in parts), sum(p.lines_read for p in parts),
                        content_hash(frame), by_source,
                        {part.name: part.data_version for part in parts})


def ingest_sources(sources: Sequence[str], settings: Settings, snapshot: Path,
                   quarantine: Path, progress: bool = True) -> IngestResult:
    """The pipeline's ingest step over several sources: the base raw data first, then labelled
    snapshots (a `snapshot.parquet` or its directory; path, https:// or gs://), each fetched
    and read, merged by post id (later wins), written whole or not at all. The report's
    `source_versions` holds each source's own data version; `data_version` is the merged
    snapshot's content hash."""
    parts = []
    with tempfile.TemporaryDirectory() as workdir:
        for index, source in enumerate(sources):
            local = fetch(source, Path(workdir) / str(index), settings)
            labelled = snapshot_file(local)
            parts.append(read_snapshot(labelled, source, settings.ingest_max_line_bytes)
                         if labelled else read_raw(local, source, progress,
                                                   settings.ingest_max_line_bytes))
    result = merge_parts(parts)
    write_outputs(result, snapshot, quarantine)
    return result


def label_fingerprint(source: str, settings: Settings) -> str:
    """A labelled snapshot's cache key: its meta.json data version when it has one (content,
    not mtime: a snapshot rewritten with the same labels keeps its key), else the source's
    ordinary fingerprint."""
    path = Path(source)
    meta = (path if path.is_dir() else path.parent) / META_FILE
    try:
        version = json.loads(meta.read_text())["data_version"]
    except (OSError, ValueError, KeyError, TypeError):
        return fingerprint(source, settings)
    return hashlib.sha256(f"{source}:{version}".encode()).hexdigest()[:16]


def sources_fingerprint(base: str, labels: Sequence[str], settings: Settings) -> str:
    """One cache key for the base source plus the labelled snapshots, in order: the base's
    fingerprint alone when there are none (so a run without labels keeps its old key)."""
    base_key = fingerprint(base, settings)
    if not labels:
        return base_key
    digest = hashlib.sha256(base_key.encode())
    for source in labels:
        digest.update(f"\n{source}:{label_fingerprint(source, settings)}".encode())
    return digest.hexdigest()[:16]
