"""The whole labeling round trip against a real Label Studio (its own venv, 127.0.0.1,
SQLite): tasks exported from a real payload and feedback log, a project created, the tasks
imported, annotated and exported through its API, the export imported as a snapshot."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
from labeling_support import NOW, feedback, serve

from civicsense.data.ingest import ACCEPTED_COLUMNS, content_hash
from civicsense.labeling.label_studio import LabelStudioClient
from civicsense.labeling.queue import export_tasks
from civicsense.labeling.snapshots import ANNOTATIONS, import_labels, list_snapshots
from civicsense.monitoring.feedback_log import post_key

POSTS = {  # text → the label our stand-in annotator chooses
    "The climate bill finally passed, about time": "positive",
    "Voting rights are under attack again": "negative",
    "Parliament meets on Tuesday to discuss the referendum": "neutral",
    "Church attendance keeps falling, says a new survey": "neutral",
    "Equal pay for equal work should not be controversial": "positive",
    "Another useless campaign ad": "negative",
}
DISPUTED = "The pension reform is a disgrace"
CANCELLED = "Nobody can tell what this one means"
SERVED_AT = NOW - timedelta(hours=3)


def test_tasks_go_through_label_studio_and_come_back_as_a_snapshot(label_studio,
                                                                   civicsense_home, tmp_path):
    settings = civicsense_home
    texts = [*POSTS, CANCELLED]
    serve(settings, texts, [(0.4, 0.35, 0.25)] * len(texts), when=SERVED_AT)
    feedback(settings, DISPUTED, "negative", "client-aaaa1")  # reported, never served here
    exported = export_tasks(settings, budget=len(texts), out=tmp_path / "tasks.json")
    assert exported.by_reason == {"feedback": 1, "uncertainty": len(texts)}

    client = label_studio.client()
    project = client.create_project("civicsense round trip")
    assert client.import_tasks(project, json.loads(exported.path.read_text())) == len(texts) + 1
    chosen = {**POSTS, DISPUTED: "negative"}
    for task_id in client.task_ids(project):
        task = client.session.get(f"{label_studio.url}/api/tasks/{task_id}", timeout=30).json()
        assert task["data"]["post_key"] == post_key(task["data"]["text"])
        if task["data"]["text"] == CANCELLED:  # the annotator skips it
            skip = client.session.post(f"{label_studio.url}/api/tasks/{task_id}/annotations/",
                                       json={"result": [], "was_cancelled": True}, timeout=30)
            assert skip.status_code == 201, skip.text
        else:
            client.annotate(task_id, chosen[task["data"]["text"]])

    export_file = tmp_path / "project-export.json"
    export_file.write_text(json.dumps(client.export(project)))
    snapshot = import_labels(settings, export_file)

    frame = pd.read_parquet(snapshot.path)
    assert list(frame.columns) == ACCEPTED_COLUMNS
    assert snapshot.rows == len(chosen) == len(frame)
    assert snapshot.skipped == {"cancelled": 1}
    assert dict(zip(frame["text"], frame["label"], strict=True)) == chosen
    assert snapshot.data_version == content_hash(frame)
    assert snapshot.data_version.startswith("sha256:") and len(snapshot.data_version) == 23
    rows = frame.set_index("text")
    assert (rows.loc[list(POSTS), "created_at"] == pd.Timestamp(SERVED_AT)).all()
    assert set(frame["source"]) == {"label-studio:project-export.json"}
    assert [(s.data_version, s.kind) for s in list_snapshots(settings)] == [
        (snapshot.data_version, ANNOTATIONS)]
    # Everything labelled: the queue has only the skipped post left to offer.
    assert [t["data"]["text"] for t in export_tasks(settings, 10).tasks] == [CANCELLED]


def test_a_personal_access_token_works_too(label_studio):
    """1.23's default token kind: a JWT refresh token the client trades for a Bearer token."""
    made = label_studio.client().session.post(f"{label_studio.url}/api/token/", timeout=30)
    assert made.status_code == 201, made.text
    personal = made.json()["token"]
    assert personal.count(".") == 2
    client = LabelStudioClient(label_studio.url, personal)
    assert client.session.headers["Authorization"].startswith("Bearer ")
    project = client.create_project("personal token")
    assert client.import_tasks(project, [{"data": {"text": "hello"}}]) == 1
    (task_id,) = client.task_ids(project)
    client.annotate(task_id, "neutral")
    assert [t["annotations"][0]["result"][0]["value"]["choices"] for t in client.export(project)
            ] == [["neutral"]]
