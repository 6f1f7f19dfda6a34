"""Calibration functions on synthetic data with many rows: conformal coverage, std scaling, temperature scaling,
miscalibration area and expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from moleblend_hf.inference.calibration import (
    apply_calibration,
    calibration_metrics,
    conformal_interval,
    conformal_quantile,
    coverage,
    expected_calibration_error,
    fit_calibration,
    fit_conformal,
    fit_std_scale,
    fit_temperature,
    miscalibration_area,
)


def _heteroscedastic(rng: np.random.Generator, rows: int, noise: float = 2.0):
    """Predictions whose reported std is too small by `noise`: y = mean + noise * std * N(0, 1)."""
    mean = rng.normal(size=(rows, 1))
    std = rng.uniform(0.2, 2.0, size=(rows, 1))
    return mean + noise * std * rng.normal(size=(rows, 1)), mean, std


@pytest.mark.parametrize("alpha", [0.1, 0.2])
@pytest.mark.parametrize("normalised", [True, False])
def test_split_conformal_intervals_cover_held_out_rows(alpha, normalised):
    rng = np.random.default_rng(0)
    y, mean, std = _heteroscedastic(rng, 25_000)
    calibrate, held_out = slice(0, 5_000), slice(5_000, None)
    scale = std if normalised else None
    quantiles = fit_conformal(y[calibrate], mean[calibrate], scale[calibrate] if normalised else None, alpha)
    lower, upper = conformal_interval(mean[held_out], std[held_out] if normalised else None, quantiles)
    covered = coverage(y[held_out], lower, upper)
    assert 1 - alpha - 0.015 <= covered <= 1 - alpha + 0.03, covered  # valid, and not trivially wide
    # normalised scores adapt the width to each row's std: equal coverage with narrower mean intervals here
    if normalised:
        absolute = conformal_interval(mean[held_out], None, fit_conformal(y[calibrate], mean[calibrate], None, alpha))
        assert np.mean(upper - lower) < np.mean(absolute[1] - absolute[0])


def test_conformal_quantile_uses_the_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # 9 scores
    assert conformal_quantile(scores, 0.1) == 9.0  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    assert conformal_quantile(scores[:5], 0.1) == float("inf")  # ceil(6 * 0.9) = 6 > 5 scores


def test_std_scale_makes_z_scores_unit_variance_and_lowers_the_miscalibration_area():
    rng = np.random.default_rng(1)
    y, mean, std = _heteroscedastic(rng, 20_000, noise=2.0)
    (scale,) = fit_std_scale(y[:10_000], mean[:10_000], std[:10_000])
    assert scale == pytest.approx(2.0, rel=0.03)
    z = (y[10_000:] - mean[10_000:]) / (scale * std[10_000:])
    assert np.var(z) == pytest.approx(1.0, abs=0.05)
    before = miscalibration_area(y[10_000:], mean[10_000:], std[10_000:])
    after = miscalibration_area(y[10_000:], mean[10_000:], scale * std[10_000:])
    assert before > 0.15 and after < 0.01


def test_temperature_scaling_fixes_overconfident_logits():
    rng = np.random.default_rng(2)
    true = rng.normal(scale=2.0, size=(20_000, 2))
    labels = (rng.random(true.shape) < expit(true)).astype(float)
    labels[:100, 1] = np.nan  # missing labels are left out
    logits = 3.0 * true  # overconfident by 3
    temperatures = fit_temperature(labels[:10_000], logits[:10_000])
    assert temperatures == pytest.approx([3.0, 3.0], rel=0.1)
    before = expected_calibration_error(labels[10_000:], expit(logits[10_000:]))
    after = expected_calibration_error(labels[10_000:], expit(logits[10_000:] / np.array(temperatures)))
    assert before > 0.05 and after < 0.02
    # multi-class: one temperature over the classes
    classes = rng.normal(size=(20_000, 3))
    drawn = np.array([rng.choice(3, p=np.exp(c) / np.exp(c).sum()) for c in classes])
    (temperature,) = fit_temperature(drawn, 0.5 * classes, multiclass=True)  # underconfident by 2
    assert temperature == pytest.approx(0.5, rel=0.1)


def test_expected_calibration_error_by_hand():
    labels = np.array([1, 0, 1, 1], dtype=float)
    scores = np.array([0.95, 0.95, 0.15, 0.15])
    # bin 9: 2 rows, accuracy 0.5, confidence 0.95; bin 1: 2 rows, accuracy 1, confidence 0.15
    assert expected_calibration_error(labels, scores) == pytest.approx(0.5 * 0.45 + 0.5 * 0.85)
    assert expected_calibration_error(
        np.array([2, 0]), np.array([[0.2, 0.2, 0.6], [0.1, 0.8, 0.1]]), multiclass=True
    ) == pytest.approx(0.5 * 0.4 + 0.5 * 0.8)


def test_ensemble_calibration_round_trip_on_member_outputs():
    """fit_calibration on member outputs, then apply_calibration and the metrics agree with the parts."""
    rng = np.random.default_rng(3)
    y, mean, std = _heteroscedastic(rng, 4_000, noise=3.0)
    members = mean[None] + std[None] * np.array([-1.0, 1.0])[:, None, None]  # mean and std of two members
    calibration = fit_calibration("regression", y, members, alpha=0.1)
    assert calibration["std_scale"] == pytest.approx(fit_std_scale(y, mean, std))
    applied = apply_calibration("regression", members, calibration)
    np.testing.assert_allclose(applied["calibrated_std"], std * calibration["std_scale"][0])
    metrics = calibration_metrics("regression", y, members, calibration)
    assert metrics["miscalibration_area"]["after"] < metrics["miscalibration_area"]["before"]
    assert metrics["conformal"]["coverage"] >= 0.9
    assert apply_calibration("regression", members, None) == {}
