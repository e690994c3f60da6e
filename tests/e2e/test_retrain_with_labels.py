"""End to end: retraining on the base data plus a labelled snapshot registers a version whose
`data_versions` tag lists both, and an unchanged rerun with the same labels is a cache hit.
(Named to run after test_pipeline.py, which counts the session registry's versions.)"""

import time

import pandas as pd
from mlflow import MlflowClient


def write_snapshot(settings):
    """An annotations snapshot of 60 2015 posts, written by the labeling package's own writer."""
    from civicsense.labeling.snapshots import ANNOTATIONS
    from civicsense.labeling.snapshots import write_snapshot as write

    frame = pd.DataFrame(
        [(f"t{index:04d}", pd.Timestamp("2015-06-01", tz="UTC") + pd.Timedelta(hours=index),
          text, label, "label-studio:export.json")
         for index, (text, label) in enumerate([("I love this new law", "positive"),
                                                ("this reform is a disaster", "negative"),
                                                ("the vote is on tuesday", "neutral")] * 20)],
        columns=["post_id", "created_at", "text", "label", "source"])
    snapshot = write(settings, frame, ANNOTATIONS, "label-studio:export.json")
    return snapshot.path.parent, snapshot.data_version


def test_the_registered_version_lists_every_data_version_it_trained_on(trained_home):
    from civicsense.orchestration.runner import run_local
    from civicsense.settings import Settings
    from civicsense.training.params import PipelineParams
    from tests_support import MIRROR_DATA

    settings, first = trained_home
    folder, label_version = write_snapshot(settings)
    # A margin no candidate beats: the session's champion keeps its alias for later tests.
    params = PipelineParams(sample_size=4000, gate_margin=1.0)
    summary = run_local(Settings(data=str(MIRROR_DATA)), params, label_sources=[folder])
    assert summary["data_versions"] == [first["data_version"], label_version]
    assert summary["data_version"] not in (first["data_version"], label_version)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    tags = client.get_model_version(settings.model_name, summary["version"]).tags
    assert tags["data_versions"] == f"{first['data_version']},{label_version}"
    assert tags["data_version"] == summary["data_version"]
    snapshot = pd.read_parquet(sorted(settings.pipeline_root.glob(
        "*/ingest-op/snapshot"), key=lambda p: p.stat().st_mtime)[-1])
    assert set(snapshot[snapshot["source"] == "label-studio:export.json"]["post_id"]) == {
        f"t{index:04d}" for index in range(60)}
    entities = pd.read_parquet(sorted(settings.pipeline_root.glob(
        "*/feature-build-op/entities"), key=lambda p: p.stat().st_mtime)[-1])
    labelled = entities[entities["source"] == "label-studio:export.json"]
    assert len(labelled) == 60 and set(labelled["split"]) == {"train"}  # none sampled out

    started = time.perf_counter()
    again = run_local(Settings(data=str(MIRROR_DATA)), params, label_sources=[folder])
    print(f"unchanged rerun with labels: {time.perf_counter() - started:.1f} s")
    assert (again["version"], again["run_id"]) == (summary["version"], summary["run_id"])
    assert again["reason"] == "already registered by this run"
