"""Unit tests of multi-source ingest: base raw data + labelled snapshots merged by post id."""

import json
import os

import pandas as pd
import pytest

from civicsense.data.ingest import IngestError, content_hash, ingest_source
from civicsense.data.merge import (
    SUPERSEDED,
    ingest_sources,
    is_labelled,
    label_fingerprint,
    snapshot_file,
    sources_fingerprint,
    text_key,
)
from civicsense.data.sources import fingerprint
from civicsense.monitoring.feedback_log import post_key
from civicsense.settings import Settings
from tests_support import FIXTURES

BASE = str(FIXTURES / "semeval_mess.txt")  # 14 raw rows, 6 accepted
KANYE = "638435681832960000"  # a base post, accepted as neutral or positive


def write_snapshot(folder, rows, meta=True):
    """A labelled snapshot as civicsense.labeling.snapshots writes it."""
    frame = pd.DataFrame(rows, columns=["post_id", "created_at", "text", "label", "source"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "snapshot.parquet", index=False)
    if meta:
        (folder / "meta.json").write_text(json.dumps({
            "data_version": content_hash(frame), "kind": "annotations", "rows": len(frame),
            "source": "test", "imported_at": "2026-12-03T00:00:00+00:00"}))
    return folder


def row(post_id, label, text="a post", when="2015-06-01T12:00:00Z", source="label-studio:x"):
    return (post_id, when, text, label, source)


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path / "home")


def merged(tmp_path, settings, *sources):
    return ingest_sources([BASE, *map(str, sources)], settings, tmp_path / "out.parquet",
                          tmp_path / "q.parquet", progress=False)


def test_the_base_alone_is_plain_ingest(tmp_path, settings):
    alone = ingest_source(BASE, settings, tmp_path / "a.parquet", tmp_path / "aq.parquet")
    result = merged(tmp_path, settings)
    assert result.data_version == alone.data_version
    pd.testing.assert_frame_equal(result.accepted, alone.accepted)
    assert result.report["source_versions"] == {BASE: alone.data_version}
    assert alone.report["source_versions"] == {BASE: alone.data_version}


def test_a_later_source_wins_and_every_row_is_accounted_for(tmp_path, settings):
    labels = write_snapshot(tmp_path / "labels" / "v1", [
        row(KANYE, "negative", "Kanye relabelled"), row("t1", "positive"),
        row("t2", "neutral", "another post")])
    result = merged(tmp_path, settings, labels)
    assert result.records_read == 14 + 3
    assert result.records_read == len(result.accepted) + len(result.quarantined)
    assert len(result.accepted) == 6 - 1 + 3
    by_id = result.accepted.set_index("post_id")
    assert by_id.loc[KANYE, "label"] == "negative"
    assert by_id.loc[KANYE, "source"] == "label-studio:x"  # the snapshot's own provenance
    superseded = result.quarantined[result.quarantined["reason"] == SUPERSEDED]
    assert list(superseded["post_id"]) == [KANYE]
    assert superseded.iloc[0]["source"] == "semeval_mess.txt"
    assert result.report["quarantine_reasons"][SUPERSEDED] == 1
    versions = result.report["source_versions"]
    assert list(versions) == [BASE, str(labels)]
    assert versions[str(labels)] == json.loads((labels / "meta.json").read_text())[
        "data_version"]
    assert result.data_version == content_hash(result.accepted)
    assert result.data_version not in versions.values()
    assert pd.read_parquet(tmp_path / "out.parquet")["post_id"].is_unique


def test_the_newest_snapshot_wins_over_an_older_one(tmp_path, settings):
    old = write_snapshot(tmp_path / "old", [row("t1", "positive"), row("t2", "neutral")])
    new = write_snapshot(tmp_path / "new", [row("t1", "negative", source="label-studio:y")])
    result = merged(tmp_path, settings, old / "snapshot.parquet", new)
    assert result.accepted.set_index("post_id").loc["t1", "label"] == "negative"
    superseded = result.quarantined[result.quarantined["reason"] == SUPERSEDED]
    assert list(zip(superseded["post_id"], superseded["source"], strict=True)) == [
        ("t1", "label-studio:x")]
    swapped = ingest_sources([BASE, str(new), str(old)], settings, tmp_path / "s.parquet",
                             tmp_path / "sq.parquet", progress=False)
    assert swapped.accepted.set_index("post_id").loc["t1", "label"] == "positive"
    assert swapped.data_version != result.data_version


