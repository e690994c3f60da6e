"""CLI verbs for monitoring (`civicsense monitor`, `schedule create`, `replay`, `sink`): thin
shells over civicsense.monitoring.drift, civicsense.monitoring.trigger, civicsense.monitoring.sink.

`civicsense monitor` exit codes: 0 = no drift, 1 = drift detected (whether or not a run was
triggered: the decision is printed and logged), 2 = could not run (no champion, no reference,
too few records in the window, unreadable log, failed launch, bad option).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import DataOption, HomeOption, iso_time, setting_option
from civicsense.settings import get_settings

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_COULD_NOT_RUN = 0, 1, 2


def monitor_command(
    window_hours: float = setting_option("monitor_window_hours", "--window-hours",
                                         help="Monitor the last N hours of the inference log."),
    since: str = typer.Option(None, "--since", help="Window start (ISO, UTC); overrides "
                              "--window-hours.", show_default="now minus --window-hours"),
    until: str = typer.Option(None, "--until", help="Window end (ISO, UTC).",
                              show_default="now"),
    min_rows: int = setting_option("monitor_min_rows", "--min-rows",
                                   help="Fewest records worth a check."),
    data: str = DataOption,
    home: Path = HomeOption,
    trigger: bool = typer.Option(True, "--trigger/--no-trigger", help="Start a retraining run "
                                 "on drift (cooldown and lock apply)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a locally triggered run to end "
                              "and print its summary."),
) -> None:
    """Drift check of the inference log against the champion's reference (Evidently).

    Exit codes: 0 no drift, 1 drift, 2 could not run."""
    from civicsense.monitoring import drift as monitor
    from civicsense.monitoring import trigger as retrain

    settings = get_settings(monitor_window_hours=window_hours, monitor_min_rows=min_rows,
                            data=data, home=home, retrain_on_drift=None if trigger else False)
    start, end = iso_time(since, "--since"), iso_time(until, "--until")  # bad input: before the try
    try:
        outcome = monitor.run_monitor(settings, start, end)
    except monitor.MonitorError as error:
        retrain.record_decision(settings, "skipped", f"could not run: {error}")
        fail(str(error), EXIT_COULD_NOT_RUN)
    except Exception as error:  # noqa: BLE001 - unreadable log, registry down…: exit 2
        retrain.record_decision(settings, "skipped", f"could not run: {error!r}")
        fail(f"monitor failed: {type(error).__name__}: {error}", EXIT_COULD_NOT_RUN)
    result = outcome.result
    typer.echo(f"champion: {settings.model_name} v{outcome.champion.number} "
               f"(reference {result.n_reference} posts) vs {result.n_current} records")
    width = max(len(name) for name in result.columns)
    for name, column in sorted(result.columns.items(), key=lambda kv: not kv[1].drifted):
        flag = "DRIFT" if column.drifted else "ok"
        typer.echo(f"  {name:<{width}}  {column.score:10.4f}  {flag:<5}  {column.method} "
                   f"(threshold {column.threshold:g})")
    window = outcome.summary["window"]
    typer.echo(f"log: {window['lines']} lines, {window['records']} records in the window, "
               f"{monitor.describe_skipped(window['skipped_lines'])}")
    typer.echo(f"drift_detected: {str(result.drift_detected).lower()}")
    typer.echo(f"drift_share: {result.drift_share:.3f} ({result.drifted_columns}/"
               f"{len(result.columns)} columns; threshold {settings.drift_share})")
    typer.echo(f"report: {outcome.html}\nsummary: {outcome.summary_path}")
    try:
        decision = retrain.maybe_retrain(settings, result.drift_detected, result.drift_share,
                                         outcome.champion.number, report=outcome.summary_path)
    except Exception as error:  # noqa: BLE001 - recorded by maybe_retrain
        fail(f"drift detected but the retraining run could not start: {error}", EXIT_COULD_NOT_RUN)
    typer.echo(f"decision: {decision['decision']} ({decision['reason']})")
    run = decision.get("run") if decision["decision"] == "triggered" else None
    if run:
        typer.echo(f"run: {json.dumps(run)}")
        if wait and run.get("mode") == "local":
            summary = retrain.wait_for_local_run(run)
            typer.echo(f"run finished: {json.dumps(summary)}" if summary else
                       f"run failed: see {run['log']}")
    raise typer.Exit(EXIT_DRIFT if result.drift_detected else EXIT_NO_DRIFT)


def replay_command(
    source: list[Path] = typer.Argument(..., help="Texts to send: SemEval TSV or TweetEval "
                                        "*_text.txt files, or folders of them."),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="The model server."),
    limit: int = typer.Option(0, "--limit", help="Send at most N texts (0 = all)."),
    batch: int = typer.Option(32, "--batch", help="Texts per request."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed when --limit samples."),
) -> None:
    """Send texts through a running server as traffic (demos, benchmarks)."""
    from civicsense.monitoring.replay import ReplayError, load_texts, replay

    if batch < 1 or limit < 0:
        fail(f"--batch must be 1 or more and --limit 0 or more, not {batch} and {limit}")
    try:
        texts = load_texts(source, limit=limit, seed=seed)
        sent = replay(texts, url, get_settings().model_name, batch=batch)
    except ReplayError as error:
        fail(str(error))
    typer.echo(json.dumps(sent))


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sink_command(
    port: int = typer.Option(8090, "--port", help="HTTP port."),
    host: str = typer.Option("0.0.0.0", "--host", help="Bind address (all interfaces: the "
                             "cluster's logger posts to it)."),
    allow_unauthenticated: bool = typer.Option(
        False, "--allow-unauthenticated", help="Accept events without CIVICSENSE_SINK_TOKEN "
        "on a non-loopback address (anyone who reaches the sink can then write the log)."),
) -> None:
    """Receive KServe logger CloudEvents on POST /events into the inference log, and the
    model servers' forwarded feedback on POST /feedback into the feedback log.

    Events carry CIVICSENSE_SINK_TOKEN as `Authorization: Bearer` (never `?token=`), or come
    from an allowed InferenceService's logger (CIVICSENSE_SINK_LOGGER_SOURCES)."""
    import uvicorn

    from civicsense.monitoring.request_edge import proxy_options
    from civicsense.monitoring.sink import create_app

    settings = get_settings()
    if settings.sink_token is None and host not in LOOPBACK and not allow_unauthenticated:
        fail(f"no CIVICSENSE_SINK_TOKEN: refusing to accept unauthenticated events on {host} "
             "(set the token, bind --host 127.0.0.1, or pass --allow-unauthenticated)")
    # Slow or idle connections are closed: h11 reads headers and bodies with these limits.
    # Forwarded headers count only from CIVICSENSE_TRUSTED_PROXIES (uvicorn's default trusts
    # 127.0.0.1, so a proxy on the host would pass spoofed addresses on to the peer limit).
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                timeout_keep_alive=5, limit_concurrency=256, h11_max_incomplete_event_size=65536,
                **proxy_options(settings.trusted_proxies))


def register(app: typer.Typer) -> None:
    """Attach the monitoring verbs to the main CLI."""
    app.command("monitor")(monitor_command)
    app.command("replay")(replay_command)
    app.command("sink")(sink_command)
