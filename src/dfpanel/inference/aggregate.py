"""The one video-level aggregation (sample scores -> one score per video) and the one AUC rule.

Validation (train/metrics.py), evaluation, the panel fit and detection all call `video_logits`, so a
video gets the same score wherever it is scored:

  - every sample logit is first clipped to +-LOGIT_MAX, i.e. its probability to [PROB_EPS, 1 - PROB_EPS]
    (the one clip: a probability of exactly 0 or 1, or an infinite logit, stays finite and counts as
    the most confident score there is);
  - `how`: "mean" (the default, DESIGN.md: mean of the probabilities), "median" (of the
    probabilities), "max" (the most fake-looking sample; sensitive to one bad frame), "logit_mean"
    (mean of the logits: confident samples weigh more than with `mean`);
  - the result is a video logit in [-LOGIT_MAX, LOGIT_MAX]; the video probability is its sigmoid;
  - `gates` (optional, one per sample): why a sample holds no evidence for its specialist (its gate,
    `PanelSpecialist.build_gate`, e.g. AV's "no speech in the clip"), None/""/NaN when it counts.
    Gated samples are left out (`evidence_mask` decides, the one rule); a video whose samples are all
    gated gets NaN, i.e. the specialist abstains on it, with `abstain_reason` (the most common reason).
    A scores table carries the gates in its GATE_COLUMN ("gate"); `aggregate_videos` reads it.

AUC (`auroc`) of a set holding one class only is NaN (undefined), never 0.5 and never an error; the
caller says so in a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dfpanel.errors import ConfigError, DataError

HOW = ("mean", "median", "max", "logit_mean")
PROB_EPS = 1e-7
LOGIT_MAX = math.log((1.0 - PROB_EPS) / PROB_EPS)  # ~16.12
SAMPLE_COLUMNS = ("video_id", "dataset", "label", "prob")
# Per-video facts carried over unchanged when present (they are constant within a video).
VIDEO_FACTS = ("label", "fake_type", "split", "group")
GATE_COLUMN = "gate"  # a scores table's per-sample gate reason ("" or missing: the sample counts)


def evidence_mask(gates, n: int | None = None) -> np.ndarray:
    """THE gating rule: which samples count as evidence. `gates`: per sample, a reason why it holds
    none (a non-empty string) or None/""/NaN when it counts; None: every one of `n` samples counts."""
    if gates is None:
        return np.ones(0 if n is None else n, dtype=bool)
    return np.array([not (isinstance(g, str) and g) for g in gates], dtype=bool)


def abstain_reason(gates) -> str | None:
    """Why a specialist abstains on a video whose samples are all gated: the most common reason (ties:
    the one met first); None when some sample counts (or there are none)."""
    reasons = [g for g in (gates if gates is not None else []) if isinstance(g, str) and g]
    if not reasons or len(reasons) < len(gates):
        return None
    counts: dict[str, int] = {}
    for g in reasons:
        counts[g] = counts.get(g, 0) + 1
    return max(counts, key=lambda g: counts[g])  # max keeps the first of equal counts


def gate_counts(gates) -> dict[str, int]:
    """reason -> how many samples it gated."""
    out: dict[str, int] = {}
    for g in gates if gates is not None else []:
        if isinstance(g, str) and g:
            out[g] = out.get(g, 0) + 1
    return out


def check_how(how: str) -> str:
    if how not in HOW:
        raise ConfigError(f"unknown aggregation {how!r}; choose one of {', '.join(HOW)}")
    return how


def sigmoid(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def to_logit(p) -> np.ndarray:
    """Logit of probabilities, clipped to [PROB_EPS, 1 - PROB_EPS] first (finite for 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), PROB_EPS, 1.0 - PROB_EPS)
    return np.log(p) - np.log1p(-p)


def clip_logits(z) -> np.ndarray:
    return np.clip(np.asarray(z, dtype=np.float64), -LOGIT_MAX, LOGIT_MAX)


