"""Unit tests of ECE, the reliability diagram and the out-of-fold calibration choice."""

import numpy as np
import pytest

from civicsense import LABELS
from civicsense.training.calibration import (
    apply_isotonic,
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_isotonic,
    fit_temperature,
    reliability,
    reliability_figure,
)


def overconfident(n=600, seed=0):
    """Labels drawn from soft probabilities, reported as much sharper ones."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=p) for p in true_p])
    return apply_temperature(true_p, 0.3), truth


def test_ece_is_zero_when_confidence_matches_accuracy():
    probabilities = np.array([[0.8, 0.1, 0.1]] * 10)
    truth = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probabilities, truth) == pytest.approx(0.0)
    assert expected_calibration_error(probabilities, np.ones(10, int)) == pytest.approx(0.8)


def test_reliability_counts_every_post_once():
    probabilities, truth = overconfident()
    _, _, counts = reliability(probabilities, truth, bins=5)
    assert counts.sum() == len(truth) and len(counts) == 5


def test_temperature_keeps_argmax_and_fits_above_one_for_overconfidence():
    probabilities, truth = overconfident()
    temperature = fit_temperature(probabilities, truth)
    assert temperature > 1.5
    scaled = apply_temperature(probabilities, temperature)
    assert (scaled.argmax(1) == probabilities.argmax(1)).all()
    assert np.allclose(scaled.sum(1), 1)
    assert expected_calibration_error(scaled, truth) < expected_calibration_error(
        probabilities, truth)


def test_isotonic_maps_give_probabilities():
    probabilities, truth = overconfident()
    mapped = apply_isotonic(probabilities, fit_isotonic(probabilities, truth))
    assert np.allclose(mapped.sum(1), 1) and (mapped >= 0).all()


def test_calibrate_keeps_a_method_only_when_it_helps_without_losing_recall():
    probabilities, truth = overconfident()
    result = calibrate(probabilities, [LABELS[k] for k in truth])
    assert set(result.methods) == {"temperature", "isotonic"}
    assert result.kept in {"temperature", "isotonic"}
    kept = result.methods[result.kept]
    assert kept["ece"] < result.ece and kept["macro_recall"] >= result.macro_recall - 1e-9


def test_calibrate_keeps_none_when_already_calibrated():
    probabilities = np.tile([[1.0, 0.0, 0.0]], (40, 1))
    result = calibrate(probabilities, ["negative"] * 40)
    assert result.ece == pytest.approx(0.0) and result.kept == "none"


def test_reliability_figure_draws_the_diagonal_and_the_model(tmp_path):
    probabilities, truth = overconfident()
    figure = reliability_figure(probabilities, truth)
    assert len(figure.axes[0].lines) == 2
    figure.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
