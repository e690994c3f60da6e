"""Ingest: turn raw labelled posts (SemEval TSV, TweetEval text+labels, CSV/Parquet) into one
clean snapshot, accounting for every raw row as accepted or quarantined with a reason; the
outputs appear whole or not at all. The readers live in civicsense.data.readers."""

from __future__ import annotations

import hashlib
import html
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from civicsense import LABELS
from civicsense.data.readers import (  # noqa: F401  (re-exported: the ingest API)
    DEFAULT_MAX_LINE_BYTES,
    READERS,
    IngestError,
    RawRecord,
    discover,
    read_semeval,
    read_tweeteval,
    snowflake_time,
)
from civicsense.data.sources import fetch
from civicsense.settings import Settings

# Posts with no id-derived or given timestamp: a fixed, documented "unknown" instant keeps the
# snapshot's content hash reproducible (an ingest-time clock would change it on every run).
UNKNOWN_TIME = pd.Timestamp("1970-01-01", tz="UTC")

REPEATED_QUOTES = re.compile(r"\"{2,}")
UNICODE_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")
ACCEPTED_COLUMNS = ["post_id", "created_at", "text", "label", "source"]
QUARANTINE_COLUMNS = ["source", "line", "post_id", "reason", "raw"]


@dataclass
class IngestResult:
    """The snapshot, its quarantine and the accounting that ties them to the raw rows."""

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    records_read: int
    lines_read: int
    data_version: str
    by_source: dict[str, int] = field(default_factory=dict)
    # Each source's own data version (before merging), in the order given: see data/merge.py.
    source_versions: dict[str, str] = field(default_factory=dict)

    @property
    def report(self) -> dict[str, object]:
        reasons = Counter(self.quarantined["reason"]) if len(self.quarantined) else Counter()
        return {
            "records_read": self.records_read,
            "lines_read": self.lines_read,
            "accepted": len(self.accepted),
            "quarantined": len(self.quarantined),
            "quarantine_reasons": dict(sorted(reasons.items())),
            "labels": {k: int(v) for k, v in self.accepted["label"].value_counts().items()},
            "by_source": self.by_source,
            "source_versions": self.source_versions,
            "data_version": self.data_version,
        }


def _decode_unicode_escapes(match: re.Match[str]) -> str:
    escaped = match.group(0)
    code_units = bytes.fromhex("".join(escaped[i + 2 : i + 6] for i in range(0, len(escaped), 6)))
    # Consecutive escapes may be UTF-16 surrogate pairs (emoji), so decode them together.
    return code_units.decode("utf-16-be", errors="replace")


def clean_text(text: str) -> str:
    """Undo the transport encodings of the raw files: CSV-style quoting, backslash-escaped
    quotes, literal \\uXXXX escapes and HTML entities. Content is otherwise untouched."""
    text = text.strip()
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    elif text.startswith('"') and '"' not in text[1:]:
        text = text[1:]  # an opening quote that was never closed
    # The 2013 files quote twice over (a backslash and four quotes for one quote).
    text = REPEATED_QUOTES.sub('"', text.replace('\\"', '"'))
    text = UNICODE_ESCAPE.sub(_decode_unicode_escapes, text)
    return _unescape_html(text).strip()


def _unescape_html(text: str, max_layers: int = 4) -> str:
    """HTML entities, escaped up to `max_layers` times over (`&amp;amp;amp;` occurs)."""
    for _ in range(max_layers):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


def validate(records: list[RawRecord], clean: bool = True
             ) -> tuple[list[RawRecord], list[tuple[RawRecord, str]]]:
    """Split records into accepted and (record, reason) quarantined. Ids seen more than once
    keep their first copy when every copy agrees on the label; conflicting copies are all
    quarantined, since no copy can be trusted over another. `clean=False` keeps texts as they
    are (rows of a labelled snapshot, already clean)."""
    labels_by_id: dict[str, set[str]] = {}
    for record in records:
        if record.problem is None and record.post_id is not None and record.label in LABELS:
            labels_by_id.setdefault(record.post_id, set()).add(record.label)
    accepted: list[RawRecord] = []
    quarantined: list[tuple[RawRecord, str]] = []
    seen: set[str] = set()
    for record in records:
        if record.problem is not None:
            quarantined.append((record, record.problem))
            continue
        record.text = clean_text(record.text or "") if clean else (record.text or "").strip()
        if record.label not in LABELS:
            quarantined.append((record, f"bad_label:{record.label}"))
        elif not record.text:
            quarantined.append((record, "empty_text"))
        elif len(labels_by_id[record.post_id]) > 1:
            quarantined.append((record, "conflicting_labels"))
        elif record.post_id in seen:
            quarantined.append((record, "duplicate_id"))
        else:
            seen.add(record.post_id)
            accepted.append(record)
    return accepted, quarantined


