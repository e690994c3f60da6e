"""Ingest: turn raw labelled posts (SemEval TSV, TweetEval text+labels, CSV/Parquet) into one
clean snapshot, accounting for every raw row as accepted or quarantined with a reason."""

from __future__ import annotations

import hashlib
import html
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from civicsense import LABELS
from civicsense.data.sources import fetch
from civicsense.settings import Settings

SNOWFLAKE_EPOCH_MS = 1288834974657
# Posts with no id-derived or given timestamp: a fixed, documented "unknown" instant keeps the
# snapshot's content hash reproducible (an ingest-time clock would change it on every run).
UNKNOWN_TIME = pd.Timestamp("1970-01-01", tz="UTC")
# Pre-2010 sequential Twitter ids stay below ~3e10; any id under this bound is not a snowflake.
MIN_SNOWFLAKE = 1 << 42

SEMEVAL_LINE = re.compile(r"^(\d+)\t([^\t]*)\t(.*)$", re.DOTALL)
REPEATED_QUOTES = re.compile(r"\"{2,}")
UNICODE_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")
ACCEPTED_COLUMNS = ["post_id", "created_at", "text", "label", "source"]
QUARANTINE_COLUMNS = ["source", "line", "post_id", "reason", "raw"]


class IngestError(ValueError):
    """The source cannot be ingested at all (unknown layout, no rows, unreadable)."""


@dataclass
class RawRecord:
    """One raw row as found in a source file, before validation."""

    source: str
    line: int
    raw: str
    post_id: str | None = None
    label: str | None = None
    text: str | None = None
    created_at: pd.Timestamp | None = None
    problem: str | None = None


@dataclass
class IngestResult:
    """The snapshot, its quarantine and the accounting that ties them to the raw rows."""

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    records_read: int
    lines_read: int
    data_version: str
    by_source: dict[str, int] = field(default_factory=dict)

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
            "data_version": self.data_version,
        }


def snowflake_time(post_id: int) -> pd.Timestamp | None:
    """Creation time encoded in a Twitter snowflake id, or None for pre-snowflake ids."""
    if post_id < MIN_SNOWFLAKE:
        return None
    return pd.Timestamp((post_id >> 22) + SNOWFLAKE_EPOCH_MS, unit="ms", tz="UTC")


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


def _decode_lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, decoded text or None when not UTF-8, raw repr) for every physical line."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # a final newline ends the last row; it does not start a new one
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        try:
            yield number, raw.decode("utf-8"), raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, raw.decode("utf-8", errors="replace")


def _opens_unclosed_quote(field_text: str) -> bool:
    stripped = field_text.rstrip("\t ")
    return stripped.startswith('"') and (len(stripped) == 1 or not stripped.endswith('"'))


def read_semeval(path: Path) -> tuple[list[RawRecord], int]:
    """Records of a SemEval Task 4A file (`id TAB label TAB text`), joining a quoted text that
    spills onto the next physical line. Returns the records and the physical line count."""
    records: list[RawRecord] = []
    lines_read = 0
    for number, line, raw in _decode_lines(path):
        lines_read += 1
        if line is None:
            records.append(RawRecord(path.name, number, raw, problem="invalid_utf8"))
            continue
        match = SEMEVAL_LINE.match(line)
        previous = records[-1] if records else None
        if (
            not match
            and previous is not None
            and previous.text is not None
            and _opens_unclosed_quote(previous.text)
        ):
            previous.text = previous.text.rstrip("\t") + "\n" + line
            previous.raw += "\n" + raw
            continue
        if not line.strip():
            records.append(RawRecord(path.name, number, raw, problem="blank_line"))
            continue
        if not match:
            records.append(RawRecord(path.name, number, raw, problem="malformed_line"))
            continue
        post_id, label, text = match.groups()
        records.append(
            RawRecord(
                path.name,
                number,
                raw,
                post_id=post_id,
                label=label.strip().lower(),
                text=text.rstrip("\t"),
                created_at=snowflake_time(int(post_id)),
            )
        )
    return records, lines_read


def _read_mapping(folder: Path) -> dict[str, str]:
    for candidate in (folder / "mapping.txt", folder.parent / "mapping.txt"):
        if candidate.exists():
            pairs = (ln.split("\t") for ln in candidate.read_text().splitlines() if ln.strip())
            return {k.strip(): v.strip().lower() for k, v in pairs}
    return {str(i): name for i, name in enumerate(LABELS)}  # TweetEval sentiment's order


