"""Raw-file readers: stream each ingestible layout (SemEval TSV, TweetEval text+labels+mapping,
CSV, Parquet) line by line, under a per-line byte cap, into RawRecords; a value that cannot be
converted marks its record with a reason instead of raising."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import pandas as pd

from civicsense import LABELS

SNOWFLAKE_EPOCH_MS = 1288834974657
# Pre-2010 sequential Twitter ids stay below ~3e10; any id under this bound is not a snowflake.
MIN_SNOWFLAKE = 1 << 42
MAX_SNOWFLAKE = (1 << 63) - 1  # snowflakes are signed 64-bit integers
# No post line is near this long (a tweet is < 1 KB); a longer line is quarantined unread.
DEFAULT_MAX_LINE_BYTES = 1 << 20
PREVIEW_BYTES = 200  # what a quarantined over-long line keeps of itself

SEMEVAL_LINE = re.compile(r"^(\d+)\t([^\t]*)\t(.*)$", re.DOTALL)


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
class Line:
    """One physical line: its number, its text (None when unusable), its raw form, and why it
    is unusable (invalid_utf8, line_too_long) or None."""

    number: int
    text: str | None
    raw: str
    problem: str | None = None


def snowflake_time(post_id: int) -> pd.Timestamp | None:
    """Creation time encoded in a Twitter snowflake id, or None for pre-snowflake ids."""
    if post_id < MIN_SNOWFLAKE:
        return None
    return pd.Timestamp((post_id >> 22) + SNOWFLAKE_EPOCH_MS, unit="ms", tz="UTC")


def id_time(post_id: str) -> tuple[pd.Timestamp | None, str | None]:
    """(creation time or None, problem or None) of a post id. Non-numeric ids carry no time;
    digits that are not ASCII (`²`) or a number beyond 64 bits are `bad_post_id`."""
    if not post_id.isdigit():
        return None, None
    if not (post_id.isascii() and len(post_id) <= 19) or int(post_id) > MAX_SNOWFLAKE:
        return None, "bad_post_id"
    return snowflake_time(int(post_id)), None


def read_lines(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Line]:
    """Every physical line of a file, streamed: a line longer than `max_line_bytes` is skipped
    over in 1 MiB steps (never held whole) and yielded as `line_too_long` with a preview."""
    with path.open("rb") as handle:
        number = 0
        while chunk := handle.readline(max_line_bytes + 1):
            number += 1
            if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
                preview, size = chunk[:PREVIEW_BYTES], len(chunk)
                while not chunk.endswith(b"\n") and (chunk := handle.readline(1 << 20)):
                    size += len(chunk)
                raw = preview.decode("utf-8", errors="replace") + f"… ({size} bytes)"
                yield Line(number, None, raw, "line_too_long")
                continue
            data = chunk.rstrip(b"\n").rstrip(b"\r")
            try:
                text = data.decode("utf-8")
                yield Line(number, text, text)
            except UnicodeDecodeError:
                yield Line(number, None, data.decode("utf-8", errors="replace"), "invalid_utf8")


def _opens_unclosed_quote(field_text: str) -> bool:
    stripped = field_text.rstrip("\t ")
    return stripped.startswith('"') and (len(stripped) == 1 or not stripped.endswith('"'))


def read_semeval(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                 ) -> tuple[list[RawRecord], int]:
    """Records of a SemEval Task 4A file (`id TAB label TAB text`), joining a quoted text that
    spills onto the next physical line. Returns the records and the physical line count."""
    records: list[RawRecord] = []
    lines_read = 0
    for line in read_lines(path, max_line_bytes):
        lines_read += 1
        if line.text is None:
            records.append(RawRecord(path.name, line.number, line.raw, problem=line.problem))
            continue
        match = SEMEVAL_LINE.match(line.text)
        previous = records[-1] if records else None
        if (not match and previous is not None and previous.text is not None
                and _opens_unclosed_quote(previous.text)):
            joined = previous.text.rstrip("\t") + "\n" + line.text
            if len(joined) > max_line_bytes:  # a quote never closed must not grow unbounded
                previous.problem, previous.text = "line_too_long", None
            else:
                previous.text = joined
                previous.raw += "\n" + line.raw
            continue
        if not line.text.strip():
            records.append(RawRecord(path.name, line.number, line.raw, problem="blank_line"))
            continue
        if not match:
            records.append(RawRecord(path.name, line.number, line.raw, problem="malformed_line"))
            continue
        post_id, label, text = match.groups()
        created_at, problem = id_time(post_id)
        records.append(RawRecord(path.name, line.number, line.raw, post_id=post_id,
                                 label=label.strip().lower(), text=text.rstrip("\t"),
                                 created_at=created_at, problem=problem))
    return records, lines_read


def mapping_path(folder: Path) -> Path | None:
    """The `mapping.txt` a TweetEval split uses: beside it, else one folder up."""
    for candidate in (folder / "mapping.txt", folder.parent / "mapping.txt"):
        if candidate.is_file():
            return candidate
    return None


def read_mapping(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                 ) -> tuple[list[RawRecord], int]:
    """Quarantine records for the unusable lines of a `mapping.txt` (`id TAB name` each);
    the usable lines are not posts, so they make no record."""
    records, lines_read = [], 0
    for line in read_lines(path, max_line_bytes):
        lines_read += 1
        if line.text is None:
            records.append(RawRecord(path.name, line.number, line.raw, problem=line.problem))
        elif line.text.strip() and len(line.text.split("\t")) != 2:
            records.append(RawRecord(path.name, line.number, line.raw,
                                     problem="malformed_mapping_line"))
    return records, lines_read


def label_mapping(folder: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> dict[str, str]:
    """Label id → name from the split's mapping.txt (its malformed lines are skipped here and
    quarantined by read_mapping), TweetEval sentiment's order when there is none."""
    path = mapping_path(folder)
    if path is None:
        return {str(i): name for i, name in enumerate(LABELS)}
    pairs = (ln.text.split("\t") for ln in read_lines(path, max_line_bytes) if ln.text)
    return {p[0].strip(): p[1].strip().lower() for p in pairs if len(p) == 2}


