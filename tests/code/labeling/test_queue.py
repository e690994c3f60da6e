"""The labeling queue: uncertainty (smallest top-2 margin, spread over topics and days) or
random picks from the payload log, every post with feedback, nothing already labelled."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from labeling_support import NOW, feedback, serve

from civicsense import PROBABILITY_COLUMNS
from civicsense.labeling.queue import QUEUE_COLUMNS, export_tasks, select_for_labeling
from civicsense.labeling.snapshots import ANNOTATIONS, write_snapshot
from civicsense.monitoring.feedback_log import post_key
from civicsense.settings import Settings


def _log(rows: list[tuple[str, tuple[float, float, float], str]]) -> pd.DataFrame:
    """(text, probabilities, day) rows as a payload-log frame."""
    frame = pd.DataFrame([{"time": pd.Timestamp(day, tz="UTC"), "text": text, "label": "neutral",
                           "model_version": "7", **dict(zip(PROBABILITY_COLUMNS, p, strict=True))}
                          for text, p, day in rows])
    return frame


SURE, UNSURE, TORN = (0.9, 0.05, 0.05), (0.5, 0.3, 0.2), (0.4, 0.39, 0.21)


def test_uncertainty_takes_the_smallest_margins_first():
    log = _log([("a", SURE, "2026-12-01"), ("b", UNSURE, "2026-12-01"),
                ("c", TORN, "2026-12-01")])
    picked = select_for_labeling(log, 2, "uncertainty", 0, set())
    assert list(picked.columns) == QUEUE_COLUMNS
    assert picked["text"].tolist() == ["c", "b"]
    assert picked["margin"].round(2).tolist() == [0.01, 0.2]
    assert set(picked["reason"]) == {"uncertainty"}


def test_uncertainty_spreads_over_topics_and_days():
    log = _log([("plain torn 1", TORN, "2026-12-01"), ("plain torn 2", TORN, "2026-12-01"),
                ("the climate is fine", UNSURE, "2026-12-01"),
                ("plain unsure next day", UNSURE, "2026-12-02")])
    picked = select_for_labeling(log, 3, "uncertainty", 0, set())
    assert set(picked["topic"]) == {"none", "climate"}
    assert set(picked["day"]) == {"2026-12-01", "2026-12-02"}
    assert "the climate is fine" in picked["text"].tolist()


def test_posts_are_deduplicated_and_excluded_keys_never_offered():
    log = _log([("same", TORN, "2026-12-01"), ("same", TORN, "2026-12-02"),
                ("done", TORN, "2026-12-01"), ("other", SURE, "2026-12-01")])
    picked = select_for_labeling(log, 10, "uncertainty", 0, {post_key("done")})
    assert sorted(picked["text"]) == ["other", "same"]
    assert picked.set_index("text").loc["same", "day"] == "2026-12-02"  # its latest serving


def test_random_is_seeded():
    log = _log([(f"post {i}", SURE, "2026-12-01") for i in range(50)])
    first = select_for_labeling(log, 10, "random", 1, set())["text"].tolist()
    assert first == select_for_labeling(log, 10, "random", 1, set())["text"].tolist()
    assert first != select_for_labeling(log, 10, "random", 2, set())["text"].tolist()
    assert set(select_for_labeling(log, 10, "random", 1, set())["reason"]) == {"random"}


def test_bad_arguments_are_refused():
    log = _log([("a", SURE, "2026-12-01")])
    with pytest.raises(ValueError, match="strategy"):
        select_for_labeling(log, 1, "loudest", 0, set())
    with pytest.raises(ValueError, match="budget"):
        select_for_labeling(log, -1, "random", 0, set())
    assert select_for_labeling(log, 0, "random", 0, set()).empty


def test_export_writes_budget_picks_plus_every_feedback_post(civicsense_home, tmp_path):
    settings = civicsense_home
    texts = [f"served post {i}" for i in range(20)]
    serve(settings, texts, [(0.34 + i / 100, 0.33, 0.33 - i / 100) for i in range(20)])
    feedback(settings, "served post 19", "negative", "client-aaaa1")  # served and reported
    feedback(settings, "never served here", "positive", "client-bbbb2", n=5)
    write_snapshot(settings, pd.DataFrame({
        "post_id": [post_key("served post 0")], "created_at": [pd.Timestamp(NOW)],
        "text": ["served post 0"], "label": ["neutral"], "source": ["test"]}),
        ANNOTATIONS, "test")
    result = export_tasks(settings, 3, out=tmp_path / "tasks.json")
    assert result.path == tmp_path / "tasks.json"
    assert json.loads(result.path.read_text()) == result.tasks
    assert result.by_reason == {"feedback": 2, "uncertainty": 3}
    by_text = {t["data"]["text"]: t for t in result.tasks}
    assert set(by_text) == {"served post 19", "never served here", "served post 1",
                            "served post 2", "served post 3"}  # post 0 is labelled already
    reported = by_text["served post 19"]
    assert reported["data"]["reason"] == "feedback"
    assert reported["predictions"][0]["score"] == pytest.approx(0.53)  # from the payload log
    assert by_text["never served here"]["predictions"][0]["result"][0]["value"] == {
        "choices": ["positive"]}  # the model's label the reader disputed


def test_export_defaults_to_a_file_under_home_and_honours_the_window(civicsense_home):
    settings = civicsense_home
    serve(settings, ["old post"], [TORN], when=NOW - timedelta(days=20))
    serve(settings, ["new post"], [SURE])
    result = export_tasks(settings, 10, strategy="random", seed=3)
    assert result.path.parent == settings.home_dir / "labels" / "exports"
    assert [t["data"]["text"] for t in result.tasks] == ["new post"]
    wide = export_tasks(settings, 10, since=NOW - timedelta(days=40))
    assert sorted(t["data"]["text"] for t in wide.tasks) == ["new post", "old post"]


def test_feedback_posts_more_clients_reported_come_first(civicsense_home, tmp_path):
    settings = civicsense_home
    for i in range(5):  # one client reports five posts
        feedback(settings, f"flooded post {i}", "negative", "flooder-0123456789",
                 when=NOW - timedelta(minutes=40 - i))
    for client in ("client-aaaa1", "client-bbbb2"):
        feedback(settings, "widely disputed post", "negative", client)
    result = export_tasks(settings, 0, out=tmp_path / "t.json")
    assert result.by_reason == {"feedback": 6}
    assert [t["data"]["text"] for t in result.tasks][:2] == ["widely disputed post",
                                                             "flooded post 0"]


def test_export_sees_every_post_across_rotated_files_and_midnight(civicsense_home, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("CIVICSENSE_LOG_MAX_MEGABYTES", "0.002")  # ≈ 2 KB: a few records a file
    settings = Settings()
    midnight = NOW.replace(hour=0, minute=0, second=0)
    start = midnight - timedelta(minutes=10)
    served = [f"served post {i} on the pension reform" for i in range(80)]
    for i in range(0, len(served), 4):  # a batch a minute, ten minutes either side of midnight
        serve(settings, served[i:i + 4], [UNSURE] * 4, when=start + timedelta(minutes=i // 4))
    reported = [f"reported post {i}" for i in range(24)]
    for i, text in enumerate(reported):
        feedback(settings, text, "negative", f"client-{i:05d}",
                 when=midnight - timedelta(minutes=2) + timedelta(seconds=10 * i))
    for log in (settings.inference_log, settings.feedback_log):
        files = sorted(Path(log).glob("date=*/*.jsonl"))
        assert len({path.parent for path in files}) == 2 and len(files) >= 4, files
    result = export_tasks(settings, 1000, since=start, until=midnight + timedelta(minutes=10),
                          out=tmp_path / "tasks.json")
    texts = [task["data"]["text"] for task in result.tasks]
    assert result.by_reason == {"feedback": 24, "uncertainty": 80}
    assert sorted(texts) == sorted(served + reported)  # every post, once