def test_bad_rows_of_a_snapshot_are_quarantined_with_their_reason(tmp_path, settings):
    labels = write_snapshot(tmp_path / "bad", [
        row("t1", "positive"), row("t1", "negative"),  # one post, two labels: both out
        row("t2", "mixed"), row("t3", "neutral", text="  "), row(None, "positive"),
        row("t4", "neutral", when=None), row("t5", "Positive", text=' "kept &amp; as is" ')])
    result = merged(tmp_path, settings, labels)
    reasons = result.quarantined[result.quarantined["source"] == "label-studio:x"]
    assert sorted(reasons["reason"]) == ["bad_created_at", "bad_label:mixed",
                                         "conflicting_labels", "conflicting_labels",
                                         "empty_text", "missing_post_id"]
    kept = result.accepted.set_index("post_id").loc["t5"]
    assert (kept["label"], kept["text"]) == ("positive", '"kept &amp; as is"')  # not re-cleaned
    assert result.records_read == len(result.accepted) + len(result.quarantined)


def test_a_file_that_is_not_a_snapshot_is_a_clear_error(tmp_path, settings):
    folder = tmp_path / "notes"
    folder.mkdir()
    pd.DataFrame({"post_id": ["x"], "label": ["positive"]}).to_parquet(
        folder / "snapshot.parquet")
    with pytest.raises(IngestError, match="missing column"):
        merged(tmp_path, settings, folder)
    assert not (tmp_path / "out.parquet").exists()
    assert snapshot_file(tmp_path) is None and snapshot_file(folder) == folder / \
        "snapshot.parquet"


def test_the_same_labels_give_the_same_version(tmp_path, settings):
    rows = [row("t1", "positive"), row("t2", "neutral")]
    one = merged(tmp_path, settings, write_snapshot(tmp_path / "one", rows))
    two = merged(tmp_path, settings, write_snapshot(tmp_path / "two", rows))
    assert one.data_version == two.data_version


def test_the_fingerprint_follows_label_content_not_file_times(tmp_path, settings):
    assert sources_fingerprint(BASE, [], settings) == fingerprint(BASE, settings)
    labels = write_snapshot(tmp_path / "v1", [row("t1", "positive")])
    key = sources_fingerprint(BASE, [str(labels)], settings)
    assert key != fingerprint(BASE, settings)
    os.utime(labels / "snapshot.parquet", (1, 1))  # rewritten, same labels
    assert sources_fingerprint(BASE, [str(labels)], settings) == key
    meta = json.loads((labels / "meta.json").read_text())
    (labels / "meta.json").write_text(json.dumps({**meta, "data_version": "sha256:other"}))
    assert sources_fingerprint(BASE, [str(labels)], settings) != key
    bare = write_snapshot(tmp_path / "bare", [row("t1", "positive")], meta=False)
    assert label_fingerprint(str(bare), settings) == fingerprint(str(bare), settings)


def test_merged_rows_say_which_are_new_labels(tmp_path, settings):
    """is_labelled tells labelled-snapshot rows from base rows, also for a snapshot whose rows
    name a source of their own (read as labelled:<source>)."""
    folder = write_snapshot(tmp_path / "labels", [row("t1", "negative", "one"),
                                                  row("t2", "neutral", "two", source="mine"),
                                                  row("t3", "positive", "three", source="")])
    frame = merged(tmp_path, settings, folder).accepted
    new = frame[is_labelled(frame["source"])]
    assert sorted(new["post_id"]) == ["t1", "t2", "t3"]
    assert dict(zip(new["post_id"], new["source"], strict=True)) == {
        "t1": "label-studio:x", "t2": "labelled:mine", "t3": f"labelled:{folder}"}
    assert not is_labelled(frame[~frame["post_id"].str.startswith("t")]["source"]).any()


def test_a_labelled_post_that_is_also_a_base_post_supersedes_it_by_text(tmp_path, settings):
    """A served post's id is its text's hash, the base's is the data's own id: the same text
    in both is one post, the newer label wins (no duplicate with two labels in training)."""
    base = ingest_source(BASE, settings, tmp_path / "a.parquet", tmp_path / "aq.parquet")
    text = base.accepted.set_index("post_id").loc[KANYE, "text"]
    assert text_key(text) == post_key(text)
    labels = write_snapshot(tmp_path / "labels", [row(post_key(text), "negative", text)])
    result = merged(tmp_path, settings, labels)
    assert len(result.accepted) == 6 and KANYE not in set(result.accepted["post_id"])
    assert result.accepted.set_index("post_id").loc[post_key(text), "label"] == "negative"
    superseded = result.quarantined[result.quarantined["reason"] == SUPERSEDED]
    assert list(superseded["post_id"]) == [KANYE]
