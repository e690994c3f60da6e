"""The trigger: one run for two concurrent monitors (fcntl lock), cooldown, run-in-progress,
every decision recorded; the local launcher really starts `civicsense run`."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from civicsense.monitoring.trigger import (
    launch_cluster,
    launch_local,
    maybe_retrain,
    read_decisions,
    read_state,
    retrain_command,
    wait_for_local_run,
)
from civicsense.settings import Settings


def slow_launcher(settings: Settings) -> dict:
    """Stands for a pipeline launch that takes a while (inside the lock)."""
    with open(settings.home_dir / "launches.txt", "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(1.0)
    return {"mode": "test", "pid": None, "launched_by": os.getpid()}


def monitor_fires(home: str, barrier) -> None:
    settings = Settings(home=Path(home), retrain_cooldown_minutes=60)
    barrier.wait()
    maybe_retrain(settings, True, 0.8, "1", launcher=slow_launcher)


def test_two_concurrent_monitors_start_one_run(tmp_path):
    home = tmp_path / "home"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=monitor_fires, args=(str(home), barrier))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    settings = Settings(home=home, retrain_cooldown_minutes=60)
    assert len((home / "launches.txt").read_text().split()) == 1
    decisions = [d["decision"] for d in read_decisions(settings)]
    assert sorted(decisions) == ["checked", "checked", "drifted", "drifted", "skipped",
                                 "triggered"]
    skipped = next(d for d in read_decisions(settings) if d["decision"] == "skipped")
    assert skipped["reason"].startswith("cooldown")
    # One monitor every five minutes inside the cooldown: still that one run.
    assert maybe_retrain(settings, True, 0.9, "1", launcher=slow_launcher)[
        "decision"] == "skipped"
    assert len((home / "launches.txt").read_text().split()) == 1


def test_no_drift_is_checked_only_and_cooldown_expiry_allows_a_new_run(tmp_path):
    settings = Settings(home=tmp_path / "home", retrain_cooldown_minutes=0)
    assert maybe_retrain(settings, False, 0.1, "1", launcher=slow_launcher)["decision"] == \
        "checked"
    assert maybe_retrain(settings, True, 0.6, "1", launcher=slow_launcher)["decision"] == \
        "triggered"
    assert maybe_retrain(settings, True, 0.6, "1", launcher=slow_launcher)["decision"] == \
        "triggered"  # cooldown 0 and nothing running
    off = Settings(home=tmp_path / "home", retrain_on_drift=False)
    last = maybe_retrain(off, True, 0.6, "1", launcher=slow_launcher)
    assert last["decision"] == "skipped" and "retrain_on_drift" in last["reason"]
    assert [d["decision"] for d in read_decisions(settings)] == [
        "checked", "checked", "drifted", "triggered", "checked", "drifted", "triggered",
        "checked", "drifted", "skipped"]


def test_a_live_local_run_blocks_a_second_even_after_the_cooldown(tmp_path):
    settings = Settings(home=tmp_path / "home", retrain_cooldown_minutes=0)
    sleeper = __import__("subprocess").Popen(["sleep", "30"])
    try:
        maybe_retrain(settings, True, 0.7, "1",
                      launcher=lambda s: {"mode": "local", "pid": sleeper.pid})
        last = maybe_retrain(settings, True, 0.7, "1", launcher=slow_launcher)
        assert last["decision"] == "skipped" and "still running" in last["reason"]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert maybe_retrain(settings, True, 0.7, "1", launcher=slow_launcher)["decision"] == \
        "triggered"


def test_launch_failure_is_recorded_and_raised(tmp_path):
    settings = Settings(home=tmp_path / "home")

    def broken(_):
        raise ConnectionError("KFP unreachable")

    with pytest.raises(ConnectionError):
        maybe_retrain(settings, True, 0.7, "1", launcher=broken)
    last = read_decisions(settings)[-1]
    assert last["decision"] == "skipped" and "KFP unreachable" in last["reason"]
    assert read_state(settings) == {}  # no cooldown started by a failed launch


def test_the_local_launcher_starts_civicsense_run_detached(tmp_path):
    settings = Settings(home=tmp_path / "home", data=str(tmp_path / "no-such-data"))
    run = launch_local(settings)
    assert run["mode"] == "local" and run["pid"] > 0
    assert wait_for_local_run(run, timeout=120, poll=0.2) is None  # bad data: it failed
    log = Path(run["log"]).read_text()
    assert "no-such-data" in log and "error" in log


def test_retraining_takes_the_confirmed_labels_unless_turned_off(tmp_path):
    summary = tmp_path / "s.json"
    command = retrain_command(Settings(home=tmp_path / "home", data="d"), summary)
    assert command[-5:] == ["--home", str(tmp_path / "home"), "--summary-json", str(summary),
                            "--labels"]
    off = Settings(home=tmp_path / "home", data="d", retrain_with_labels=False)
    assert "--labels" not in retrain_command(off, summary)


def test_a_cluster_retraining_run_asks_ingest_for_the_confirmed_labels(kfp_api, tmp_path):
    host, calls = kfp_api
    (tmp_path / "data.csv").write_text("text,label\nok,positive\n")
    settings = Settings(home=tmp_path / "home", data=str(tmp_path / "data.csv"), kfp_host=host)
    run = launch_cluster(settings)
    assert run["mode"] == "kfp" and run["labels"] is True
    body = next(body for method, path, body in calls if method == "POST" and "/runs" in path)
    parameters = body["runtime_config"]["parameters"]
    assert parameters["confirmed_labels"] is True and parameters["label_sources"] == []
    tasks = body["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert not tasks["ingest-op"].get("cachingOptions", {}).get("enableCache")


def test_a_cluster_retraining_run_submits_the_shipped_yaml_from_a_read_only_package(
        kfp_api, tmp_path, monkeypatch):
    """As in the monitor's container: the `pipelines` package read-only, nothing compiled; the
    run carries the monitor's component image, and nothing is written into the package."""
    import shutil
    import stat
    import sys

    import kfp.compiler
    import yaml

    from civicsense.orchestration import compiled
    from civicsense.settings import PROJECT_ROOT

    host, calls = kfp_api
    package = tmp_path / "site" / "ro_pipelines"
    package.mkdir(parents=True)
    for name in ("__init__.py", compiled.TRAINING):
        shutil.copy2(PROJECT_ROOT / "pipelines" / name, package / name)
        (package / name).chmod(stat.S_IRUSR)
    package.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setattr(compiled, "PACKAGE", "ro_pipelines")
    monkeypatch.setattr(kfp.compiler.Compiler, "compile", lambda *a, **k: pytest.fail("compiled"))
    before = {p.name: p.stat().st_mtime_ns for p in (package, *package.iterdir())}
    (tmp_path / "data.csv").write_text("text,label\nok,positive\n")
    image = "civicsense-components:0.1.0-abc1234"
    settings = Settings(home=tmp_path / "home", data=str(tmp_path / "data.csv"), kfp_host=host,
                        component_image=image)
    try:
        decision = maybe_retrain(settings, True, 0.9, "1")
    finally:
        package.chmod(stat.S_IRWXU)
    assert decision["decision"] == "triggered" and decision["run"]["image"] == image
    assert {p.name: p.stat().st_mtime_ns for p in (package, *package.iterdir())} == before
    spec = next(body for method, path, body in calls
                if method == "POST" and "/runs" in path)["pipeline_spec"]["pipeline_spec"]
    shipped = next(yaml.safe_load_all((package / compiled.TRAINING).read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {image}
    # (the root DAG differs: the run turns the step cache off for the confirmed labels)
    assert spec["components"] == shipped["components"]
    assert spec["deploymentSpec"]["executors"].keys() == shipped["deploymentSpec"][
        "executors"].keys()
