"""Label Studio's formats and API, the one place that knows them: the labeling config, a queue
row as an import task (with the model's prediction as a pre-annotation), an export file back to
rows, and a small client for the REST API (projects, task import, export).

Label Studio runs in a venv of its own (`make label-studio-venv`); this module only speaks
its JSON, so the project does not depend on it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from civicsense import LABELS
from civicsense.monitoring.feedback_log import post_key

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Header value="Sentiment of this post"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="negative"/>
    <Choice value="neutral"/>
    <Choice value="positive"/>
  </Choices>
</View>"""
TASK_FIELDS = ("text", "post_key", "model_version", "topic", "day", "reason")
EXPORT_COLUMNS = ["post_key", "text", "label", "annotator", "annotated_at"]
MAX_EXPORT_BYTES = 512 << 20


class LabelStudioError(ValueError):
    """An export file that is not Label Studio's JSON export, or a failed API call."""


def _choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices",
             "value": {"choices": [label]}}]


def to_task(row: Mapping) -> dict:
    """A queue row (text, post_key, model_version, topic, day, reason, label, score) → one task
    in Label Studio's JSON import format; the model's label is the pre-annotation."""
    data = {field: "" if row.get(field) is None else str(row[field]) for field in TASK_FIELDS}
    data["post_key"] = data["post_key"] or post_key(data["text"])
    task: dict[str, Any] = {"data": data}
    if row.get("label") in LABELS:
        prediction: dict[str, Any] = {"model_version": data["model_version"],
                                      "result": _choice(str(row["label"]))}
        score = row.get("score")
        if isinstance(score, int | float) and math.isfinite(score):
            prediction["score"] = float(score)
        task["predictions"] = [prediction]
    return task


def _annotation_label(annotation: dict) -> str | None:
    result = annotation.get("result")
    for item in result if isinstance(result, list) else []:
        if isinstance(item, dict) and item.get("from_name") == "sentiment":
            value = item.get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            return str(choices[0]) if isinstance(choices, list) and choices else None
    return None


def _annotated_at(annotation: dict) -> pd.Timestamp:
    """When an annotation was last saved (UTC); NaT when the export gives no ISO time."""
    when = annotation.get("updated_at") or annotation.get("created_at")
    try:
        stamp = datetime.fromisoformat(when) if isinstance(when, str) else None
    except ValueError:
        stamp = None
    if stamp is None:
        return pd.NaT
    return pd.Timestamp(stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).tz_convert("UTC")


def _annotator(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return "" if who is None else str(who)


def parse_tasks(tasks: Any) -> pd.DataFrame:
    """Label Studio's JSON export (a list of tasks) → one row per usable annotation, columns
    EXPORT_COLUMNS (`annotated_at` a UTC timestamp). Cancelled, empty and out-of-set annotations
    and tasks without text are skipped, counted by reason in `frame.attrs["skipped"]`."""
    if not isinstance(tasks, list):
        raise LabelStudioError("a Label Studio JSON export is a list of tasks")
    rows, skipped = [], Counter()
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            skipped["not_a_task"] += 1
            continue
        text = task["data"].get("text")
        annotations = task.get("annotations") or []
        if not isinstance(text, str) or not text.strip():
            skipped["no_text"] += max(1, len(annotations))
            continue
        if not annotations:
            skipped["not_annotated"] += 1
        for annotation in annotations:
            if not isinstance(annotation, dict):
                skipped["not_an_annotation"] += 1
            elif annotation.get("was_cancelled"):
                skipped["cancelled"] += 1
            elif (label := _annotation_label(annotation)) is None:
                skipped["empty"] += 1
            elif label not in LABELS:
                skipped["unknown_label"] += 1
            else:
                rows.append((post_key(text), text, label, _annotator(annotation),
                             _annotated_at(annotation)))
    frame = pd.DataFrame(rows, columns=EXPORT_COLUMNS)
    frame["annotated_at"] = pd.to_datetime(frame["annotated_at"], utc=True)
    frame.attrs["skipped"] = dict(sorted(skipped.items()))
    return frame


def parse_export(path: Path) -> pd.DataFrame:
    """A Label Studio JSON export file → parse_tasks' rows (LabelStudioError if it is not one).
    The post's identity is the hash of its text (post_key), whatever the task's data says."""
    path = Path(path)
    if not path.is_file():
        raise LabelStudioError(f"no such export file: {path}")
    if path.stat().st_size > MAX_EXPORT_BYTES:
        raise LabelStudioError(f"{path} is over {MAX_EXPORT_BYTES >> 20} MiB")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise LabelStudioError(f"{path} is not JSON: {error}") from None
    return parse_tasks(tasks)


class LabelStudioClient:
    """Label Studio's REST API. `token`: a personal access token (a JWT: exchanged at
    /api/token/refresh/ for a short-lived Bearer token) or a legacy token (`Token <key>`)."""

    def __init__(self, url: str, token: str, timeout: float = 60.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        if token.count(".") == 2:  # a JWT refresh token
            response = self.session.post(f"{self.url}/api/token/refresh/",
                                         json={"refresh": token}, timeout=timeout)
            self._check(response, "token refresh")
            self.session.headers["Authorization"] = f"Bearer {response.json()['access']}"
        else:
            self.session.headers["Authorization"] = f"Token {token}"

    @staticmethod
    def _check(response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio {what}: HTTP {response.status_code} "
                                   f"{response.text[:300]}")

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout,
                                        **kwargs)
        self._check(response, what)
        return response.json() if response.content else None

    def create_project(self, title: str, label_config: str = LABEL_CONFIG) -> int:
        """A new project with the sentiment labeling config; its id."""
        body = {"title": title, "label_config": label_config}
        return int(self._call("POST", "/api/projects/", "create project", json=body)["id"])

    def import_tasks(self, project_id: int, tasks: list[dict]) -> int:
        """Import tasks (with their predictions) into a project; how many were added."""
        done = self._call("POST", f"/api/projects/{project_id}/import", "import tasks",
                          json=tasks)
        return int(done.get("task_count", len(tasks)))

    def task_ids(self, project_id: int) -> list[int]:
        """The ids of a project's tasks, in import order."""
        ids, page = [], 1
        while True:
            got = self._call("GET", "/api/tasks/", "list tasks",
                             params={"project": project_id, "page": page, "page_size": 100})
            tasks = got.get("tasks", []) if isinstance(got, dict) else got
            ids += [int(task["id"]) for task in tasks]
            if not tasks or (isinstance(got, dict) and len(ids) >= got.get("total", 0)):
                return sorted(ids)
            page += 1

    def annotate(self, task_id: int, label: str) -> int:
        """Annotate one task with a sentiment (tests and benchmarks stand in for annotators)."""
        body = {"result": _choice(label), "was_cancelled": False}
        return int(self._call("POST", f"/api/tasks/{task_id}/annotations/", "annotate",
                              json=body)["id"])

    def export(self, project_id: int) -> list[dict]:
        """The project's annotated tasks in Label Studio's JSON export format."""
        return self._call("GET", f"/api/projects/{project_id}/export", "export",
                          params={"exportType": "JSON"})
