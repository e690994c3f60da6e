"""The labeling pipelines run end to end on the KFP local runner (the components' real code, in
subprocesses reading Settings from the environment): export the queue as Label Studio tasks,
import an annotated export as a snapshot that `run --labels` then picks up."""

import json

import pytest
from labeling_support import serve

from civicsense.labeling.snapshots import confirmed_sources, list_snapshots
from civicsense.settings import Settings


@pytest.fixture
def local_kfp(civicsense_home):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(civicsense_home.pipeline_root), enable_caching=False)
    return civicsense_home


def test_export_then_import_through_the_labeling_pipelines(local_kfp, tmp_path):
    from pipelines.labeling import label_export_pipeline, label_import_pipeline

    settings = local_kfp
    serve(settings, ["unsure post", "sure post", "torn post"],
          [(0.4, 0.35, 0.25), (0.9, 0.05, 0.05), (0.34, 0.33, 0.33)])
    summary = json.loads(label_export_pipeline(budget=2, strategy="uncertainty", seed=0).output)
    assert summary == {"tasks": 2, "by_reason": {"uncertainty": 2}}
    tasks_file, = settings.pipeline_root.glob("*/label-export-op/tasks")
    tasks = json.loads(tasks_file.read_text())
    assert sorted(t["data"]["text"] for t in tasks) == ["torn post", "unsure post"]

    when = "2026-12-02T10:00:00Z"
    for index, task in enumerate(tasks, start=1):  # an annotator labels both
        task.update(id=index, annotations=[{
            "completed_by": 1, "was_cancelled": False, "created_at": when, "updated_at": when,
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": ["negative"]}}]}])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    imported = json.loads(label_import_pipeline(export_file=str(export)).output)
    snapshot, = list_snapshots(Settings())
    assert (imported["data_version"], imported["rows"]) == (snapshot.data_version, 2)
    assert confirmed_sources(settings) == [snapshot.path]
