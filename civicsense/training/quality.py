"""The evaluate step's error analysis: slices, calibration, worst confusions and behaviour
suites in one report, logged to the candidate's MLflow run, read back by the gate."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from civicsense import LABELS, PROBABILITY_COLUMNS
from civicsense.settings import Settings
from civicsense.training.behaviour import behaviour_failures, run_suites
from civicsense.training.calibration import calibrate, reliability_figure
from civicsense.training.slices import slice_scores, worst_confusions

QUALITY_DIR, QUALITY_FILE, QUALITY_MARKDOWN = "quality", "quality.json", "quality.md"


def analyse(settings: Settings, validation: pd.DataFrame, predictions: pd.DataFrame,
            champion_predicted: Sequence[str] | None,
            predict: Callable[[list[str]], pd.DataFrame]) -> dict:
    """The quality report (plain JSON-able dict) of a candidate on its validation posts:
    slices beside the champion's labels on the same posts, calibration, worst confusions, and
    the behaviour suites run through `predict`."""
    validation = validation.reset_index(drop=True)
    predictions = predictions.reset_index(drop=True)
    probabilities = predictions[list(PROBABILITY_COLUMNS)].to_numpy(float)
    calibration = calibrate(probabilities, validation["label"].tolist(),
                            settings.calibration_bins)
    slices = slice_scores(validation, predictions["label"].tolist(), champion_predicted)
    behaviour = run_suites(predict, settings.behaviour_min_pass_rates)
    return {
        "slices": [s.to_dict() for s in slices],
        "calibration": asdict(calibration),
        "confusions": worst_confusions(validation, predictions),
        "behaviour": [r.to_dict() for r in behaviour],
        "slice_gate": {"min_rows": settings.slice_gate_min_rows,
                       "margin": settings.slice_gate_margin},
    }


def metric_name(name: str) -> str:
    """A slice or suite name as an MLflow metric key (letters, digits, _ - . / only)."""
    return re.sub(r"[^\w\-./]", "_", name)


def quality_metrics(report: dict) -> dict[str, float]:
    """The report's numbers as flat metrics: slice n and macro recall, ECE, pass rates."""
    metrics: dict[str, float] = {}
    for s in report["slices"]:
        key = metric_name(s["name"])
        metrics[f"slice_{key}_n"] = float(s["n"])
        if s["candidate"] is not None:
            metrics[f"slice_{key}_macro_recall"] = s["candidate"]
        if s["champion"] is not None:
            metrics[f"slice_{key}_champion_macro_recall"] = s["champion"]
    calibration = report["calibration"]
    metrics["val_ece"] = calibration["ece"]
    for method, scores in calibration["methods"].items():
        metrics[f"val_ece_{method}"] = scores["ece"]
        metrics[f"val_macro_recall_{method}"] = scores["macro_recall"]
    metrics["calibration_temperature"] = calibration["temperature"]
    for suite in report["behaviour"]:
        metrics[f"behaviour_{metric_name(suite['name'])}_pass_rate"] = suite["pass_rate"]
    return metrics


def log_quality(client: MlflowClient, run_id: str, report: dict, markdown: str,
                probabilities: np.ndarray, labels: Sequence[str], bins: int) -> None:
    """Metrics, the JSON report, its Markdown and the reliability diagram to the run."""
    for name, value in quality_metrics(report).items():
        client.log_metric(run_id, name, value)
    client.set_tag(run_id, "calibration_kept", report["calibration"]["kept"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / QUALITY_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        (Path(tmp) / QUALITY_MARKDOWN).write_text(markdown)
        client.log_artifacts(run_id, tmp, QUALITY_DIR)
    truth = np.array([LABELS.index(label) for label in labels])
    ece = report["calibration"]["ece"]
    client.log_figure(run_id, reliability_figure(probabilities, truth, bins,
                                                 f"validation, ECE {ece:.3f}"),
                      "reliability_diagram.png")


def load_quality(client: MlflowClient, run_id: str) -> dict | None:
    """The quality report logged with a run, or None when it has none (an older run)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, f"{QUALITY_DIR}/{QUALITY_FILE}", tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def quality_refusals(report: dict | None, min_rows: int, margin: float) -> list[str]:
    """Why the gate refuses a challenger: each large slice it regresses against the champion by
    more than `margin`, each behaviour suite below its minimum pass rate (empty: none)."""
    if report is None:
        return []
    reasons = [f"slice {s['name']} (n={s['n']}) {s['candidate']:.4f} vs champion "
               f"{s['champion']:.4f}" for s in report["slices"]
               if s["n"] >= min_rows and s["candidate"] is not None
               and s["champion"] is not None and s["candidate"] < s["champion"] - margin - 1e-9]
    return reasons + behaviour_failures(report["behaviour"])
