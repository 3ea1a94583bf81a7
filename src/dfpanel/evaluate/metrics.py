"""Binary metrics of the deepfake-detection field, computed with torchmetrics.

Convention: label 1 = fake (the positive class), 0 = real; `probs` are probabilities of "fake"; a sample
is called fake when `prob > threshold` (torchmetrics' rule). Every metric equals scikit-learn's on the
same scores (tests/test_metrics.py checks it). Metrics that need both classes (AUC, EER, AP) are NaN
when one class is missing, with a line in `notes` saying so, rather than a crash or a made-up 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_average_precision,
    binary_f1_score,
    binary_recall,
    binary_roc,
    binary_specificity,
)

from dfpanel.errors import ConfigError, DataError
from dfpanel.inference.aggregate import auroc

# Probabilities are clipped to [EPS, 1 - EPS] for the log-loss, so a confident 0/1 gives a large but
# finite loss. 1e-15 is the DFDC challenge's clip; computed in float64, where it is representable.
LOG_LOSS_EPS = 1e-15

METRIC_KEYS = (
    "auc", "eer", "eer_threshold", "ap", "log_loss", "accuracy", "f1",
    "real_acc", "fake_acc", "bias", "n", "n_real", "n_fake",
)  # fmt: skip

NAN = float("nan")


def _as_inputs(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.tensor(np.asarray(probs, dtype=np.float64)).reshape(-1)  # a copy: inputs may be read-only
    y_np = np.asarray(labels)
    if y_np.size and not np.all(np.isin(y_np, (0, 1))):
        raise DataError(f"labels must be 0 (real) or 1 (fake); got values {sorted(set(np.unique(y_np).tolist()))[:5]}")
    y = torch.tensor(y_np.astype(np.int64)).reshape(-1)
    if p.numel() != y.numel():
        raise DataError(f"{p.numel()} scores but {y.numel()} labels; every scored sample needs its label")
    if p.numel() == 0:
        raise DataError("no samples to evaluate; check the manifest's split and that `dfpanel extract` cached its videos")
    if torch.isnan(p).any():
        raise DataError(f"{int(torch.isnan(p).sum())} score(s) are NaN; the model produced invalid outputs")
    if (p < 0).any() or (p > 1).any():
        raise DataError("scores must be probabilities in [0, 1]; pass sigmoid(logit), not the logit")
    return p, y


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"threshold {threshold} is not a probability; give a value between 0 and 1")
    return t


def roc_points(probs, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds), one point per distinct score, as torchmetrics computes it."""
    p, y = _as_inputs(probs, labels)
    fpr, tpr, thr = binary_roc(p, y)
    return fpr.double().numpy(), tpr.double().numpy(), thr.double().numpy()


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: the ROC point where false-positive and false-negative rates
    are closest; EER is their mean there (torchmetrics' `binary_eer` rule)."""
    fnr = 1.0 - np.asarray(tpr)
    i = int(np.argmin(np.abs(np.asarray(fpr) - fnr)))
    return float((fpr[i] + fnr[i]) / 2.0), float(thresholds[i])


def binary_metrics(probs: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> dict:
    """AUC, EER (+ its threshold), AP, log-loss, accuracy, F1, real/fake accuracy, bias and counts.

    `bias` = |real accuracy - fake accuracy|. Raises DataError on empty or malformed input.
    """
    t = check_threshold(threshold)
    p, y = _as_inputs(probs, labels)
    n_fake = int(y.sum())
    n_real = int(y.numel() - n_fake)
    out: dict = {"n": int(y.numel()), "n_real": n_real, "n_fake": n_fake, "threshold": t}

    out["accuracy"] = float(binary_accuracy(p, y, threshold=t))
    out["f1"] = float(binary_f1_score(p, y, threshold=t))
    out["real_acc"] = float(binary_specificity(p, y, threshold=t)) if n_real else NAN
    out["fake_acc"] = float(binary_recall(p, y, threshold=t)) if n_fake else NAN
    out["bias"] = abs(out["real_acc"] - out["fake_acc"])  # NaN when a class is missing
    clipped = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    out["log_loss"] = float(torch.nn.functional.binary_cross_entropy(clipped, y.double()))

    notes: list[str] = []
    if n_real and n_fake:
        out["auc"] = auroc(p, y)  # the one AUC rule (NaN with one class, handled below with its note)
        out["ap"] = float(binary_average_precision(p, y))
        fpr, tpr, thr = binary_roc(p, y)
        out["eer"], out["eer_threshold"] = eer_from_roc(fpr.double().numpy(), tpr.double().numpy(), thr.numpy())
    else:
        only = "fake" if n_fake else "real"
        notes.append(f"only {only} samples: AUC, EER and AP need both classes and are undefined (NaN)")
        out["auc"] = out["ap"] = out["eer"] = out["eer_threshold"] = NAN
    out["notes"] = notes
    return {k: out[k] for k in (*METRIC_KEYS, "threshold", "notes")}


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
