"""`civicsense run --labels` and `ingest --labelled`: the labelled snapshots reach the pipeline's
arguments (and its cache key), and ingest merges them after the data."""

import json

from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.data.sources import fingerprint
from civicsense.settings import Settings
from tests_support import ROOT

runner = CliRunner()
DATA = str(ROOT / "tests" / "fixtures" / "posts.csv")


def export_file(path, annotations=(("great reform", "positive"), ("awful vote", "negative"))):
    """(text, label) annotations as a Label Studio JSON export, one task per text."""
    when = "2026-12-02T10:00:00Z"
    path.write_text(json.dumps([
        {"id": index, "data": {"text": text}, "annotations": [{
            "completed_by": 1, "was_cancelled": False, "created_at": when, "updated_at": when,
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}]}]}
        for index, (text, label) in enumerate(annotations, start=1)]))
    return path


def write_snapshot(home):
    """An annotations snapshot imported the way `civicsense label import` does."""
    from civicsense.labeling.snapshots import import_labels

    snapshot = import_labels(Settings(home=home), export_file(home.parent / "export.json"))
    return snapshot.path, snapshot.data_version


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
    from labeling_support import feedback

    home = tmp_path / "home"
    snapshot, _ = write_snapshot(home)
    arguments = dry_run(home, "--labels")
    assert arguments["label_sources"] == [str(snapshot)]
    assert arguments["source_fingerprint"] != fingerprint(DATA, Settings())
    assert dry_run(home, "--labels") == arguments  # same labels, same cache key
    # By default user feedback reaches training only through an annotator: clients agreeing
    # change nothing here (the consensus rule: tests/code/labeling/test_trust.py).
    for client in ("client-1", "client-2", "client-3"):
        feedback(Settings(home=home), "the law passed", "positive", client)
    assert dry_run(home, "--labels") == arguments


def test_ingest_merges_labelled_snapshots_after_the_data(tmp_path):
    snapshot, version = write_snapshot(tmp_path / "home")
    folder = snapshot.parent
    result = runner.invoke(app, ["ingest", "--data", DATA, "--out", str(tmp_path / "s.parquet"),
                                 "--quarantine", str(tmp_path / "q.parquet"),
                                 "--labelled", str(folder)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["source_versions"][str(folder)] == version
    assert list(report["source_versions"]) == [DATA, str(folder)]
    assert report["records_read"] == report["accepted"] + report["quarantined"] == 3 + 2


def test_pipeline_submit_labels_asks_the_cluster_ingest_for_them(kfp_api):
    host, calls = kfp_api
    result = runner.invoke(app, ["pipeline", "submit", "--host", host, "--data", DATA,
                                 "--labels"])
    assert result.exit_code == 0, result.output
    body = next(body for method, path, body in calls if method == "POST" and "/runs" in path)
    assert body["runtime_config"]["parameters"]["confirmed_labels"] is True
