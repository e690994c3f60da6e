"""The retraining trigger: drift → one run of the training pipeline, under a lock and a cooldown.

Idempotent by construction: the decision is taken under an exclusive `fcntl` lock on
`<home>/monitor/trigger.lock`, against a state file recording the last triggered run. Within
the cooldown, or while the last local run is still alive, the answer is "skipped", so two
monitors firing together, or one firing every five minutes, start one run. Every decision is
appended to `<home>/monitor/decisions.jsonl`:

    checked   the drift check ran (drift_share, champion version)
    drifted   it found dataset drift
    triggered a run was started (local pid + log, or the KFP run id)
    skipped   drift, but no run: cooldown / run in progress / trigger disabled (reason given)

Locally the run is `civicsense run` in a detached subprocess (the KFP local runner); with
`kfp_host` set it is a run on Kubeflow Pipelines through kfp.Client of the compiled pipeline the
package ships, its steps running `component_image` (a copy in a temporary directory when that
differs from the shipped image): nothing is compiled or written into the package, which lies on
the monitor's read-only root filesystem.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from civicsense.orchestration.runner import submit
from civicsense.settings import Settings
from civicsense.training.params import PipelineParams

Launcher = Callable[[Settings], dict]
LOCK_FILE, STATE_FILE, DECISIONS_FILE = "trigger.lock", "trigger-state.json", "decisions.jsonl"


class TriggerError(RuntimeError):
    """The trigger could not take a decision (lock not acquired in time)."""


# ---------------------------------------------------------------- decisions log


def record_decision(settings: Settings, decision: str, reason: str, **details: object) -> dict:
    """Append one decision (one JSON line, one write: concurrent appends do not interleave)."""
    entry = {"time": datetime.now(UTC).isoformat(), "decision": decision, "reason": reason,
             "pid": os.getpid(), **details}
    settings.monitor_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=str) + "\n").encode()
    fd = os.open(settings.monitor_dir / DECISIONS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return entry


def read_decisions(settings: Settings) -> list[dict]:
    path = settings.monitor_dir / DECISIONS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- lock and state


@contextmanager
def trigger_lock(settings: Settings, timeout: float = 60.0) -> Iterator[None]:
    """Exclusive lock across processes on this host/PVC (fcntl.flock), waiting up to timeout."""
    settings.monitor_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.monitor_dir / LOCK_FILE, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TriggerError(f"trigger lock busy for {timeout:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class TriggerStateError(TriggerError):
    """The trigger state file exists but cannot be trusted: no run may start on it."""


def read_state(settings: Settings) -> dict:
    """The last triggered run ({} before the first). A state file that is unreadable, not a
    JSON object, or whose `triggered_at` is not an ISO time raises TriggerStateError: a
    forgotten cooldown would start a second run, so a corrupt state must stop the trigger."""
    path = settings.monitor_dir / STATE_FILE
    try:
        state = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise TriggerStateError(f"{path} is unreadable ({type(error).__name__}); no run "
                                "started: fix or remove it once no retraining run is "
                                "going on") from None
    if not _valid_state(state):
        raise TriggerStateError(f"{path} does not hold a valid trigger state; no run started: "
                                "fix or remove it once no retraining run is going on")
    return state


def _valid_state(state: object) -> bool:
    """A JSON object whose `triggered_at` is an aware ISO time and `run.pid` an int, if set."""
    if not isinstance(state, dict) or not isinstance(state.get("run", {}), dict):
        return False
    pid, triggered = state.get("run", {}).get("pid"), state.get("triggered_at")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        return False
    try:
        return triggered is None or datetime.fromisoformat(triggered).tzinfo is not None
    except (TypeError, ValueError):
        return False


def _write_state(settings: Settings, state: dict) -> None:
    path = settings.monitor_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(path)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    try:  # a finished child of ours is a zombie until reaped: not alive
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status != "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- launchers


def retrain_command(settings: Settings, summary: Path) -> list[str]:
    """The local retraining command: `civicsense run` on the configured data, plus `--labels`
    (every confirmed labelled snapshot) unless `retrain_with_labels` is off."""
    command = [sys.executable, "-m", "civicsense.cli", "run", "--data", settings.data,
               "--home", str(settings.home_dir), "--summary-json", str(summary)]
    return command + (["--labels"] if settings.retrain_with_labels else [])


def launch_local(settings: Settings) -> dict:
    """`civicsense run` on the configured data source (with `--labels`, the confirmed labelled
    snapshots too, unless `retrain_with_labels` is off), detached (own session), logging to
    <home>/monitor/runs/<stamp>.log and writing its summary to <stamp>.json."""
    runs = settings.monitor_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path, summary = runs / f"retrain-{stamp}.log", runs / f"retrain-{stamp}.json"
    env = {**os.environ, "CIVICSENSE_HOME": str(settings.home_dir),
           "CIVICSENSE_DATA": settings.data, "MLFLOW_TRACKING_URI": settings.tracking_uri}
    with open(log_path, "ab") as out:
        process = subprocess.Popen(retrain_command(settings, summary), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    return {"mode": "local", "pid": process.pid, "log": str(log_path),
            "summary_json": str(summary), "data": settings.data,
            "labels": settings.retrain_with_labels}


def launch_cluster(settings: Settings) -> dict:
    """A run of the shipped compiled pipeline on Kubeflow Pipelines (kfp.Client), every step
    in `component_image`; with `retrain_with_labels` its ingest step adds the confirmed
    labelled snapshots found on the pipeline's state volume (which this monitor cannot see),
    without the step cache."""
    assert settings.kfp_host
    run_id = submit(settings.kfp_host, settings, PipelineParams(), settings.experiment,
                    confirmed_labels=settings.retrain_with_labels)
    return {"mode": "kfp", "host": settings.kfp_host, "run_id": run_id, "data": settings.data,
            "labels": settings.retrain_with_labels, "image": settings.component_image}


def default_launcher(settings: Settings) -> Launcher:
    return launch_cluster if settings.kfp_host else launch_local


# ---------------------------------------------------------------- the trigger


def maybe_retrain(settings: Settings, drift_detected: bool, drift_share: float,
                  champion_version: str | None = None, launcher: Launcher | None = None,
                  report: str | None = None) -> dict:
    """Record the check; on drift start one retraining run unless cooldown/in-progress/disabled.
    Returns the last decision recorded."""
    details = {"drift_share": round(drift_share, 4), "champion_version": champion_version,
               "report": report}
    decision = record_decision(settings, "checked", "drift check ran", **details)
    if not drift_detected:
        return decision
    record_decision(settings, "drifted", "share of drifted columns reached "
                    f"{settings.drift_share}", **details)
    if not settings.retrain_on_drift:
        return record_decision(settings, "skipped", "retrain_on_drift is off", **details)
    launcher = launcher or default_launcher(settings)
    with trigger_lock(settings):
        try:
            state = read_state(settings)
        except TriggerStateError as error:  # fail safe: a corrupt state starts no run
            record_decision(settings, "skipped", str(error), **details)
            raise
        now = datetime.now(UTC)
        last = state.get("triggered_at")
        if last:
            next_allowed = datetime.fromisoformat(last) + timedelta(
                minutes=settings.retrain_cooldown_minutes)
            if _alive(state.get("run", {}).get("pid")):
                return record_decision(settings, "skipped", "the run triggered at "
                                       f"{last} is still running (pid {state['run']['pid']})",
                                       run=state.get("run"), **details)
            if now < next_allowed:
                return record_decision(settings, "skipped", f"cooldown: a run was triggered "
                                       f"at {last}; next allowed after "
                                       f"{next_allowed.isoformat()}", run=state.get("run"),
                                       **details)
        try:
            run = launcher(settings)
        except Exception as error:  # noqa: BLE001 - recorded; the monitor exits 2 on it
            record_decision(settings, "skipped", f"launch failed: {type(error).__name__}: "
                            f"{error}", **details)
            raise
        _write_state(settings, {"triggered_at": now.isoformat(), "run": run})
        return record_decision(settings, "triggered", f"drift_share {drift_share:.3f} >= "
                               f"{settings.drift_share}", run=run, **details)


def wait_for_local_run(run: dict, timeout: float = 1800.0, poll: float = 2.0) -> dict | None:
    """Block until a locally triggered run ends; its summary (None if it failed)."""
    deadline = time.monotonic() + timeout
    pid = run.get("pid")
    while _alive(pid) and time.monotonic() < deadline:
        with suppress(ChildProcessError, OSError):  # reap it if it is our child
            os.waitpid(int(pid), os.WNOHANG)
        time.sleep(poll)
    path = Path(run["summary_json"])
    return json.loads(path.read_text()) if path.exists() else None
