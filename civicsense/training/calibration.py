"""Calibration of the candidate's probabilities: expected calibration error, a reliability
diagram, and temperature / isotonic calibration judged out-of-fold on the validation posts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

from civicsense import LABELS
from civicsense.training.slices import macro_recall_present_classes

METHODS = ("temperature", "isotonic")


@dataclass
class CalibrationResult:
    """ECE and macro recall before and after each method (out-of-fold), and the one kept: a
    method is kept only when it lowers ECE and macro recall does not drop ("none" otherwise)."""

    ece: float
    macro_recall: float
    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    kept: str = "none"
    temperature: float = 1.0  # fitted on all validation posts (what serving would apply)


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence (top probability), accuracy and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        accuracy = np.bincount(which, correct.astype(float), bins) / counts
    return mean_confidence, accuracy, counts


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray,
                               bins: int = 10) -> float:
    """Σ over bins of (share of posts) × |accuracy − mean confidence| (top-label ECE)."""
    mean_confidence, accuracy, counts = reliability(probabilities, truth, bins)
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - mean_confidence[filled])
    return float((counts[filled] / counts.sum() * gaps).sum())


def reliability_figure(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10,
                       title: str = "reliability") -> Figure:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    mean_confidence, accuracy, counts = reliability(probabilities, truth, bins)
    figure = Figure(figsize=(4.8, 4.2), dpi=120)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    filled = counts > 0
    axes.plot(mean_confidence[filled], accuracy[filled], marker="o", label="model")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)",
             ylabel="accuracy", title=title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log-probabilities divided by `temperature` (argmax unchanged)."""
    logits = np.log(np.clip(probabilities, 1e-12, 1)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature minimizing the negative log-likelihood of `truth`."""
    def nll(temperature: float) -> float:
        scaled = apply_temperature(probabilities, temperature)
        return float(-np.log(np.clip(scaled[np.arange(len(truth)), truth], 1e-12, 1)).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def fit_isotonic(probabilities: np.ndarray, truth: np.ndarray) -> list[IsotonicRegression]:
    """One-vs-rest isotonic maps, one per class."""
    return [IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
            .fit(probabilities[:, k], (truth == k).astype(float))
            for k in range(probabilities.shape[1])]


def apply_isotonic(probabilities: np.ndarray, maps: Sequence[IsotonicRegression]) -> np.ndarray:
    mapped = np.column_stack([m.predict(probabilities[:, k]) for k, m in enumerate(maps)])
    mapped = np.clip(mapped, 1e-6, None)
    return mapped / mapped.sum(axis=1, keepdims=True)


def _calibrated(method: str, fit_p: np.ndarray, fit_y: np.ndarray, p: np.ndarray) -> np.ndarray:
    if method == "temperature":
        return apply_temperature(p, fit_temperature(fit_p, fit_y))
    return apply_isotonic(p, fit_isotonic(fit_p, fit_y))


def _recall(probabilities: np.ndarray, truth: np.ndarray) -> float:
    labels = np.asarray(LABELS)
    return macro_recall_present_classes(labels[truth],
                                        labels[probabilities.argmax(axis=1)]) or 0.0


def calibrate(probabilities: np.ndarray, labels: Sequence[str], bins: int = 10,
              seed: int = 0) -> CalibrationResult:
    """ECE and macro recall of the raw probabilities, and of each method fitted on one half of
    the validation posts and scored on the other (2-fold, so no method is judged on the posts
    it was fitted on); the kept method lowers ECE without lowering macro recall."""
    truth = np.array([LABELS.index(label) for label in labels])
    probabilities = np.asarray(probabilities, dtype=float)
    result = CalibrationResult(expected_calibration_error(probabilities, truth, bins),
                               _recall(probabilities, truth))
    if len(truth) < 20:
        return result
    folds = np.random.default_rng(seed).permutation(len(truth)) % 2
    for method in METHODS:
        out_of_fold = np.empty_like(probabilities)
        for fold in (0, 1):
            fit, score = folds != fold, folds == fold
            out_of_fold[score] = _calibrated(method, probabilities[fit], truth[fit],
                                             probabilities[score])
        result.methods[method] = {"ece": expected_calibration_error(out_of_fold, truth, bins),
                                  "macro_recall": _recall(out_of_fold, truth)}
    candidates = [(scores["ece"], method) for method, scores in result.methods.items()
                  if scores["ece"] < result.ece
                  and scores["macro_recall"] >= result.macro_recall - 1e-9]
    if candidates:
        result.kept = min(candidates)[1]
    result.temperature = fit_temperature(probabilities, truth)
    return result
