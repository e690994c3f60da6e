"""Labelled snapshots: annotations imported from Label Studio, and the feedback the trust rule
confirms, each a versioned Parquet file in ingest's accepted-row schema.

    <home>/labels/sha256-<16 hex>/snapshot.parquet + meta.json

The directory is the data version (ingest's `content_hash`, "sha256:<16 hex>", with `-` for
`:` so the path is safe in volume mounts); meta.json holds `{data_version, kind, rows, source,
imported_at, skipped}`, kind "annotations" or "feedback-consensus". The same labels give the
same version, so importing one export twice writes nothing new. `confirmed_sources` is what
training may read: every annotations snapshot oldest first, after the current
feedback-consensus snapshot only when `Settings.feedback_consensus_training` is on (newer label
wins, so an annotator's label beats the crowd's). Consensus labels are capped at
`feedback_consensus_max_share` of the training set they join.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from civicsense.data.ingest import ACCEPTED_COLUMNS, content_hash
from civicsense.labeling.label_studio import LabelStudioError, parse_export
from civicsense.labeling.trust import TrustRule, capped, consensus, consensus_cap
from civicsense.monitoring.feedback_log import post_key, read_feedback
from civicsense.monitoring.inference_log import read_log
from civicsense.settings import Settings

ANNOTATIONS, CONSENSUS = "annotations", "feedback-consensus"


class LabelImportError(ValueError):
    """An export that yields no usable labels, or is not a Label Studio export at all."""


@dataclass(frozen=True)
class LabelledSnapshot:
    """One snapshot: its Parquet file, data version, rows, and what its import skipped."""

    path: Path
    data_version: str
    rows: int
    skipped: dict[str, int] = field(default_factory=dict)
    kind: str = ANNOTATIONS
    source: str = ""
    imported_at: str = ""


def labels_root(settings: Settings) -> Path:
    return settings.home_dir / "labels"


def _folder(settings: Settings, data_version: str) -> Path:
    return labels_root(settings) / data_version.replace(":", "-")


def _load(meta_path: Path) -> LabelledSnapshot:
    meta = json.loads(meta_path.read_text())
    return LabelledSnapshot(meta_path.parent / "snapshot.parquet", meta["data_version"],
                            int(meta["rows"]), dict(meta.get("skipped", {})), meta["kind"],
                            meta.get("source", ""), meta.get("imported_at", ""))


def write_snapshot(settings: Settings, frame: pd.DataFrame, kind: str, source: str,
                   skipped: dict[str, int] | None = None) -> LabelledSnapshot:
    """Write accepted rows (ACCEPTED_COLUMNS) as a snapshot under their content hash, whole or
    not at all; an existing snapshot of the same content is returned untouched."""
    frame = frame[ACCEPTED_COLUMNS].sort_values("post_id", kind="stable").reset_index(drop=True)
    version = content_hash(frame)
    target = _folder(settings, version)
    if (target / "meta.json").is_file():
        return _load(target / "meta.json")
    meta = {"data_version": version, "kind": kind, "rows": len(frame), "source": source,
            "imported_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "skipped": dict(skipped or {})}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
    try:
        frame.to_parquet(staging / "snapshot.parquet", index=False)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(staging, target)
        except OSError:  # a concurrent import of the same content won: use its copy
            if not (target / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _load(target / "meta.json")


def list_snapshots(settings: Settings) -> list[LabelledSnapshot]:
    """Every labelled snapshot, oldest first (by import time, then version)."""
    root = labels_root(settings)
    found = [_load(p) for p in root.glob("sha256*/meta.json")] if root.is_dir() else []
    return sorted(found, key=lambda s: (s.imported_at, s.data_version))


def labelled_keys(settings: Settings) -> set[str]:
    """The post keys of every annotated post (the queue never offers them). A consensus label
    leaves its post in the queue: an annotator's confirmation still counts over it."""
    keys: set[str] = set()
    for snapshot in list_snapshots(settings):
        if snapshot.kind == ANNOTATIONS:
            keys.update(pd.read_parquet(snapshot.path, columns=["post_id"])["post_id"])
    return keys


def annotated_rows(settings: Settings) -> int:
    """Rows of every annotations snapshot: the labels any `--labels` training set holds."""
    return sum(s.rows for s in list_snapshots(settings) if s.kind == ANNOTATIONS)


