"""Labelled snapshots: a Label Studio export becomes ingest-shaped rows under a content-hash
data version (the same labels, the same version); the queue never offers them again."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
from labeling_support import NOW, serve

from civicsense.data.ingest import ACCEPTED_COLUMNS, content_hash
from civicsense.labeling.queue import export_tasks
from civicsense.labeling.snapshots import (
    ANNOTATIONS,
    LabelImportError,
    confirmed_sources,
    import_labels,
    labelled_keys,
    list_snapshots,
)
from civicsense.monitoring.feedback_log import post_key

SERVED_AT = NOW - timedelta(hours=2)


def _export(path, annotations: list[tuple[str, str]], when="2026-12-02T10:00:00Z"):
    """(text, label) annotations as a Label Studio JSON export file, one task per text."""
    tasks: dict[str, dict] = {}
    for text, label in annotations:
        task = tasks.setdefault(text, {"id": len(tasks) + 1, "data": {"text": text},
                                       "annotations": []})
        task["annotations"].append({"completed_by": 1, "was_cancelled": False,
                                    "created_at": when, "updated_at": when, "result": [
                                        {"from_name": "sentiment", "to_name": "text",
                                         "type": "choices", "value": {"choices": [label]}}]})
    path.write_text(json.dumps(list(tasks.values())))
    return path


def test_an_export_becomes_a_versioned_snapshot(civicsense_home, tmp_path):
    settings = civicsense_home
    serve(settings, ["served post"], [(0.4, 0.4, 0.2)], when=SERVED_AT)
    export = _export(tmp_path / "project-1.json", [("served post", "negative"),
                                                    ("unseen post", "positive")])
    snapshot = import_labels(settings, export)
    frame = pd.read_parquet(snapshot.path)
    assert list(frame.columns) == ACCEPTED_COLUMNS
    assert snapshot.rows == 2 and snapshot.kind == ANNOTATIONS
    assert snapshot.data_version == content_hash(frame)
    assert snapshot.path.parent.name == snapshot.data_version.replace(":", "-")
    rows = frame.set_index("text")
    assert rows.loc["served post", "post_id"] == post_key("served post")
    assert rows.loc["served post", "created_at"] == pd.Timestamp(SERVED_AT)  # payload-log time
    assert rows.loc["unseen post", "created_at"] == pd.Timestamp("2026-12-02T10:00:00Z")
    assert set(frame["source"]) == {"label-studio:project-1.json"}
    meta = json.loads((snapshot.path.parent / "meta.json").read_text())
    assert meta["data_version"] == snapshot.data_version and meta["rows"] == 2
    assert meta["kind"] == ANNOTATIONS


def test_the_same_labels_give_the_same_version_and_no_new_snapshot(civicsense_home, tmp_path):
    settings = civicsense_home
    first = import_labels(settings, _export(tmp_path / "a.json", [("p", "neutral")]))
    again = import_labels(settings, _export(tmp_path / "a.json", [("p", "neutral")]))
    other = import_labels(settings, _export(tmp_path / "a.json", [("p", "positive")]))
    assert first == again and other.data_version != first.data_version
    assert [s.data_version for s in list_snapshots(settings)] == [first.data_version,
                                                                   other.data_version]


def test_disagreeing_annotators_drop_the_post(civicsense_home, tmp_path):
    snapshot = import_labels(civicsense_home, _export(tmp_path / "x.json", [
        ("split", "negative"), ("split", "positive"), ("agreed", "neutral"),
        ("agreed", "neutral")]))
    assert snapshot.rows == 1 and snapshot.skipped == {"conflicting_annotations": 1}


def test_an_export_with_nothing_usable_is_refused(civicsense_home, tmp_path):
    with pytest.raises(LabelImportError, match="no usable annotations"):
        import_labels(civicsense_home, _export(tmp_path / "x.json", [("p", "angry")]))
    (tmp_path / "bad.json").write_text("[")
    with pytest.raises(LabelImportError, match="not JSON"):
        import_labels(civicsense_home, tmp_path / "bad.json")
    assert list_snapshots(civicsense_home) == []


def test_an_annotation_with_no_time_anywhere_is_skipped_not_left_for_ingest(civicsense_home,
                                                                             tmp_path):
    """Not served here and no annotation time: no created_at, which ingest would quarantine
    (bad_created_at) long after the import said it was fine. Served posts keep their time."""
    settings = civicsense_home
    serve(settings, ["served post"], [(0.4, 0.4, 0.2)], when=SERVED_AT)
    export = _export(tmp_path / "x.json", [("served post", "negative"), ("lost post", "neutral")],
                     when="not a time")
    snapshot = import_labels(settings, export)
    assert snapshot.rows == 1 and snapshot.skipped == {"no_time": 1}
    assert pd.read_parquet(snapshot.path)["text"].tolist() == ["served post"]
    with pytest.raises(LabelImportError, match="no_time"):
        import_labels(settings, _export(tmp_path / "y.json", [("lost post", "neutral")],
                                        when=None))


def test_labelled_posts_leave_the_queue_and_reach_training(civicsense_home, tmp_path):
    settings = civicsense_home
    serve(settings, ["a post", "b post"], [(0.4, 0.4, 0.2), (0.4, 0.35, 0.25)])
    snapshot = import_labels(settings, _export(tmp_path / "x.json", [("a post", "negative")]))
    assert labelled_keys(settings) == {post_key("a post")}
    assert [t["data"]["text"] for t in export_tasks(settings, 5).tasks] == ["b post"]
    assert confirmed_sources(settings) == [snapshot.path]


def test_a_snapshot_folder_named_with_the_colon_is_listed_too(civicsense_home):
    """Writers name the folder sha256-<hex>; one named by the data version verbatim is read."""
    frame = pd.DataFrame({"post_id": ["t1"], "created_at": [pd.Timestamp("2015-06-01", tz="UTC")],
                          "text": ["x"], "label": ["neutral"], "source": ["elsewhere"]})
    version = content_hash(frame)
    folder = civicsense_home.home_dir / "labels" / version
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "snapshot.parquet", index=False)
    (folder / "meta.json").write_text(json.dumps({
        "data_version": version, "kind": ANNOTATIONS, "rows": 1, "source": "elsewhere",
        "imported_at": "2026-12-03T08:00:00+00:00"}))
    assert [s.path for s in list_snapshots(civicsense_home)] == [folder / "snapshot.parquet"]
    assert confirmed_sources(civicsense_home) == [folder / "snapshot.parquet"]
    assert labelled_keys(civicsense_home) == {"t1"}
