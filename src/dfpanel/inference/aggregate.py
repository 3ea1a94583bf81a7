"""Video-level scores from sample-level scores (one row per frame or clip -> one row per video).

The field reports video-level metrics with a video's score = the mean of its frames' probabilities;
median, max and the mean of logits are offered too. `max` is sensitive to one bad frame (it flags any
video with a single suspicious frame), `logit_mean` weighs confident frames more than `mean` does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dfpanel.errors import ConfigError, DataError

HOW = ("mean", "median", "max", "logit_mean")
SAMPLE_COLUMNS = ("video_id", "dataset", "label", "prob")
# Per-video facts carried over unchanged when present (they are constant within a video).
VIDEO_FACTS = ("label", "fake_type", "split", "group")
_LOGIT_CLIP = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def check_samples(df: pd.DataFrame) -> None:
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"scores table lacks column(s) {', '.join(missing)}; produce it with predict_scores")
    if df.empty:
        raise DataError("no scored samples to aggregate; check the split and that the videos were extracted")


def aggregate_videos(samples_df: pd.DataFrame, how: str = "mean") -> pd.DataFrame:
    """One row per (dataset, video_id): the video's facts, `n_samples`, `prob` and `logit`.

    Raises DataError when a video's samples disagree on its label (a corrupt scores table).
    """
    if how not in HOW:
        raise ConfigError(f"unknown aggregation {how!r}; choose one of {', '.join(HOW)}")
    check_samples(samples_df)
    df = samples_df.copy()
    if how == "logit_mean":
        if "logit" not in df.columns:
            df["logit"] = _logit(df["prob"].to_numpy(dtype=np.float64))
        value, reducer = "logit", "mean"
    else:
        value, reducer = "prob", how

    keys = ["dataset", "video_id"]
    grouped = df.groupby(keys, sort=True, dropna=False)
    facts = [c for c in VIDEO_FACTS if c in df.columns]
    n_labels = grouped["label"].nunique()
    if (n_labels > 1).any():
        bad = n_labels[n_labels > 1].index[0]
        raise DataError(f"video {bad[1]!r} ({bad[0]}) has samples with both labels; re-run predict_scores")

    out = grouped[facts].first()
    out["n_samples"] = grouped.size()
    agg = grouped[value].agg(reducer).to_numpy(dtype=np.float64)
    if value == "logit":
        out["logit"] = agg
        out["prob"] = 1.0 / (1.0 + np.exp(-agg))
    else:
        out["prob"] = agg
        out["logit"] = _logit(agg)
    out["label"] = out["label"].astype(int)
    return out.reset_index()[[*keys, *facts, "n_samples", "prob", "logit"]]