def payload_times(settings: Settings, keys: set[str]) -> dict[str, pd.Timestamp]:
    """When each post (by key) was first served, from the payload log's label window."""
    until = datetime.now(UTC) + timedelta(seconds=1)
    log = read_log(settings.inference_log, settings,
                   until - timedelta(hours=settings.label_window_hours), until)
    if log.empty or not keys:
        return {}
    log = log.assign(post_key=log["text"].map(post_key))
    return log[log["post_key"].isin(keys)].groupby("post_key")["time"].min().to_dict()


def _created(keys: pd.Series, served: dict[str, pd.Timestamp],
             fallback: pd.Series) -> pd.Series:
    """The payload-log time of each key, else the fallback time (UTC, nanoseconds)."""
    known = pd.to_datetime(keys.map(served), utc=True)
    return known.fillna(pd.to_datetime(fallback, utc=True)).astype("datetime64[ns, UTC]")


def _resolve(annotations: pd.DataFrame, skipped: dict[str, int]) -> pd.DataFrame:
    """One row per post: its annotations' label when they all agree (the latest one kept),
    else none (`conflicting_annotations`, counted per post)."""
    labels = annotations.groupby("post_key")["label"].nunique()
    conflicting = set(labels[labels > 1].index)
    if conflicting:
        skipped["conflicting_annotations"] = len(conflicting)
    kept = annotations[~annotations["post_key"].isin(conflicting)]
    return kept.sort_values("annotated_at", kind="stable", na_position="first").drop_duplicates(
        "post_key", keep="last")


def import_labels(settings: Settings, export_file: Path) -> LabelledSnapshot:
    """A Label Studio JSON export → an annotations snapshot (post_id = post_key, created_at =
    the post's payload-log time, else when it was annotated, source
    "label-studio:<file name>"). LabelImportError when nothing in it is usable."""
    export_file = Path(export_file)
    try:
        annotations = parse_export(export_file)
    except LabelStudioError as error:
        raise LabelImportError(str(error)) from None
    skipped = dict(annotations.attrs.get("skipped", {}))
    rows = _resolve(annotations, skipped)
    served = payload_times(settings, set(rows["post_key"])) if len(rows) else {}
    frame = pd.DataFrame({"post_id": rows["post_key"],
                          "created_at": _created(rows["post_key"], served, rows["annotated_at"]),
                          "text": rows["text"], "label": rows["label"],
                          "source": f"label-studio:{export_file.name}"})
    undated = frame["created_at"].isna()  # never served here and no annotation time: ingest
    if undated.any():                     # would quarantine it (bad_created_at)
        skipped["no_time"] = int(undated.sum())
        frame = frame[~undated]
    if frame.empty:
        raise LabelImportError(f"no usable annotations in {export_file} (skipped: {skipped})")
    return write_snapshot(settings, frame, ANNOTATIONS, frame["source"].iloc[0], skipped)


def consensus_limit(settings: Settings, training_rows: int | None = None) -> int:
    """Most consensus labels a training set may take: feedback_consensus_max_share of its
    other rows; without `training_rows` (the base data's size is known only once ingested), of
    the annotated labels alone, which every such training set holds at least."""
    rows = annotated_rows(settings) if training_rows is None else training_rows
    return consensus_cap(settings.feedback_consensus_max_share, rows)


def refresh_consensus(settings: Settings,
                      training_rows: int | None = None) -> LabelledSnapshot | None:
    """The feedback-consensus snapshot of today's feedback log (trust.consensus under the
    settings' TrustRule, capped by consensus_limit), written if new; None when no post has a
    consensus or the cap is 0."""
    agreed = consensus(read_feedback(settings.feedback_log, settings),
                       TrustRule.from_settings(settings))
    agreed = capped(agreed, consensus_limit(settings, training_rows))
    if agreed.empty:
        return None
    served = payload_times(settings, set(agreed["post_key"]))
    frame = pd.DataFrame({"post_id": agreed["post_key"],
                          "created_at": _created(agreed["post_key"], served,
                                                 agreed["first_time"]),
                          "text": agreed["text"], "label": agreed["label"], "source": CONSENSUS})
    return write_snapshot(settings, frame, CONSENSUS, CONSENSUS)


def confirmed_sources(settings: Settings, training_rows: int | None = None) -> list[Path]:
    """The snapshot files training may read: with feedback_consensus_training on, the current
    feedback consensus (refreshed now, capped for `training_rows` other rows), if any; then
    every annotations snapshot oldest first (later sources win on a post)."""
    agreed = (refresh_consensus(settings, training_rows)
              if settings.feedback_consensus_training else None)
    annotated = [s.path for s in list_snapshots(settings) if s.kind == ANNOTATIONS]
    return ([agreed.path] if agreed else []) + annotated
