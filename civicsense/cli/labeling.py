"""CLI verbs for the labeling queue (`civicsense label export | import | status`): thin shells
over civicsense.labeling.queue, civicsense.labeling.snapshots and civicsense.labeling.trust.

Exit codes: 0 done, 1 nothing to label (no task file written), 2 bad input (an option out of
range, a file that is not a Label Studio export, nothing usable in it) or an unreadable log.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import HomeOption, iso_time, setting_option
from civicsense.settings import get_settings

label_app = typer.Typer(help="The labeling queue: Label Studio tasks out, labelled snapshots in.",
                        no_args_is_help=True)


@label_app.command("export")
def export_command(
    budget: int = typer.Option(..., "--budget", help="Posts to pick from the payload "
                               "log (every post with feedback comes on top)."),
    strategy: str = typer.Option("uncertainty", "--strategy", help="uncertainty (smallest "
                                 "top-2 margin, spread over topics and days) or random."),
    seed: int = typer.Option(0, "--seed", help="Seed of ties and of the random strategy."),
    since: str = typer.Option(None, "--since", help="Window start (ISO, UTC).",
                              show_default="now minus the label window"),
    until: str = typer.Option(None, "--until", help="Window end (ISO, UTC).",
                              show_default="now"),
    window_hours: float = setting_option("label_window_hours", "--window-hours",
                                         help="Payload-log hours to pick from without --since."),
    out: Path = typer.Option(None, "--out", help="Task file to write (Label Studio JSON).",
                             show_default="home/labels/exports/tasks-TIME-STRATEGY.json"),
    home: Path = HomeOption,
) -> None:
    """Write Label Studio tasks: the budget's picks plus every post with feedback."""
    from civicsense.labeling.queue import STRATEGIES, NothingToLabel, export_tasks

    if strategy not in STRATEGIES:
        fail(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if budget < 0:
        fail(f"--budget must be 0 or more, not {budget}")
    if window_hours is not None and window_hours <= 0:
        fail(f"--window-hours must be more than 0, not {window_hours:g}")
    if out is not None and out.is_dir():
        fail(f"--out must name a file, not the directory {out}")
    settings = get_settings(home=home, label_window_hours=window_hours)
    start, end = iso_time(since, "--since"), iso_time(until, "--until")
    try:
        result = export_tasks(settings, budget, strategy, seed, start, end, out,
                              progress=typer.echo, allow_empty=False)
    except NothingToLabel as error:
        fail(f"{error}; no task file written", code=1)
    except Exception as error:  # noqa: BLE001 - unreadable log, bucket down…: one line, exit 2
        fail(f"export failed: {type(error).__name__}: {error}")
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.by_reason.items()))
    typer.echo(f"tasks: {len(result.tasks)} ({reasons or 'none'})\nwrote: {result.path}")


@label_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="Label Studio's JSON export of the project."),
    home: Path = HomeOption,
) -> None:
    """Read Label Studio's JSON export into a versioned labelled snapshot."""
    from civicsense.labeling.snapshots import LabelImportError, import_labels

    settings = get_settings(home=home)
    try:
        snapshot = import_labels(settings, file)
    except LabelImportError as error:
        fail(str(error))
    except OSError as error:
        fail(f"import failed: {type(error).__name__}: {error}")
    skipped = ", ".join(f"{n} {why}" for why, n in snapshot.skipped.items()) or "none"
    typer.echo(f"snapshot: {snapshot.data_version} ({snapshot.rows} posts; skipped: {skipped})"
               f"\nwrote: {snapshot.path}")


@label_app.command("status")
def status_command(
    min_clients: int = setting_option("feedback_min_clients", "--min-clients",
                                      help="Distinct agreeing credentials a consensus needs."),
    min_peers: int = setting_option("feedback_min_peers", "--min-peers",
                                    help="Distinct peers those credentials posted from."),
    min_days: int = setting_option("feedback_min_days", "--min-days",
                                   help="Distinct days their feedback spans."),
    home: Path = HomeOption,
) -> None:
    """Labelled snapshots, labels by class, feedback waiting for an annotator, and what a
    consensus would add to training (by default nothing: only annotators' labels train)."""
    import pandas as pd

    from civicsense.labeling.snapshots import (
        ANNOTATIONS,
        consensus_limit,
        labelled_keys,
        list_snapshots,
    )
    from civicsense.labeling.trust import TrustRule, consensus, credentialed
    from civicsense.monitoring.feedback_log import read_feedback

    for option, value in (("--min-clients", min_clients), ("--min-peers", min_peers),
                          ("--min-days", min_days)):
        if value is not None and value < 1:
            fail(f"{option} must be 1 or more, not {value}")
    settings = get_settings(home=home, feedback_min_clients=min_clients,
                            feedback_min_peers=min_peers, feedback_min_days=min_days)
    snapshots = list_snapshots(settings)
    typer.echo(f"snapshots: {len(snapshots)}")
    labels: Counter[str] = Counter()
    for snapshot in snapshots:
        typer.echo(f"  {snapshot.data_version}  {snapshot.kind:<18}  {snapshot.rows:>6} posts  "
                   f"{snapshot.imported_at}  {snapshot.source}")
        if snapshot.kind == ANNOTATIONS:
            labels.update(pd.read_parquet(snapshot.path, columns=["label"])["label"])
    labelled = labelled_keys(settings)
    typer.echo(f"annotated posts: {len(labelled)} "
               f"({', '.join(f'{n} {label}' for label, n in sorted(labels.items())) or 'none'})")
    try:
        feedback = read_feedback(settings.feedback_log, settings)
    except Exception as error:  # noqa: BLE001 - unreadable log, bucket down…: one line, exit 2
        fail(f"could not read the feedback log: {type(error).__name__}: {error}")
    posts = set(feedback["post_key"])
    verified = credentialed(feedback)
    rule = TrustRule.from_settings(settings)
    agreed = consensus(feedback, rule)
    typer.echo(f"feedback: {len(feedback)} records on {len(posts)} posts, "
               f"{len(verified)} with a credential from {verified['install'].nunique()} "
               f"installs; pending (not annotated): {len(posts - labelled)}")
    if settings.feedback_consensus_training:
        use = (f"on: at most {consensus_limit(settings)} reach training "
               f"({settings.feedback_consensus_max_share:g} of the annotated labels)")
    else:
        use = "off: only annotators' labels reach training"
    typer.echo(f"consensus ({rule.describe()}): {len(agreed)}; consensus training {use}")


def register(app: typer.Typer) -> None:
    """Attach `civicsense label …` to the main CLI."""
    app.add_typer(label_app, name="label")
