"""The drift job on small real samples, against the real champion of the session's pipeline run
(trained_home): its reference from MLflow, traffic predicted by the real model server class
(whose payload log writes the records), Evidently 0.7 for the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.monitoring.drift import (
    MONITORED_COLUMNS,
    detect_drift,
    load_reference,
    monitor_frame,
)
from civicsense.monitoring.inference_log import get_logger, read_log
from civicsense.monitoring.replay import load_posts
from civicsense.monitoring.trigger import read_decisions
from civicsense.settings import Settings
from tests_support import ROOT, run_coroutine

STANCE = ROOT.parent / "shared" / "data" / "tweeteval-stance"
ROWS = 300


@pytest.fixture
def monitored(trained_home, tmp_path, monkeypatch):
    """Settings on a fresh home whose registry is the trained one (its tracking URI)."""
    trained, _ = trained_home
    env = {"CIVICSENSE_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI":
           trained.tracking_uri, "CIVICSENSE_MONITOR_MAX_ROWS": str(ROWS),
           "CIVICSENSE_MONITOR_MIN_ROWS": "100", "CIVICSENSE_RETRAIN_ON_DRIFT": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_reference_is_the_champions_validation_with_predictions(monitored):
    reference = load_reference(monitored)
    assert {"post_id", "created_at", "text", "true_label", "label", "p_negative", "p_neutral",
            "p_positive"} <= set(reference.columns)
    frame = monitor_frame(reference.head(20))
    assert list(frame.columns) == list(MONITORED_COLUMNS)
    assert np.allclose(frame["confidence"],
                       reference.head(20)[["p_negative", "p_neutral", "p_positive"]].max(axis=1))


def test_no_drift_between_disjoint_halves_of_the_champions_period(monitored):
    reference = load_reference(monitored)
    order = np.random.default_rng(0).permutation(len(reference))
    half_a, half_b = reference.iloc[order[::2]], reference.iloc[order[1::2]]
    result = detect_drift(half_a, half_b, monitored)
    assert not result.drift_detected and result.drift_share < 0.5
    assert set(result.columns) == set(MONITORED_COLUMNS)
    assert result.columns["text"].method.lower().startswith("percentile text content")


def test_topic_shift_served_logged_and_monitored_is_drift(monitored):
    if not STANCE.is_dir():
        pytest.skip(f"absent: {STANCE}")
    from civicsense.serving.predictor import SentimentKServeModel

    model = SentimentKServeModel("civicsense-sentiment", monitored.model_uri, monitored)
    model.load()
    texts = load_posts([STANCE]).sample(ROWS, random_state=0)["text"].tolist()
    for start in range(0, len(texts), 50):
        reply = run_coroutine(model.predict({"instances": texts[start:start + 50]}))
        assert len(reply["predictions"]) == len(texts[start:start + 50])
    logger = get_logger(monitored)
    assert logger.flush(60) and logger.stats.failed == 0
    logged = read_log(monitored.inference_log, monitored)
    assert len(logged) == ROWS and set(logged["model_version"]) == {model.loaded.version_tag}

    day = next(Path(monitored.inference_log).glob("date=*"))  # damage beside the records
    (day / "damaged.jsonl").write_bytes(b'{"text": "caf\xe9"}\n{"time": "soon"}\n')
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 1, result.output
    assert "drift_detected: true" in result.output and "drift_share:" in result.output
    assert "skipped 2 invalid lines (invalid_utf8 1, missing_fields 1)" in result.output
    summary = json.loads((Path(monitored.reports) / "latest.json").read_text())
    assert summary["drift_detected"] and summary["window"]["records"] == ROWS
    assert summary["window"]["skipped_lines"] == {"invalid_utf8": 1, "missing_fields": 1}
    assert summary["columns"]["text"]["drifted"]
    assert Path(summary["html"]).stat().st_size > 100_000  # the self-contained Evidently page
    decisions = [d["decision"] for d in read_decisions(monitored)]
    assert decisions == ["checked", "drifted", "skipped"]  # retrain_on_drift off here


def test_could_not_run_is_exit_2_and_recorded(monitored):
    result = CliRunner().invoke(app, ["monitor"])  # an empty inference log
    assert result.exit_code == 2 and "0 inference records" in result.output
    assert read_decisions(monitored)[-1]["reason"].startswith("could not run")
    before = len(read_decisions(monitored))
    result = CliRunner().invoke(app, ["monitor", "--since", "yesterday"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [  # one line, not "monitor failed: Exit: 2"
        "error: --since must be an ISO date/time such as 2026-11-23T18:00, not 'yesterday'"]
    assert len(read_decisions(monitored)) == before  # bad input is no drift-check outcome


def test_a_window_mostly_invalid_is_exit_2(monitored):
    from civicsense.monitoring.inference_log import make_records, write_records

    texts = [f"post number {i}" for i in range(120)]
    records = make_records(texts, ["neutral"] * 120, [[0.2, 0.6, 0.2]] * 120, "1+a")
    write_records(records, monitored.inference_log, monitored, writer="good")
    day = next(Path(monitored.inference_log).glob("date=*"))
    (day / "damaged.jsonl").write_bytes(b"{not json\n" * 200)
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 2, result.output
    assert "only 38% of the window's 320 log lines are valid records" in result.output
    assert "skipped 200 invalid lines (not_json 200)" in result.output
