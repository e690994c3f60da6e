"""The drift job: a window of the inference log against the champion's reference, through an
Evidently 0.7 Report, written as HTML + a JSON summary; then the retraining trigger.

Columns compared (one Evidently "Value Drift" test each; dataset drift = the "Share of Drifted
Columns" test failing, i.e. at least `drift_share` of them drifted):
- the 16 descriptors of civicsense.featurize.describe (the model's own cheap features),
- `predicted_label` (the prediction distribution) and `confidence` (the top probability),
- `text`, a declared text column: Evidently's text-content drift (a domain classifier on
  TF-IDF telling reference from current; no NLTK needed).
Evidently picks each column's statistical test from its type and size (K-S/chi-square/Z on small
samples, Wasserstein/Jensen-Shannon above 1,000 rows); the pass/fail of each test is used, never
the raw score's direction.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from civicsense import LABELS, PROBABILITY_COLUMNS
from civicsense.features.featurizer import DESCRIPTOR_NAMES, describe
from civicsense.monitoring.inference_log import read_window
from civicsense.settings import Settings
from civicsense.training.evaluate import REFERENCE_DIR, REFERENCE_FILE
from civicsense.training.registry import CHAMPION, Version, find_version, registry_client

log = logging.getLogger(__name__)
TEXT, PREDICTED, CONFIDENCE = "text", "predicted_label", "confidence"
MONITORED_COLUMNS: tuple[str, ...] = (*DESCRIPTOR_NAMES, PREDICTED, CONFIDENCE, TEXT)


class MonitorError(RuntimeError):
    """The check could not run (no champion, no reference, too little traffic…)."""


@dataclass
class ColumnDrift:
    score: float
    method: str
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    drift_detected: bool
    drift_share: float  # share of monitored columns whose drift test failed
    drifted_columns: int
    columns: dict[str, ColumnDrift]
    n_reference: int
    n_current: int
    drift_share_threshold: float
    snapshot: object = field(default=None, repr=False)  # the Evidently snapshot

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("snapshot")
        return data


# ---------------------------------------------------------------- data


def monitor_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Posts with text, predicted `label` and p_* columns → the monitored columns. Descriptors
    are recomputed only when absent (inference records carry them already)."""
    missing = [c for c in (TEXT, "label", *PROBABILITY_COLUMNS) if c not in frame.columns]
    if missing:
        raise MonitorError(f"frame lacks columns {missing}")
    frame = frame.reset_index(drop=True)
    if all(name in frame.columns for name in DESCRIPTOR_NAMES):
        out = frame[list(DESCRIPTOR_NAMES)].astype(np.float32)
    else:
        out = describe(frame[TEXT].astype(str).tolist())
    out[PREDICTED] = pd.Categorical(frame["label"].astype(str), categories=list(LABELS))
    out[CONFIDENCE] = frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64).max(axis=1)
    out[TEXT] = frame[TEXT].astype(str).to_numpy()
    return out[list(MONITORED_COLUMNS)]


def _cap(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    return frame.sample(rows, random_state=seed) if len(frame) > rows else frame


def find_champion(settings: Settings) -> Version:
    """The registered version the `champion` alias points to (what the monitor compares with)."""
    champion = find_version(registry_client(settings), settings.model_name, CHAMPION)
    if champion is None:
        raise MonitorError(f"no {settings.model_name}@{CHAMPION} in {settings.tracking_uri}: "
                           "train one first")
    return champion


def load_reference(settings: Settings, champion: Version | None = None) -> pd.DataFrame:
    """The champion's reference: the validation posts and its predictions, saved by evaluate
    with the training run (reference/reference.parquet)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    champion = champion or find_champion(settings)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path=f"{REFERENCE_DIR}/{REFERENCE_FILE}",
                dst_path=folder, tracking_uri=settings.tracking_uri)
        except (MlflowException, OSError) as error:
            raise MonitorError(f"champion v{champion.number} (run {champion.run_id}) has no "
                               f"{REFERENCE_DIR}/{REFERENCE_FILE}: {error}") from None
        return pd.read_parquet(path)


# ---------------------------------------------------------------- the Evidently report


def run_report(reference: pd.DataFrame, current: pd.DataFrame, drift_share: float = 0.5):
    """Evidently 0.7 DataDriftPreset (tests included) over the monitored columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        text_columns=[TEXT], numerical_columns=[*DESCRIPTOR_NAMES, CONFIDENCE],
        categorical_columns=[PREDICTED])
    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant descriptor columns: harmless divide warnings
        return report.run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition))


