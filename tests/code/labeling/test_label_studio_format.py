"""Label Studio's formats: a queue row as an import task, an export back to rows (cancelled,
empty and out-of-set annotations skipped and counted), bad files refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from civicsense.labeling.label_studio import (
    EXPORT_COLUMNS,
    LABEL_CONFIG,
    LabelStudioError,
    parse_export,
    parse_tasks,
    to_task,
)
from civicsense.monitoring.feedback_log import post_key

ROW = {"text": "vote for the reform", "post_key": post_key("vote for the reform"),
       "model_version": "7", "topic": "elections", "day": "2026-12-01", "reason": "uncertainty",
       "label": "neutral", "score": 0.41}


def _annotation(label=None, cancelled=False, when="2026-12-02T10:00:00.123456Z", who=1):
    result = [] if label is None else [{"from_name": "sentiment", "to_name": "text",
                                        "type": "choices", "value": {"choices": [label]}}]
    return {"id": 1, "completed_by": who, "result": result, "was_cancelled": cancelled,
            "created_at": when, "updated_at": when}


def test_the_config_names_the_text_and_the_three_choices():
    assert '<Text name="text" value="$text"/>' in LABEL_CONFIG
    assert 'name="sentiment" toName="text"' in LABEL_CONFIG
    assert all(f'<Choice value="{c}"/>' in LABEL_CONFIG for c in ("negative", "neutral",
                                                                   "positive"))


def test_a_row_becomes_a_task_with_the_prediction_as_pre_annotation():
    task = to_task(ROW)
    assert task["data"] == {k: ROW[k] for k in ("text", "post_key", "model_version", "topic",
                                                "day", "reason")}
    assert task["predictions"] == [{"model_version": "7", "score": 0.41, "result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices",
         "value": {"choices": ["neutral"]}}]}]


def test_a_task_without_a_score_or_key_still_imports():
    task = to_task({**ROW, "score": None, "post_key": None})
    assert task["data"]["post_key"] == post_key(ROW["text"])
    assert "score" not in task["predictions"][0]
    assert "predictions" not in to_task({**ROW, "label": None})


def test_an_export_becomes_one_row_per_usable_annotation():
    tasks = [
        {"id": 1, "data": {"text": "a"}, "annotations": [_annotation("negative", who=3)]},
        {"id": 2, "data": {"text": "b"}, "annotations": [_annotation("positive", cancelled=True),
                                                          _annotation(None),
                                                          _annotation("furious")]},
        {"id": 3, "data": {"text": "c"}, "annotations": []},
        {"id": 4, "data": {"text": ""}, "annotations": [_annotation("neutral")]},
        "junk",
    ]
    frame = parse_tasks(tasks)
    assert list(frame.columns) == EXPORT_COLUMNS
    assert frame[["post_key", "text", "label", "annotator"]].values.tolist() == [
        [post_key("a"), "a", "negative", "3"]]
    assert str(frame["annotated_at"].dt.tz) == "UTC"
    assert frame.attrs["skipped"] == {"cancelled": 1, "empty": 1, "unknown_label": 1,
                                      "not_annotated": 1, "no_text": 1, "not_a_task": 1}


def test_bad_export_files_are_refused(tmp_path):
    with pytest.raises(LabelStudioError, match="no such"):
        parse_export(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LabelStudioError, match="not JSON"):
        parse_export(tmp_path / "bad.json")
    (tmp_path / "dict.json").write_text(json.dumps({"data": {}}))
    with pytest.raises(LabelStudioError, match="list of tasks"):
        parse_export(tmp_path / "dict.json")


def test_malformed_results_and_times_are_skipped_or_undated_not_a_crash():
    """Hand-edited or foreign exports: a `value` that is not an object is an empty annotation;
    a time that is not ISO (or not a string) leaves the annotation undated (NaT)."""
    good = _annotation("positive")
    tasks = [{"data": {"text": "a"}, "annotations": [
                 {**good, "result": [{"from_name": "sentiment", "value": "negative"}]},
                 {**good, "result": "junk"}]},
             {"data": {"text": "b"}, "annotations": [{**good, "created_at": "yesterday",
                                                     "updated_at": None}]},
             {"data": {"text": "c"}, "annotations": [{**good, "updated_at": 12345}]},
             {"data": {"text": "d"}, "annotations": [{**good, "updated_at": "2026-12-02T10:00"}]}]
    frame = parse_tasks(tasks)
    assert frame.attrs["skipped"] == {"empty": 2}
    assert frame["text"].tolist() == ["b", "c", "d"]
    assert frame["annotated_at"].isna().tolist() == [True, True, False]
    assert frame["annotated_at"].iloc[2] == pd.Timestamp("2026-12-02T10:00", tz="UTC")