def read_tweeteval(text_path: Path) -> tuple[list[RawRecord], int]:
    """Records of a TweetEval split: `<split>_text.txt` lines paired with `<split>_labels.txt`
    label ids, mapped through `mapping.txt` (TweetEval sentiment order when absent)."""
    split = text_path.name.removesuffix("_text.txt")
    labels_path = text_path.with_name(f"{split}_labels.txt")
    if not labels_path.exists():
        raise IngestError(f"{text_path.name} has no matching {labels_path.name}")
    mapping = _read_mapping(text_path.parent)
    texts = list(_decode_lines(text_path))
    labels = [ln for _, ln, _ in _decode_lines(labels_path)]
    prefix = f"{text_path.parent.name}-{split}"
    records = []
    for index, (number, line, raw) in enumerate(texts):
        record = RawRecord(text_path.name, number, raw, post_id=f"{prefix}-{number}")
        label_id = labels[index].strip() if index < len(labels) and labels[index] else None
        if line is None:
            record.problem = "invalid_utf8"
        elif label_id is None:
            record.problem = "missing_label"
        else:
            record.text, record.label = line, mapping.get(label_id, f"id:{label_id}")
        records.append(record)
    for number in range(len(texts) + 1, len(labels) + 1):
        records.append(RawRecord(labels_path.name, number, labels[number - 1] or "",
                                 problem="label_without_text"))
    return records, len(texts) + len(labels)


def read_table(path: Path) -> tuple[list[RawRecord], int]:
    """Records of a CSV or Parquet file with columns text,label[,post_id,created_at]."""
    try:
        frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                 else pd.read_csv(path, dtype=str, keep_default_na=False))
    except Exception as error:  # pandas raises many types for unreadable files
        raise IngestError(f"{path.name}: unreadable table ({error})") from error
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise IngestError(f"{path.name}: missing column(s) {sorted(missing)}")
    records = []
    for offset, row in enumerate(frame.to_dict("records")):
        number = offset + 2 if path.suffix == ".csv" else offset + 1  # CSV line 1 is the header
        post_id = str(row.get("post_id") or f"{path.stem}-{number}")
        record = RawRecord(path.name, number, str(row), post_id=post_id,
                           label=str(row["label"]).strip().lower(), text=str(row["text"]))
        created = row.get("created_at")
        if created not in (None, ""):
            try:
                record.created_at = pd.Timestamp(created)
                if record.created_at.tzinfo is None:
                    record.created_at = record.created_at.tz_localize("UTC")
            except (ValueError, TypeError):
                record.problem = "bad_created_at"
        elif post_id.isdigit():
            record.created_at = snowflake_time(int(post_id))
        records.append(record)
    return records, len(frame)


def discover(source: Path) -> list[tuple[Path, str]]:
    """The ingestible files under a file or directory, each with its layout name."""
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    found: list[tuple[Path, str]] = []
    for path in files:
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith("_text.txt"):
            found.append((path, "tweeteval"))
        elif path.suffix in {".csv", ".parquet"}:
            found.append((path, "table"))
        elif path.suffix in {".txt", ".tsv"} and _looks_like_semeval(path):
            found.append((path, "semeval"))
    if not found:
        raise IngestError(
            f"no ingestible files in {source}: expected SemEval `id<TAB>label<TAB>text` files, "
            "TweetEval `*_text.txt` + `*_labels.txt`, or CSV/Parquet with text,label columns"
        )
    return found


def _looks_like_semeval(path: Path) -> bool:
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace")
    return bool(SEMEVAL_LINE.match(first.rstrip("\r\n")))


READERS = {"semeval": read_semeval, "tweeteval": read_tweeteval, "table": read_table}


def validate(records: list[RawRecord]) -> tuple[list[RawRecord], list[tuple[RawRecord, str]]]:
    """Split records into accepted and (record, reason) quarantined. Ids seen more than once
    keep their first copy when every copy agrees on the label; conflicting copies are all
    quarantined, since no copy can be trusted over another."""
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
        record.text = clean_text(record.text or "")
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


def ingest(source: Path, progress: bool = True) -> IngestResult:
    """Read every ingestible file under `source` into an accepted snapshot and a quarantine."""
    if not source.exists():
        raise IngestError(f"data source not found: {source}")
    records: list[RawRecord] = []
    lines_read = 0
    by_source: dict[str, int] = {}
    for path, layout in tqdm(discover(source), desc="ingest", unit="file", disable=not progress):
        file_records, file_lines = READERS[layout](path)
        records.extend(file_records)
        lines_read += file_lines
        by_source[path.name] = len(file_records)
    accepted, quarantined = validate(records)
    frame = pd.DataFrame(
        [(r.post_id, r.created_at or UNKNOWN_TIME, r.text, r.label, r.source) for r in accepted],
        columns=ACCEPTED_COLUMNS,
    )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    quarantine = pd.DataFrame(
        [(r.source, r.line, r.post_id, reason, r.raw) for r, reason in quarantined],
        columns=QUARANTINE_COLUMNS,
    )
    if frame.empty:
        reasons = Counter(quarantine["reason"]).most_common(3)
        raise IngestError(f"no valid rows in {source} ({len(records)} read; top reasons {reasons})")
    return IngestResult(frame, quarantine, len(records), lines_read, content_hash(frame), by_source)


def ingest_source(source: str, settings: Settings, snapshot: Path,
                  quarantine: Path) -> IngestResult:
    """The pipeline's ingest step: fetch `source` (path, https://, gs://), ingest it, and write
    the accepted snapshot and the quarantine as Parquet."""
    with tempfile.TemporaryDirectory() as workdir:
        result = ingest(fetch(source, Path(workdir), settings))
    result.accepted.to_parquet(snapshot, index=False)
    result.quarantined.to_parquet(quarantine, index=False)
    return result