def summarize(snapshot, n_reference: int, n_current: int, drift_share: float) -> DriftResult:
    """The drift boolean and per-column verdicts from the snapshot's test statuses."""
    data = snapshot.dict()
    metrics = {m["id"]: m for m in data["metrics"]}
    columns: dict[str, ColumnDrift] = {}
    dataset_drift, share, count = None, 0.0, 0
    for test in data["tests"]:
        params = test["metric_config"]["params"]
        failed = test["status"] == "FAIL"
        value = metrics.get(test["metric_config"]["metric_id"], {}).get("value")
        if params["type"].endswith("DriftedColumnsCount"):
            dataset_drift = failed
            count, share = int(value["count"]), float(value["share"])
        elif params["type"].endswith("ValueDrift"):
            columns[params["column"]] = ColumnDrift(float(value), str(params["method"]),
                                                    float(params["threshold"]), failed)
    if dataset_drift is None:
        raise MonitorError("Evidently returned no 'Share of Drifted Columns' test")
    return DriftResult(dataset_drift, share, count, columns, n_reference, n_current,
                       drift_share, snapshot)


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: Settings,
                 seed: int = 0) -> DriftResult:
    """Reference and current posts (text, label, p_*) → the drift verdict."""
    reference = monitor_frame(_cap(reference, settings.monitor_max_rows, seed))
    current = monitor_frame(_cap(current, settings.monitor_max_rows, seed))
    snapshot = run_report(reference, current, settings.drift_share)
    return summarize(snapshot, len(reference), len(current), settings.drift_share)


# ---------------------------------------------------------------- the job


@dataclass
class MonitorOutcome:
    result: DriftResult
    champion: Version
    html: str
    summary_path: str
    summary: dict


def _write_reports(snapshot, summary: dict, root: str, stamp: str,
                   settings: Settings) -> tuple[str, str]:
    name = f"drift-{stamp}"
    if root.startswith("gs://"):
        from civicsense.storage import gcs_client, split_gcs_uri

        bucket_name, prefix = split_gcs_uri(root)
        bucket = gcs_client(settings).bucket(bucket_name)
        with tempfile.TemporaryDirectory() as folder:
            html = Path(folder) / f"{name}.html"
            snapshot.save_html(str(html))
            uris = []
            for blob_name, payload, kind in (
                    (f"{name}.html", html.read_bytes(), "text/html"),
                    (f"{name}.json", json.dumps(summary, indent=2).encode(), "application/json"),
                    ("latest.json", json.dumps(summary, indent=2).encode(), "application/json")):
                full = "/".join(p for p in (prefix, blob_name) if p)
                bucket.blob(full).upload_from_string(payload, content_type=kind)
                uris.append(f"gs://{bucket_name}/{full}")
        return uris[0], uris[1]
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    html, path = folder / f"{name}.html", folder / f"{name}.json"
    snapshot.save_html(str(html))
    text = json.dumps(summary, indent=2)
    path.write_text(text)
    (folder / "latest.json").write_text(text)
    return str(html), str(path)


def describe_skipped(skipped: dict[str, int]) -> str:
    """`skipped 3 invalid lines (bad_time 1, invalid_utf8 2)` or `no invalid lines`."""
    if not skipped:
        return "no invalid lines"
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.items())
    return f"skipped {sum(skipped.values())} invalid lines ({reasons})"


def run_monitor(settings: Settings, since: datetime | None = None,
                until: datetime | None = None) -> MonitorOutcome:
    """Read the window, compare with the champion's reference, write the reports."""
    now = datetime.now(UTC)
    window = read_window(settings.inference_log, settings, since, until)
    current, skipped = window.frame, describe_skipped(window.skipped)
    if len(current) < settings.monitor_min_rows:
        raise MonitorError(f"{len(current)} inference records in the window (at least "
                           f"{settings.monitor_min_rows} needed; see --window-hours, "
                           f"--min-rows) under {settings.inference_log}; {skipped}")
    if window.valid_share < settings.monitor_min_valid_share:
        raise MonitorError(f"only {window.valid_share:.0%} of the window's {window.lines} log "
                           f"lines are valid records (at least "
                           f"{settings.monitor_min_valid_share:.0%} needed); {skipped}")
    champion = find_champion(settings)
    versions = current["model_version"].astype(str).str.split("+").str[0]
    served = sorted(set(versions))
    reference = load_reference(settings, champion)
    result = detect_drift(reference, current, settings)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    summary = {
        "checked_at": now.isoformat(),
        "champion": {"name": settings.model_name, "version": champion.number,
                     "run_id": champion.run_id},
        "served_versions": served, "window": {
            "since": str(current["time"].min()), "until": str(current["time"].max()),
            "records": len(current), "lines": window.lines,
            "skipped_lines": window.skipped},
        **result.summary(),
        "html": f"{settings.reports.rstrip('/')}/drift-{stamp}.html"}
    html, summary_path = _write_reports(result.snapshot, summary, settings.reports, stamp,
                                        settings)
    return MonitorOutcome(result, champion, html, summary_path, summary)
