"""`civicsense run --labels` and `ingest --labelled`: the labelled snapshots reach the pipeline's
arguments (and its cache key), and ingest merges them after the data."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.data.ingest import content_hash
from civicsense.data.sources import fingerprint
from civicsense.settings import Settings
from tests_support import ROOT

runner = CliRunner()
DATA = str(ROOT / "tests" / "fixtures" / "posts.csv")


def write_snapshot(home, rows=(("t1", "positive"), ("t2", "negative"))):
    """A labelled snapshot written by civicsense.labeling.snapshots itself."""
    frame = pd.DataFrame([(key, pd.Timestamp("2015-06-01", tz="UTC"), f"post {key}", label,
                           "label-studio:export.json") for key, label in rows],
                         columns=["post_id", "created_at", "text", "label", "source"])
    from civicsense.labeling.snapshots import ANNOTATIONS
    from civicsense.labeling.snapshots import write_snapshot as write

    snapshot = write(Settings(home=home), frame, ANNOTATIONS, "export.json")
    assert snapshot.data_version == content_hash(frame.sort_values("post_id"))
    return snapshot.path.parent, snapshot.data_version


def dry_run(home, *extra):
    result = runner.invoke(app, ["run", "--data", DATA, "--home", str(home), "--dry-run",
                                 *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_run_without_labels_has_none_and_the_old_cache_key(tmp_path):
    write_snapshot(tmp_path / "home")
    arguments = dry_run(tmp_path / "home")
    assert arguments["data_source"] == DATA and arguments["label_sources"] == []
    assert arguments["confirmed_labels"] is False
    assert arguments["source_fingerprint"] == fingerprint(DATA, Settings())


def test_run_labels_passes_every_confirmed_snapshot_to_the_pipeline(tmp_path):
    pytest.importorskip("civicsense.labeling.snapshots")
    folder, _ = write_snapshot(tmp_path / "home")
    arguments = dry_run(tmp_path / "home", "--labels")
    assert len(arguments["label_sources"]) >= 1
    assert any(str(folder) in source for source in arguments["label_sources"])
    assert arguments["source_fingerprint"] != fingerprint(DATA, Settings())
    assert dry_run(tmp_path / "home", "--labels") == arguments  # same labels, same cache key


def test_ingest_merges_labelled_snapshots_after_the_data(tmp_path):
    folder, version = write_snapshot(tmp_path / "home")
    result = runner.invoke(app, ["ingest", "--data", DATA, "--out", str(tmp_path / "s.parquet"),
                                 "--quarantine", str(tmp_path / "q.parquet"),
                                 "--labelled", str(folder)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["source_versions"][str(folder)] == version
    assert list(report["source_versions"]) == [DATA, str(folder)]
    assert report["records_read"] == report["accepted"] + report["quarantined"] == 3 + 2