def read_tweeteval(text_path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                   ) -> tuple[list[RawRecord], int]:
    """Records of a TweetEval split: `<split>_text.txt` lines paired with `<split>_labels.txt`
    label ids, mapped through `mapping.txt` (TweetEval sentiment order when absent)."""
    split = text_path.name.removesuffix("_text.txt")
    labels_path = text_path.with_name(f"{split}_labels.txt")
    if not labels_path.exists():
        raise IngestError(f"{text_path.name} has no matching {labels_path.name}")
    mapping = label_mapping(text_path.parent, max_line_bytes)
    prefix = f"{text_path.parent.name}-{split}"
    records, texts, labels = [], 0, 0
    pairs = zip_longest(read_lines(text_path, max_line_bytes), read_lines(labels_path,
                                                                          max_line_bytes))
    for line, label_line in pairs:
        labels += label_line is not None
        if line is None:  # more labels than texts
            records.append(RawRecord(labels_path.name, label_line.number, label_line.raw,
                                     problem="label_without_text"))
            continue
        texts += 1
        record = RawRecord(text_path.name, line.number, line.raw,
                           post_id=f"{prefix}-{line.number}")
        label_id = label_line.text.strip() if label_line and label_line.text else None
        if line.text is None:
            record.problem = line.problem
        elif label_id is None:
            record.problem = "missing_label"
        else:
            record.text, record.label = line.text, mapping.get(label_id, f"id:{label_id}")
        records.append(record)
    return records, texts + labels


def _is_empty_cell(value: object) -> bool:
    """None, "", NaN or NaT (Parquet's empty cells); a white-space string is a value, kept as
    it is (validation judges it)."""
    if value is None or (isinstance(value, str) and value == ""):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array cell is a value, not a missing one
        return False


