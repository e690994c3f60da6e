"""`civicsense status`: the system at a glance — champion and challenger, the last drift check and
retraining run, the local server, the built images — gathered by plain functions, one screen.

Exit codes: 0 (whatever the state, also an empty home: the screen says what is missing), 2 for a
bad option."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import typer

from civicsense.cli.options import HomeOption, setting_option
from civicsense.settings import Settings, get_settings

METRICS = ("val_macro_recall", "val_macro_f1", "val_accuracy")
T = TypeVar("T")


@dataclass
class ModelLine:
    alias: str
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    data_version: str | None = None
    created: datetime | None = None
    data_versions: str | None = None  # every version trained on (base, labelled snapshots)


def age(when: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', '2 h ago', '4 d ago' (or '?')."""
    if when is None:
        return "?"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{max(0, int(seconds))} s ago"


def local_store_missing(settings: Settings) -> Path | None:
    """The SQLite file of the default local MLflow store when it does not exist yet (asking
    MLflow would create an empty one), else None."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            return path
    return None


def registered_models(settings: Settings) -> list[ModelLine]:
    """The champion and the challenger (version None when the alias is unset)."""
    from civicsense.training.registry import CHALLENGER, CHAMPION, find_version, registry_client

    client = registry_client(settings)
    lines = []
    for alias in (CHAMPION, CHALLENGER):
        found = find_version(client, settings.model_name, alias)
        line = ModelLine(alias)
        if found is not None:
            version = client.get_model_version(settings.model_name, found.number)
            run = client.get_run(version.run_id)
            line.version = str(version.version)
            line.metrics = {k: run.data.metrics[k] for k in METRICS if k in run.data.metrics}
            line.data_version = version.tags.get("data_version")
            line.data_versions = version.tags.get("data_versions")
            line.created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        lines.append(line)
    return lines


def last_drift_check(settings: Settings) -> dict | None:
    """The last drift check: its time, share, champion, and the decision taken after it."""
    from civicsense.monitoring.trigger import read_decisions

    decisions = read_decisions(settings)
    checks = [i for i, d in enumerate(decisions) if d["decision"] == "checked"]
    skipped = [d for d in decisions if d["decision"] == "skipped"]
    if not checks:
        return skipped[-1] if skipped else None
    check = decisions[checks[-1]]
    decision, reason = outcome(decisions[checks[-1]:])
    return {**check, "outcome": decision, "outcome_reason": reason}


def outcome(after_check: list[dict]) -> tuple[str, str]:
    """What came of a drift check, from the decisions recorded from it on: the trigger's last
    word (triggered / skipped, with its reason), else drift or no drift."""
    final = next((d for d in reversed(after_check) if d["decision"] in {"triggered", "skipped"}),
                 None)
    if final:
        return final["decision"], final["reason"]
    drifted = next((d for d in after_check if d["decision"] == "drifted"), None)
    return ("drift", drifted["reason"]) if drifted else ("no drift", after_check[0]["reason"])


def last_retraining(settings: Settings) -> dict | None:
    """The last triggered retraining run, with its summary once it has finished."""
    from civicsense.monitoring.trigger import read_state

    state = read_state(settings)
    if not state.get("triggered_at"):
        return None
    run = state.get("run", {})
    summary_path = Path(run["summary_json"]) if run.get("summary_json") else None
    summary = (json.loads(summary_path.read_text()) if summary_path and summary_path.exists()
               else None)
    running = run.get("mode") == "local" and bool(run.get("pid")) and Path(
        f"/proc/{run['pid']}").exists()
    return {"triggered_at": state["triggered_at"], "run": run, "summary": summary,
            "running": running}


def server_version(settings: Settings, timeout: float = 1.0) -> str | None:
    """The model version the server on 127.0.0.1:<serve_port> says it serves (None: no answer)."""
    url = f"http://127.0.0.1:{settings.serve_port}/v2/models/{settings.model_name}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            metadata = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return ", ".join(metadata.get("versions") or ["unknown version"])


def built_images(timeout: float = 10.0) -> list[str] | None:
    """`civicsense-*` images of the local Docker engine, newest first, one line per repository
    (None: no client or no engine)."""
    if shutil.which("docker") is None:
        return None
    try:
        done = subprocess.run(["docker", "images", "civicsense-*", "--format",
                               "{{.Repository}}:{{.Tag}} {{.Size}} {{.CreatedSince}}"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return newest_per_repository(done.stdout.splitlines())


def newest_per_repository(lines: list[str]) -> list[str]:
    """'repo:tag size age' lines (newest first, as docker lists them) → the newest tag of each
    repository, with how many older tags it has."""
    newest: dict[str, str] = {}
    counts: dict[str, int] = {}
    for line in filter(str.strip, lines):
        repository = line.split(":", 1)[0]
        newest.setdefault(repository, line)
        counts[repository] = counts.get(repository, 0) + 1
    return [newest[r] + (f" (+{counts[r] - 1} older tags)" if counts[r] > 1 else "")
            for r in newest]


def _section(title: str, found: T | None, absent: str,
             describe: Callable[[T], list[str]]) -> list[str]:
    """A titled block of the screen: what `describe` says of what was found, or `absent`."""
    return [f"\n{title}", *([f"  {absent}"] if found is None else describe(found))]


def _model_lines(models: list[ModelLine], now: datetime | None) -> list[str]:
    lines = []
    for model in models:
        if model.version is None:
            lines.append(f"  {model.alias:<10} none")
            continue
        metrics = ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in model.metrics.items())
        lines.append(f"  {model.alias:<10} v{model.version:<4} {metrics}")
        lines.append(f"  {'':<10} data {model.data_version or '?'}, registered "
                     f"{age(model.created, now)}")
        if model.data_versions and "," in model.data_versions:  # base + new labels
            lines.append(f"  {'':<10} trained on {model.data_versions.replace(',', ', ')}")
    return lines


def _drift_lines(check: dict, now: datetime | None) -> list[str]:
    when = age(datetime.fromisoformat(check["time"]), now)
    share = check.get("drift_share")
    lines = [f"  last check {when}: champion v{check.get('champion_version') or '?'}, "
             f"drift share {share if share is not None else '?'}",
             f"  decision   {check.get('outcome', check['decision'])} "
             f"({check.get('outcome_reason', check['reason'])})"]
    if check.get("report"):
        lines.append(f"  report     {check['report']}")
    return lines


def _retraining_lines(retraining: dict, now: datetime | None) -> list[str]:
    run, summary = retraining["run"], retraining["summary"]
    where = run.get("log") or run.get("run_id") or run.get("host", "?")
    state = ("running" if retraining["running"] else
             f"registered v{summary['version']} → {summary['alias'] or 'no alias'}"
             if summary else "no summary (failed or on the cluster)")
    return [f"  triggered {age(datetime.fromisoformat(retraining['triggered_at']), now)}"
            f" ({run.get('mode', '?')}): {state}", f"  {where}"]


def render(settings: Settings, now: datetime | None = None) -> list[str]:
    """The status screen, line by line."""
    lines = [f"CivicSense status · home {settings.home_dir}", f"tracking {settings.tracking_uri}"]
    missing = local_store_missing(settings)
    lines += _section(f"model {settings.model_name}",
                      None if missing else registered_models(settings),
                      f"no model registered yet (no MLflow store at {missing}): run `make run`",
                      lambda models: _model_lines(models, now))
    lines += _section("drift", last_drift_check(settings),
                      "no drift check yet (`make monitor` once the server has traffic)",
                      lambda check: _drift_lines(check, now))
    lines += _section("retraining", last_retraining(settings), "no retraining run triggered yet",
                      lambda retraining: _retraining_lines(retraining, now))
    served = server_version(settings)
    lines += ["\nserver", f"  127.0.0.1:{settings.serve_port} "
              + (f"serves {served}" if served else "no answer (`make serve`)")]
    lines += _section("images", built_images(), "no docker engine",
                      lambda images: [f"  {image}"
                                      for image in images or ["no civicsense-* image built"]])
    return lines


def status_command(
    home: Path = HomeOption,
    port: int = setting_option("serve_port", "--port", help="Port of the local model server to "
                               "ask which version it serves."),
) -> None:
    """The system at a glance: champion and challenger, last drift check and retraining run,
    the local server, the built images. Exit 0, also on an empty home."""
    settings = get_settings(home=home, serve_port=port)
    for line in render(settings):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Attach `civicsense status` to the main CLI."""
    app.command("status")(status_command)
