"""binary_metrics equals scikit-learn on the same scores, and survives the edge cases of real test sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from torchmetrics.functional.classification import binary_eer

from dfpanel.errors import ConfigError, DataError
from dfpanel.evaluate.metrics import binary_metrics, eer_from_roc, roc_points


def sklearn_eer(labels, probs):
    # Every distinct score is an ROC point (drop_intermediate=False): EER can fall inside a
    # vertical/horizontal run that sklearn would otherwise collapse.
    fpr, tpr, thr = roc_curve(labels, probs, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.argmin(np.abs(fpr - fnr))
    return (fpr[i] + fnr[i]) / 2, thr[i]


def scored_set(seed: int, n: int = 400, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * (2 * labels - 1))))
    if ties:
        probs = np.round(probs, 1)  # many tied scores, as from a video-level mean over few frames
    return probs, labels


@pytest.mark.parametrize("seed,ties,threshold", [(0, False, 0.5), (1, True, 0.5), (2, False, 0.3), (3, True, 0.7)])
def test_equals_sklearn(seed, ties, threshold):
    probs, labels = scored_set(seed, ties=ties)
    m = binary_metrics(probs, labels, threshold=threshold)
    pred = (probs > threshold).astype(int)

    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert m["ap"] == pytest.approx(average_precision_score(labels, probs), abs=1e-6)
    assert m["log_loss"] == pytest.approx(log_loss(labels, probs), abs=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred), abs=1e-6)
    assert m["f1"] == pytest.approx(f1_score(labels, pred), abs=1e-6)
    real_acc = recall_score(labels, pred, pos_label=0)
    fake_acc = recall_score(labels, pred, pos_label=1)
    assert m["real_acc"] == pytest.approx(real_acc, abs=1e-6)
    assert m["fake_acc"] == pytest.approx(fake_acc, abs=1e-6)
    assert m["bias"] == pytest.approx(abs(real_acc - fake_acc), abs=1e-6)
    eer, eer_thr = sklearn_eer(labels, probs)
    assert m["eer"] == pytest.approx(eer, abs=1e-6)
    assert m["eer_threshold"] == pytest.approx(eer_thr, abs=1e-6)
    assert m["eer"] == pytest.approx(float(binary_eer(torch.as_tensor(probs), torch.as_tensor(labels))), abs=1e-6)
    assert (m["n"], m["n_real"], m["n_fake"]) == (len(labels), int((labels == 0).sum()), int(labels.sum()))
    assert m["notes"] == []


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    good = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = binary_metrics(good, labels)
    assert (m["auc"], m["eer"], m["accuracy"], m["bias"]) == (1.0, 0.0, 1.0, 0.0)
    assert 0.3 <= m["eer_threshold"] <= 0.7  # a threshold that separates the classes
    bad = binary_metrics(1 - good, labels)
    assert (bad["auc"], bad["eer"], bad["accuracy"]) == (0.0, 1.0, 0.0)


def test_bias_measures_class_imbalance_of_errors():
    # Detector calls everything fake: all fakes right, all reals wrong -> bias 1.
    labels = np.array([0, 0, 1, 1, 1])
    m = binary_metrics(np.full(5, 0.9), labels)
    assert (m["real_acc"], m["fake_acc"], m["bias"]) == (0.0, 1.0, 1.0)


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only_gives_nan_with_note(label):
    probs = np.array([0.2, 0.6, 0.9])
    m = binary_metrics(probs, np.full(3, label))
    for key in ("auc", "eer", "eer_threshold", "ap"):
        assert math.isnan(m[key]), key
    assert len(m["notes"]) == 1 and ("fake" if label else "real") in m["notes"][0]
    # What can be measured still is.
    assert m["accuracy"] == pytest.approx(accuracy_score(np.full(3, label), (probs > 0.5).astype(int)))
    assert math.isnan(m["real_acc"] if label else m["fake_acc"])
    assert math.isnan(m["bias"])
    assert math.isfinite(m["log_loss"])


def test_log_loss_clips_certain_probabilities():
    labels = np.array([0, 1, 0, 1])
    probs = np.array([0.0, 1.0, 1.0, 0.0])  # two right, two confidently wrong
    m = binary_metrics(probs, labels)
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 10
    eps = 1e-15
    assert m["log_loss"] == pytest.approx(log_loss(labels, np.clip(probs, eps, 1 - eps)), rel=1e-9)
    assert binary_metrics(np.array([0.0, 1.0]), np.array([0, 1]))["log_loss"] < 1e-12


def test_empty_and_malformed_inputs_raise_data_error():
    with pytest.raises(DataError, match="no samples"):
        binary_metrics([], [])
    with pytest.raises(DataError, match="labels"):
        binary_metrics([0.1, 0.2], [0])
    with pytest.raises(DataError, match="probabilities"):
        binary_metrics([-2.0, 3.0], [0, 1])  # logits passed by mistake
    with pytest.raises(DataError, match="NaN"):
        binary_metrics([float("nan"), 0.3], [0, 1])
    with pytest.raises(DataError, match="0 \\(real\\) or 1"):
        binary_metrics([0.1, 0.3], [0, 2])
    with pytest.raises(ConfigError, match="threshold"):
        binary_metrics([0.1, 0.3], [0, 1], threshold=50)


def test_roc_points_and_eer_match_sklearn_curve():
    probs, labels = scored_set(7, n=200, ties=True)
    fpr, tpr, thr = roc_points(probs, labels)
    s_fpr, s_tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr, atol=1e-6)
    np.testing.assert_allclose(tpr, s_tpr, atol=1e-6)
    assert eer_from_roc(fpr, tpr, thr)[0] == pytest.approx(sklearn_eer(labels, probs)[0], abs=1e-6)