def _table_record(path: Path, number: int, row: dict) -> RawRecord:
    """One CSV/Parquet row → a record; unconvertible values set its problem."""
    given_id, text, label = row.get("post_id"), row.get("text"), row.get("label")
    post_id = f"{path.stem}-{number}" if _is_empty_cell(given_id) else str(given_id)
    record = RawRecord(path.name, number, str(row), post_id=post_id,
                       label="" if _is_empty_cell(label) else str(label).strip().lower(),
                       text="" if _is_empty_cell(text) else str(text))
    created = row.get("created_at")
    if not _is_empty_cell(created):
        try:
            record.created_at = pd.Timestamp(created)
            if record.created_at.tzinfo is None:
                record.created_at = record.created_at.tz_localize("UTC")
            record.created_at = record.created_at.tz_convert("UTC")
        except (ValueError, TypeError, OverflowError, AttributeError):
            record.created_at, record.problem = None, "bad_created_at"
    else:
        record.created_at, record.problem = id_time(post_id)
    return record


def _check_columns(path: Path, columns: list[str]) -> None:
    missing = {"text", "label"} - set(columns)
    if missing:
        raise IngestError(f"{path.name}: missing column(s) {sorted(missing)}")


def read_csv(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
             ) -> tuple[list[RawRecord], int]:
    """Records of a CSV with columns text,label[,post_id,created_at], streamed: a row that
    cannot be parsed, has the wrong number of fields, or sits on an unusable line is
    quarantined alone (`bad_csv_row`, `invalid_utf8`, `line_too_long`)."""
    records: list[RawRecord] = []
    unusable: list[RawRecord] = []  # unusable lines met while csv reads ahead, in order
    physical = [0]  # the physical line the csv reader last took

    def usable_lines() -> Iterator[str]:
        for line in read_lines(path, max_line_bytes):
            if line.text is None:
                unusable.append(RawRecord(path.name, line.number, line.raw, problem=line.problem))
            else:
                physical[0] = line.number
                yield line.text + "\n"

    def take_unusable() -> None:
        records.extend(unusable)
        unusable.clear()

    reader = csv.reader(usable_lines())
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            take_unusable()
            records.append(RawRecord(path.name, physical[0], f"csv error: {error}",
                                     problem="bad_csv_row"))
            continue
        take_unusable()
        if header is None:
            header = [name.strip() for name in row]
            _check_columns(path, header)
            continue
        if not row:
            continue  # a blank line holds no row
        number = physical[0]
        if len(row) != len(header):
            records.append(RawRecord(path.name, number, ",".join(row), problem="bad_csv_row"))
            continue
        records.append(_table_record(path, number, dict(zip(header, row, strict=True))))
    take_unusable()
    if header is None:
        raise IngestError(f"{path.name}: no header row")
    return records, len(records)


def read_parquet(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                 ) -> tuple[list[RawRecord], int]:
    """Records of a Parquet file with columns text,label[,post_id,created_at]."""
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types for unreadable files
        raise IngestError(f"{path.name}: unreadable table ({error})") from error
    _check_columns(path, list(frame.columns))
    records = []
    for number, row in enumerate(frame.to_dict("records"), start=1):
        text = row.get("text")
        if isinstance(text, str) and len(text.encode()) > max_line_bytes:
            records.append(RawRecord(path.name, number, text[:PREVIEW_BYTES] + "…",
                                     problem="line_too_long"))
        else:
            records.append(_table_record(path, number, row))
    return records, len(frame)


def read_table(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
               ) -> tuple[list[RawRecord], int]:
    """Records of a CSV or Parquet file with columns text,label[,post_id,created_at]."""
    reader = read_parquet if path.suffix == ".parquet" else read_csv
    return reader(path, max_line_bytes)


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
    mappings = {mapping_path(p.parent) for p, layout in found if layout == "tweeteval"}
    return found + [(p, "mapping") for p in sorted(m for m in mappings if m)]


def _looks_like_semeval(path: Path) -> bool:
    with path.open("rb") as handle:
        first = handle.readline(4096).decode("utf-8", errors="replace")
    return bool(SEMEVAL_LINE.match(first.rstrip("\r\n")))


READERS = {"semeval": read_semeval, "tweeteval": read_tweeteval, "table": read_table,
           "mapping": read_mapping}