def content_hash(frame: pd.DataFrame) -> str:
    """A data version that changes exactly when the accepted content changes."""
    digest = hashlib.sha256()
    ordered = frame.sort_values("post_id", kind="stable")
    millis = ordered["created_at"].astype("int64") // 10**6
    for post_id, ms, label, text in zip(
        ordered["post_id"], millis, ordered["label"], ordered["text"], strict=True
    ):
        digest.update(f"{post_id}\t{ms}\t{label}\t{text}\n".encode())
    return "sha256:" + digest.hexdigest()[:16]


def read_records(source: Path, progress: bool = True,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                 ) -> tuple[list[RawRecord], int, dict[str, int]]:
    """Every raw record of every ingestible file under `source`, the physical lines read, and
    the records read per file name. Files are streamed; a line over `max_line_bytes` becomes a
    `line_too_long` record."""
    if not source.exists():
        raise IngestError(f"data source not found: {source}")
    records: list[RawRecord] = []
    lines_read = 0
    by_source: dict[str, int] = {}
    for path, layout in tqdm(discover(source), desc="ingest", unit="file", disable=not progress):
        file_records, file_lines = READERS[layout](path, max_line_bytes)
        records.extend(file_records)
        lines_read += file_lines
        if file_records or layout != "mapping":  # a clean mapping.txt holds no posts
            by_source[path.name] = by_source.get(path.name, 0) + len(file_records)
    return records, lines_read, by_source


def accepted_frame(accepted: list[RawRecord]) -> pd.DataFrame:
    """Accepted records as the snapshot's table (ACCEPTED_COLUMNS, created_at in UTC)."""
    frame = pd.DataFrame(
        [(r.post_id, r.created_at or UNKNOWN_TIME, r.text, r.label, r.source) for r in accepted],
        columns=ACCEPTED_COLUMNS,
    )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def quarantine_frame(quarantined: list[tuple[RawRecord, str]]) -> pd.DataFrame:
    """Quarantined (record, reason) pairs as the quarantine's table (QUARANTINE_COLUMNS)."""
    return pd.DataFrame(
        [(r.source, r.line, r.post_id, reason, r.raw) for r, reason in quarantined],
        columns=QUARANTINE_COLUMNS,
    )


def ingest(source: Path, progress: bool = True,
           max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> IngestResult:
    """Read every ingestible file under `source` into an accepted snapshot and a quarantine.
    Files are streamed; a line over `max_line_bytes` is quarantined as `line_too_long`."""
    records, lines_read, by_source = read_records(source, progress, max_line_bytes)
    accepted, quarantined = validate(records)
    frame, quarantine = accepted_frame(accepted), quarantine_frame(quarantined)
    if frame.empty:
        reasons = Counter(quarantine["reason"]).most_common(3)
        raise IngestError(f"no valid rows in {source} ({len(records)} read; top reasons {reasons})")
    return IngestResult(frame, quarantine, len(records), lines_read, content_hash(frame), by_source)


def write_outputs(result: IngestResult, snapshot: Path, quarantine: Path) -> None:
    """Write the snapshot and the quarantine as Parquet, each to a temporary file beside its
    target renamed over it only once both are complete: an aborted run leaves no partial file
    (and the previous outputs, if any, untouched)."""
    pending: list[tuple[Path, Path]] = []
    try:
        for frame, target in ((result.accepted, snapshot), (result.quarantined, quarantine)):
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                            dir=target.parent)
            os.close(handle)
            pending.append((Path(name), target))
            frame.to_parquet(name, index=False)
        for temporary, target in pending:
            os.replace(temporary, target)
    finally:
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)


def ingest_source(source: str, settings: Settings, snapshot: Path,
                  quarantine: Path) -> IngestResult:
    """Ingest one source on its own: fetch `source` (path, https://, gs://), ingest it, and
    write the accepted snapshot and the quarantine as Parquet (whole or not at all). The
    pipeline's ingest step is civicsense.data.merge.ingest_sources, which also merges labelled
    snapshots; for the base source alone both write the same snapshot."""
    with tempfile.TemporaryDirectory() as workdir:
        result = ingest(fetch(source, Path(workdir), settings), progress=True,
                        max_line_bytes=settings.ingest_max_line_bytes)
    result.source_versions = {source: result.data_version}
    write_outputs(result, snapshot, quarantine)
    return result
