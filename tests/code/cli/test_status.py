"""`civicsense status`: graceful on an empty home, and true on a real MLflow registry, a real
decisions log and a real (e2e) model server."""

import os
import sys
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from civicsense.cli import status
from civicsense.cli.app import app
from civicsense.monitoring.trigger import record_decision
from civicsense.settings import Settings
from tests_support import (
    free_port,
    register_champion_and_challenger,
    start_server,
    stop_server,
)

runner = CliRunner()


def test_empty_home_is_a_clear_screen_exit_0_and_creates_no_store(tmp_path):
    home = tmp_path / "empty"
    result = runner.invoke(app, ["status", "--home", str(home), "--port", str(free_port())],
                           env={"MLFLOW_TRACKING_URI": ""})
    assert result.exit_code == 0, result.output
    assert "no model registered yet" in result.output and "make run" in result.output
    assert "no drift check yet" in result.output
    assert "no retraining run triggered yet" in result.output
    assert "no answer" in result.output
    assert "images" in result.output
    assert not (home / "mlflow.db").exists()
    assert len(result.output.splitlines()) <= 40


def test_champion_challenger_and_the_last_drift_decision(civicsense_home):
    settings = civicsense_home
    register_champion_and_challenger(settings)
    record_decision(settings, "checked", "drift check ran", drift_share=0.32,
                    champion_version="1", report="/r/drift.json")
    record_decision(settings, "drifted", "share of drifted columns reached 0.25")
    record_decision(settings, "skipped", "cooldown: a run was triggered at …")

    text = "\n".join(status.render(settings.model_copy(update={"serve_port": free_port()})))
    assert "champion   v1" in text and "macro_recall 0.6100" in text
    assert "challenger v2" in text and "macro_recall 0.6400" in text
    assert "data sha256:1" in text and "data sha256:2" in text
    assert "trained on" not in text  # one data version: nothing more to say

    from civicsense.training.registry import registry_client
    registry_client(settings).set_model_version_tag(settings.model_name, "2", "data_versions",
                                                    "sha256:base,sha256:labels")
    text = "\n".join(status.render(settings.model_copy(update={"serve_port": free_port()})))
    assert "trained on sha256:base, sha256:labels" in text  # run --labels: every version
    assert "drift share 0.32" in text and "champion v1" in text
    assert "decision   skipped (cooldown" in text


def test_no_drift_check_outcome():
    check = {"decision": "checked", "reason": "drift check ran", "time": "t"}
    assert status.outcome([check]) == ("no drift", "drift check ran")


def test_age_and_image_grouping():
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert status.age(now - timedelta(minutes=3), now) == "3 min ago"
    assert status.age(now - timedelta(hours=5), now) == "5 h ago"
    assert status.age(None, now) == "?"
    grouped = status.newest_per_repository(["civicsense-serving:b 1GB 1 min", "civicsense-"
                                            "serving:a 1GB 1 h", "civicsense-base:x 2MB 2 h"])
    assert grouped == ["civicsense-serving:b 1GB 1 min (+1 older tags)",
                       "civicsense-base:x 2MB 2 h"]


def test_status_names_the_version_the_real_server_serves(trained_home, tmp_path):
    settings, summary = trained_home
    port = free_port()
    env = {**os.environ, "CIVICSENSE_HOME": str(settings.home_dir)}
    process, _ = start_server([sys.executable, "-m", "civicsense.cli", "serve", "--port",
                               str(port)], port, env, tmp_path / "server.log", timeout=180)
    try:
        text = "\n".join(status.render(Settings(home=settings.home_dir, serve_port=port)))
    finally:
        stop_server(process)
    assert f"127.0.0.1:{port} serves {summary['version']}+{summary['run_id']}" in text
    assert f"champion   v{summary['version']}" in text
