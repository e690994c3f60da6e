"""The labeling queue: which served posts an annotator should label next, written as Label
Studio tasks.

`export_tasks` takes N posts from the payload log (by uncertainty: the smallest margin between
the model's top two probabilities, spread across reform topics and days; or at random, the
baseline) plus EVERY post with reader feedback (feedback is never trusted blindly: an annotator
confirms it, see civicsense.labeling.trust), never a post already in a labelled snapshot. Posts
are keyed by `post_key` (the hash of the text), so a post served many times is one task.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from civicsense import PROBABILITY_COLUMNS
from civicsense.labeling.label_studio import to_task
from civicsense.labeling.snapshots import labelled_keys, labels_root
from civicsense.labeling.topics import primary_topic
from civicsense.monitoring.feedback_log import post_key, read_feedback
from civicsense.monitoring.inference_log import read_log
from civicsense.settings import Settings

STRATEGIES = ("uncertainty", "random")
QUEUE_COLUMNS = ["post_key", "time", "day", "topic", "text", "model_version", "label", "score",
                 "margin", "reason"]


class NothingToLabel(ValueError):
    """An export that would write no task (allow_empty=False): nothing served in the window
    that is not labelled yet, and no feedback."""


@dataclass(frozen=True)
class ExportResult:
    """The task file written, its tasks (Label Studio's import format) and their count by
    reason ("uncertainty" or "random" for the budget's picks, "feedback")."""

    path: Path
    tasks: list[dict]
    by_reason: dict[str, int]


def _candidates(log: pd.DataFrame, exclude_keys: set[str]) -> pd.DataFrame:
    """The log's posts, once each (their latest prediction), with key, day, topic and margin."""
    frame = log.assign(post_key=log["text"].map(post_key))
    frame = frame[~frame["post_key"].isin(exclude_keys)]
    frame = frame.sort_values("time", kind="stable").drop_duplicates("post_key", keep="last")
    top2 = np.sort(frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=float), axis=1)[:, -2:]
    return frame.assign(score=top2[:, 1], margin=top2[:, 1] - top2[:, 0],
                        day=frame["time"].dt.strftime("%Y-%m-%d"),
                        topic=frame["text"].map(primary_topic)).reset_index(drop=True)


def select_for_labeling(log: pd.DataFrame, budget: int, strategy: str = "uncertainty",
                        seed: int = 0, exclude_keys: set[str] | None = None) -> pd.DataFrame:
    """Up to `budget` distinct posts of a payload-log frame (RECORD_COLUMNS), none whose key is
    in `exclude_keys`. "uncertainty": the smallest top-2 margin first, round-robin over
    (topic, day) strata, so each topic and day gets its most uncertain posts before any
    stratum gets its next; "random": a uniform seeded sample. Columns QUEUE_COLUMNS."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, not {budget}")
    if log.empty or budget == 0:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    frame = _candidates(log, exclude_keys or set())
    rng = np.random.default_rng(seed)
    frame["tie"] = rng.random(len(frame))  # seeded tie-break (and the random strategy's order)
    if strategy == "random":
        picked = frame.sort_values("tie").head(budget)
    else:
        frame = frame.sort_values(["margin", "tie"], kind="stable")
        frame["rank"] = frame.groupby(["topic", "day"]).cumcount()
        picked = frame.sort_values(["rank", "margin", "tie"], kind="stable").head(budget)
    return picked.assign(reason=strategy)[QUEUE_COLUMNS].reset_index(drop=True)


def feedback_posts(feedback: pd.DataFrame, log: pd.DataFrame,
                   exclude_keys: set[str]) -> pd.DataFrame:
    """One queue row per post with feedback (not in `exclude_keys`), reason "feedback": the
    model's prediction from the payload log when the post is there, else the feedback's. Posts
    more distinct clients reported come first (a one-client flood of posts queues last)."""
    if feedback.empty:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    frame = feedback[~feedback["post_key"].isin(exclude_keys)]
    clients = frame.groupby("post_key")["client_id"].nunique()
    frame = frame.sort_values("time", kind="stable").drop_duplicates("post_key", keep="last")
    frame = frame.assign(clients=frame["post_key"].map(clients)).sort_values(
        ["clients", "time"], ascending=[False, True], kind="stable")
    frame = pd.DataFrame({"post_key": frame["post_key"], "time": frame["time"],
                          "text": frame["text"], "model_version": frame["model_version"],
                          "label": frame["predicted_label"], "score": np.nan, "margin": np.nan})
    if not log.empty:
        served = _candidates(log, set()).set_index("post_key")
        known = frame["post_key"].isin(served.index)
        for column in ("time", "model_version", "label", "score", "margin"):
            frame.loc[known, column] = frame.loc[known, "post_key"].map(served[column])
    frame["day"] = frame["time"].dt.strftime("%Y-%m-%d")
    frame["topic"], frame["reason"] = frame["text"].map(primary_topic), "feedback"
    return frame[QUEUE_COLUMNS].reset_index(drop=True)


def _write_json(path: Path, tasks: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(tasks, out, ensure_ascii=False, indent=1)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def export_tasks(settings: Settings, budget: int, strategy: str = "uncertainty", seed: int = 0,
                 since: datetime | None = None, until: datetime | None = None,
                 out: Path | None = None,
                 progress: Callable[[str], None] | None = None,
                 allow_empty: bool = True) -> ExportResult:
    """Write Label Studio tasks: `budget` picks from the payload log's window (default: the
    last settings.label_window_hours) plus every post with feedback (all of the feedback log
    unless since/until are given), none already labelled. Default file:
    <home>/labels/exports/tasks-<UTC time>-<strategy>.json. `progress` gets a line per step.
    With `allow_empty` False, NothingToLabel instead of writing a file without tasks."""
    say = progress or (lambda line: None)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    window_end = until or datetime.now(UTC) + timedelta(seconds=1)
    window_start = since or window_end - timedelta(hours=settings.label_window_hours)
    log = read_log(settings.inference_log, settings, window_start, window_end)
    say(f"payload log: {len(log)} records from {window_start:%Y-%m-%d %H:%M} to "
        f"{window_end:%Y-%m-%d %H:%M} UTC")
    feedback = read_feedback(settings.feedback_log, settings, since, until)
    say(f"feedback log: {len(feedback)} records on {feedback['post_key'].nunique()} posts")
    labelled = labelled_keys(settings)
    say(f"labelled already: {len(labelled)} posts (never offered again)")
    asked = feedback_posts(feedback, log, labelled)
    picks = select_for_labeling(log, budget, strategy, seed, labelled | set(asked["post_key"]))
    say(f"picked: {len(picks)} of budget {budget} by {strategy}, plus {len(asked)} with "
        "feedback")
    parts = [part for part in (asked, picks) if len(part)]
    rows = pd.concat(parts, ignore_index=True) if parts else picks
    if rows.empty and not allow_empty:
        raise NothingToLabel(f"nothing to label: {len(log)} payload-log records in the window "
                             f"({len(labelled)} posts labelled already), {len(feedback)} "
                             f"feedback records, budget {budget}")
    tasks = [to_task(row) for row in rows.astype(object).where(rows.notna(), None)
             .to_dict("records")]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    default = labels_root(settings) / "exports" / f"tasks-{stamp}-{strategy}.json"
    path = Path(out) if out else default
    _write_json(path, tasks)
    return ExportResult(path, tasks, dict(Counter(rows["reason"])))