def video_logits(sample_logits, videos=None, how: str = "mean", gates=None) -> np.ndarray:
    """THE aggregation: per-sample logits -> one logit per video.

    `videos`: the video of each sample (any hashable labels, or integer codes); the result is ordered
    by sorted video label. None: all samples are one video (a length-1 result). `gates`: per sample,
    why it holds no evidence (see the module docstring): gated samples are left out (their logit may
    be anything, NaN included: detection does not score them), an all-gated video is NaN.
    """
    check_how(how)
    z = np.asarray(sample_logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise DataError("no samples to aggregate; check the split and that the videos were extracted")
    codes = np.zeros(z.size, dtype=np.int64) if videos is None else pd.factorize(np.asarray(videos), sort=True)[0]
    if len(codes) != z.size:
        raise ValueError(f"{z.size} sample scores but {len(codes)} video labels")
    keep = evidence_mask(gates, z.size)
    if len(keep) != z.size:
        raise ValueError(f"{z.size} sample scores but {len(keep)} gates")
    n_videos = int(codes.max()) + 1
    z, kept_codes = clip_logits(z[keep]), codes[keep]
    values = z if how in ("max", "logit_mean") else sigmoid(z)
    reducer = {"mean": "mean", "median": "median", "max": "max", "logit_mean": "mean"}[how]
    agg = pd.Series(values).groupby(kept_codes, sort=True).agg(reducer)
    agg = agg.reindex(range(n_videos)).to_numpy(dtype=np.float64)  # all-gated videos: NaN (abstained)
    out = clip_logits(agg if how in ("max", "logit_mean") else to_logit(agg))
    out[~np.isin(np.arange(n_videos), kept_codes)] = np.nan
    nan = np.isnan(z)
    if nan.any():  # a NaN sample makes its video NaN (pandas would skip it and hide a broken model)
        out[np.unique(kept_codes[nan])] = np.nan
    return out


def video_logit(sample_logits: Sequence[float], how: str = "mean", gates=None) -> float:
    """One video's logit from its samples' logits (`video_logits` for a single video); NaN when every
    sample is gated."""
    return float(video_logits(sample_logits, None, how, gates)[0])


def check_samples(df: pd.DataFrame) -> None:
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"scores table lacks column(s) {', '.join(missing)}; produce it with predict_scores")
    if df.empty:
        raise DataError("no scored samples to aggregate; check the split and that the videos were extracted")


def sample_logits(samples_df: pd.DataFrame) -> np.ndarray:
    """A scores table's sample logits, from its `prob` column (the score every table has; predict_scores
    writes prob = sigmoid(logit), which gives back the logit within the clip)."""
    return to_logit(samples_df["prob"].to_numpy(dtype=np.float64))


def sample_gates(samples_df: pd.DataFrame):
    """A scores table's per-sample gates (its GATE_COLUMN), or None when it has none."""
    if GATE_COLUMN not in samples_df.columns:
        return None
    return [g if isinstance(g, str) else None for g in samples_df[GATE_COLUMN].tolist()]


def evidence_rows(samples_df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a scores table that count as evidence (not gated; `evidence_mask`)."""
    gates = sample_gates(samples_df)
    return samples_df if gates is None else samples_df[evidence_mask(gates)]


def aggregate_videos(samples_df: pd.DataFrame, how: str = "mean") -> pd.DataFrame:
    """One row per (dataset, video_id): the video's facts, `n_samples`, `prob` and `logit`
    (`video_logits` of its samples; prob = sigmoid(logit)). With a GATE_COLUMN, also `n_gated` and
    `reason`: gated samples are left out, an all-gated video has NaN logit/prob (the specialist
    abstains) and `reason` its most common gate reason (None otherwise).

    Raises DataError when a video's samples disagree on its label (a corrupt scores table).
    """
    check_how(how)
    check_samples(samples_df)
    keys = ["dataset", "video_id"]
    grouped = samples_df.groupby(keys, sort=True, dropna=False)
    facts = [c for c in VIDEO_FACTS if c in samples_df.columns]
    n_labels = grouped["label"].nunique()
    if (n_labels > 1).any():
        bad = n_labels[n_labels > 1].index[0]
        raise DataError(f"video {bad[1]!r} ({bad[0]}) has samples with both labels; re-run predict_scores")

    out = grouped[facts].first()
    out["n_samples"] = grouped.size()
    # ngroup numbers the groups in the sorted order `out` has, so the codes line up with its rows.
    gates = sample_gates(samples_df)
    codes = grouped.ngroup().to_numpy()
    z = video_logits(sample_logits(samples_df), codes, how, gates)
    out["logit"] = z
    out["prob"] = sigmoid(z)
    out["label"] = out["label"].astype(int)
    extra = []
    if gates is not None:
        by_video: list[list] = [[] for _ in range(len(out))]
        for c, g in zip(codes.tolist(), gates):
            by_video[c].append(g)
        out["n_gated"] = [int((~evidence_mask(g)).sum()) for g in by_video]
        out["reason"] = [abstain_reason(g) for g in by_video]
        extra = ["n_gated", "reason"]
    return out.reset_index()[[*keys, *facts, "n_samples", *extra, "prob", "logit"]]


def auroc(scores, labels) -> float:
    """Area under the ROC curve of scores (probabilities or logits: any monotone score) against labels
    (1 = fake); NaN when the labels hold one class only (AUC is undefined there)."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    s = torch.tensor(np.array(scores, dtype=np.float64)).reshape(-1)
    y = torch.tensor(np.array(labels, dtype=np.int64)).reshape(-1)
    if y.numel() == 0 or bool((y == y[0]).all()):
        return float("nan")
    return float(binary_auroc(s, y))
