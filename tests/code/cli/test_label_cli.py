"""`civicsense label export | import | status` as a user runs them: tasks out, a snapshot in,
the state on one screen; bad input is an exit code and one line."""

from __future__ import annotations

import json

import pytest
from labeling_support import feedback, serve
from typer.testing import CliRunner

from civicsense.cli.app import app

runner = CliRunner()


def _annotate(tasks: list[dict], label: str = "negative") -> list[dict]:
    """What Label Studio exports once an annotator chose `label` on every task."""
    return [{"id": i, "data": task["data"], "annotations": [{
        "completed_by": 1, "was_cancelled": False, "created_at": "2026-12-02T10:00:00Z",
        "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                    "value": {"choices": [label]}}]}]} for i, task in enumerate(tasks, 1)]


def test_export_import_status_round_trip(civicsense_home, tmp_path):
    settings = civicsense_home
    serve(settings, [f"post {i}" for i in range(10)],
          [(0.34 + i / 50, 0.33, 0.33 - i / 50) for i in range(10)])
    feedback(settings, "a disputed post", "negative", "client-aaaa1")
    tasks_file = tmp_path / "tasks.json"
    result = runner.invoke(app, ["label", "export", "--budget", "4", "--out", str(tasks_file)])
    assert result.exit_code == 0, result.output
    assert "tasks: 5 (1 feedback, 4 uncertainty)" in result.output
    assert "payload log: 10 records" in result.output  # a line per step
    tasks = json.loads(tasks_file.read_text())
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_annotate(tasks)))
    result = runner.invoke(app, ["label", "import", str(export)])
    assert result.exit_code == 0, result.output
    assert "snapshot: sha256:" in result.output and "(5 posts; skipped: none)" in result.output
    result = runner.invoke(app, ["label", "status"])
    assert result.exit_code == 0, result.output
    assert "snapshots: 1" in result.output and "annotated posts: 5 (5 negative)" in result.output
    assert ("feedback: 1 records on 1 posts, 0 with a credential from 0 installs; pending (not "
            "annotated): 0") in result.output
    assert ("consensus (>= 3 credentials from >= 3 peers over >= 2 days): 0; consensus "
            "training off: only annotators' labels reach training") in result.output
    again = runner.invoke(app, ["label", "export", "--budget", "10", "--out",
                                str(tmp_path / "next.json")])
    assert "tasks: 6 (6 uncertainty)" in again.output  # the 5 labelled ones never come back


@pytest.mark.parametrize("args,message", [
    (["export", "--budget", "5", "--strategy", "loudest"], "--strategy must be one of"),
    (["export", "--budget", "-1"], "--budget must be 0 or more"),
    (["export", "--budget", "5", "--since", "yesterday"], "--since must be an ISO"),
    (["export", "--budget", "5", "--window-hours", "0"], "--window-hours must be"),
    (["import", "/nonexistent/export.json"], "no such export file"),
    (["status", "--min-clients", "0"], "--min-clients must be 1 or more"),
    (["export", "--budget", "5", "--out", "/"], "--out must name a file"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, civicsense_home):
    result = runner.invoke(app, ["label", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_nothing_to_label_is_exit_1_and_no_task_file(civicsense_home, tmp_path):
    """An empty payload log and no feedback (or every post labelled, or budget 0 without
    feedback): an error line, no empty task file to import into Label Studio."""
    out = tmp_path / "tasks.json"
    for budget in ("50", "0"):
        result = runner.invoke(app, ["label", "export", "--budget", budget, "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1].startswith("error: nothing to label")
        assert "Traceback" not in result.output and not out.exists()
    serve(civicsense_home, ["one post"], [(0.5, 0.3, 0.2)])
    result = runner.invoke(app, ["label", "export", "--budget", "0", "--out", str(out)])
    assert result.exit_code == 1 and not out.exists()
    result = runner.invoke(app, ["label", "export", "--budget", "1", "--out", str(out)])
    assert result.exit_code == 0 and len(json.loads(out.read_text())) == 1


def test_an_export_without_usable_annotations_is_refused(civicsense_home, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_annotate([{"data": {"text": "x"}}], label="furious")))
    result = runner.invoke(app, ["label", "import", str(export)])
    assert result.exit_code == 2 and "no usable annotations" in result.output
    assert "unknown_label" in result.output



def test_an_unreadable_log_is_an_error_line_and_exit_2(civicsense_home, gcs, monkeypatch):
    monkeypatch.setenv("CIVICSENSE_FEEDBACK_LOG_URI", "gs://no-such-bucket/feedback")
    for args in (["export", "--budget", "1"], ["status"]):
        result = runner.invoke(app, ["label", *args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
