"""Video-level aggregation and the frame/video x overall/per-dataset/per-fake-type breakdown."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfpanel.errors import ConfigError, DataError
from dfpanel.evaluate.run import evaluate_scores
from dfpanel.inference.aggregate import aggregate_videos


def samples_table(seed: int = 0, frames: int = 6, noise: float = 2.0) -> pd.DataFrame:
    """Sample rows as predict_scores writes them: a per-video signal drowned in per-frame noise."""
    rng = np.random.default_rng(seed)
    videos = (
        [("ffpp", "real", 0)] * 12
        + [("ffpp", "Deepfakes", 1)] * 8
        + [("ffpp", "FaceSwap", 1)] * 8
        + [("celebdf", "real", 0)] * 10
        + [("celebdf", "Celeb-synthesis", 1)] * 10
    )
    rows = []
    for i, (ds, ft, label) in enumerate(videos):
        centre = rng.normal(1.0 if label else -1.0, 0.6)
        for k in range(frames):
            logit = centre + rng.normal(0, noise)
            rows.append(
                dict(video_id=f"v{i:03d}", dataset=ds, label=label, fake_type=ft, split="test", group=f"g{i}",
                     position=k, time=k / 25, logit=logit, prob=1 / (1 + math.exp(-logit)))  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_aggregate_mean_median_max_logit_mean():
    df = samples_table()
    for how, expected in (
        ("mean", df.groupby("video_id")["prob"].mean()),
        ("median", df.groupby("video_id")["prob"].median()),
        ("max", df.groupby("video_id")["prob"].max()),
        ("logit_mean", 1 / (1 + np.exp(-df.groupby("video_id")["logit"].mean()))),
    ):
        v = aggregate_videos(df, how=how).set_index("video_id")
        np.testing.assert_allclose(v["prob"], expected.loc[v.index], rtol=1e-9, err_msg=how)
        np.testing.assert_allclose(1 / (1 + np.exp(-v["logit"])), v["prob"], rtol=1e-6, err_msg=how)
    v = aggregate_videos(df)
    assert len(v) == df["video_id"].nunique() and (v["n_samples"] == 6).all()
    first = df.groupby("video_id")[["label", "fake_type", "group", "dataset"]].first()
    pd.testing.assert_frame_equal(v.set_index("video_id")[first.columns].sort_index(), first.sort_index())


def test_same_id_in_two_datasets_stays_two_videos():
    df = samples_table().head(12)  # v000, v001: ffpp reals
    other = df.assign(dataset="dfdc", prob=0.99)
    v = aggregate_videos(pd.concat([df, other]))
    assert len(v) == 4
    np.testing.assert_allclose(v[v["dataset"] == "dfdc"]["prob"], 0.99)
    own = v[v["dataset"] == "ffpp"].set_index("video_id")["prob"]
    np.testing.assert_allclose(own, df.groupby("video_id")["prob"].mean().loc[own.index])


def test_aggregate_rejects_bad_tables():
    df = samples_table()
    with pytest.raises(ConfigError, match="aggregation"):
        aggregate_videos(df, how="mode")
    with pytest.raises(DataError, match="no scored samples"):
        aggregate_videos(df.iloc[:0])
    with pytest.raises(DataError, match="prob"):
        aggregate_videos(df.drop(columns="prob"))
    broken = df.copy()
    broken.loc[0, "label"] = 1  # first frame of a real video claims to be fake
    with pytest.raises(DataError, match="both labels"):
        aggregate_videos(broken)


def test_breakdown_per_fake_type_uses_reals_of_its_dataset():
    df = samples_table()
    res = evaluate_scores(df)
    assert set(res) == {"frame", "video"}
    video = res["video"]
    assert set(video["by_dataset"]) == {"ffpp", "celebdf"}
    assert set(video["by_fake_type"]) == {"Deepfakes", "FaceSwap", "Celeb-synthesis"}

    df_ = video["by_fake_type"]["Deepfakes"]
    assert (df_["n_real"], df_["n_fake"]) == (12, 8)  # ffpp reals only, not celebdf's
    cs = video["by_fake_type"]["Celeb-synthesis"]
    assert (cs["n_real"], cs["n_fake"]) == (10, 10)
    assert res["frame"]["by_fake_type"]["FaceSwap"]["n"] == (12 + 8) * 6

    v = aggregate_videos(df)
    sub = v[(v["dataset"] == "ffpp") & v["fake_type"].isin(["real", "Deepfakes"])]
    assert df_["auc"] == pytest.approx(roc_auc_score(sub["label"], sub["prob"]), abs=1e-6)
    assert video["overall"]["auc"] == pytest.approx(roc_auc_score(v["label"], v["prob"]), abs=1e-6)
    assert res["frame"]["overall"]["auc"] == pytest.approx(roc_auc_score(df["label"], df["prob"]), abs=1e-6)
    assert video["overall"]["n"] == 48 and res["frame"]["overall"]["n"] == 48 * 6


def test_video_level_averages_out_frame_noise():
    res = evaluate_scores(samples_table(seed=3, frames=16, noise=3.0))
    assert res["video"]["overall"]["auc"] > res["frame"]["overall"]["auc"] + 0.05


def test_fake_type_without_reals_is_nan_not_a_crash():
    df = samples_table()
    only_fakes = df[df["dataset"] == "celebdf"].assign(dataset="fakeonly")
    only_fakes = only_fakes[only_fakes["label"] == 1]
    res = evaluate_scores(pd.concat([df[df["dataset"] == "ffpp"], only_fakes]))
    m = res["video"]["by_fake_type"]["Celeb-synthesis"]
    assert math.isnan(m["auc"]) and m["notes"]
    assert math.isnan(res["video"]["by_dataset"]["fakeonly"]["auc"])
    assert math.isfinite(res["video"]["overall"]["auc"])


def test_a_set_where_every_sample_is_gated_is_an_abstention_not_an_error():
    from dfpanel.evaluate.tables import table_rows

    df = samples_table().assign(gate="no speech in the clip")  # AV on a silent test set
    metrics = evaluate_scores(df)
    assert metrics["video"]["overall"]["n"] == 0 and "abstains" in metrics["video"]["overall"]["notes"][0]
    assert metrics["gated"] == {"samples": len(df), "abstained_videos": df["video_id"].nunique()}
    results = {"runs": [{"weights": {"specialist": "av", "stage": "dfdc"},
                         "test_sets": [{"name": "dfdc", **metrics}]}], "aggregate": "mean", "split": "test"}
    _, rows = table_rows(results)
    assert rows[0][2] == "0" and set(rows[0][3:]) == {"n/a"}  # no made-up numbers in the table
