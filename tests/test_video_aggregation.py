"""One video-level aggregation: validation (VideoAUROC), evaluation (aggregate_videos), the panel fit
(video_logit_table) and detection (PanelDetector) give every video the same score from the same
samples, for every `how`, extreme probabilities (0 and 1) included; and one AUC rule for one class."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from factories import cache_on_disk as make_cache
from train_fakes import tiny_config

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.errors import ConfigError, DataError
from dfpanel.evaluate.run import evaluate_scores
from dfpanel.extract.cache import FaceTrackEntry, FrameRecord, TrackMeta
from dfpanel.inference.aggregate import (
    HOW,
    LOGIT_MAX,
    PROB_EPS,
    aggregate_videos,
    auroc,
    sigmoid,
    video_logit,
    video_logits,
)
from dfpanel.inference.runners import SpecialistRunner
from dfpanel.panel.combiner import Panel
from dfpanel.panel.fit import _specialist_auc, video_logit_table
from dfpanel.train.metrics import VideoAUROC

# Sample logits per video, all exact in float32 (detection's runners return float32). -800 and 40 are
# probabilities of exactly 0.0 and 1.0 in float64; -200 and 200 too, beyond the clip either way.
VIDEOS = {
    "a": (0, [-2.5, 0.5, 1.25, -0.75]),
    "b": (1, [40.0, 3.0, 2.5]),  # one sample of probability 1
    "c": (0, [-800.0, -1.5]),  # one sample of probability 0
    "d": (1, [200.0, 40.0]),  # all probability 1
    "e": (0, [-200.0, -800.0, -40.0]),  # all probability 0
    "f": (1, [0.25]),
    "g": (0, [5.0, -5.0, 0.0, 16.0, -16.5]),
}


def scores_table() -> pd.DataFrame:
    """The samples as predict_scores writes them (prob = sigmoid(logit) in float64)."""
    rows = []
    for vid, (label, logits) in VIDEOS.items():
        for pos, z in enumerate(logits):
            rows.append({"video_id": vid, "dataset": "ds", "label": label, "fake_type": "x", "split": "val",
                         "group": vid, "position": pos, "time": pos / 25, "logit": z, "prob": float(sigmoid(z))})
    return pd.DataFrame(rows)


class TableRunner(SpecialistRunner):
    """A detection runner whose sample i of the video has the table's logit i."""

    def __init__(self, logits):
        super().__init__(name="bg", title="BG", sample_kind="frame", clip_len=8, needs_audio=False, weights_id=None)
        self.logits = np.asarray(logits, dtype=np.float32)

    def view(self, entry, positions):
        return {"i": torch.tensor([positions[0]])}

    def predict(self, batch):
        return self.logits[batch["i"].reshape(-1).numpy()]


def entry_of(n: int) -> FaceTrackEntry:
    frames = [FrameRecord(index=i, time=i / 25, clip=0, box=[0, 0, 8, 8], crop_box=[0, 0, 8, 8],
                          landmarks=[[1, 1]] * 5, score=1.0, file="") for i in range(n)]
    meta = TrackMeta(video_id="v", dataset="d", source="", source_size=[8, 8], fps=25.0, duration=n / 25, codec="",
                     rotation=0, clip_len=8, frames=frames, audio=None)
    return FaceTrackEntry.from_memory(meta, [np.zeros((8, 8, 3), np.uint8)] * n)


def detection_logit(logits, how: str) -> float:
    runner = TableRunner(logits)
    det = PanelDetector([runner], Panel(aggregate=how), DetectConfig(batch_size=2), extract=lambda *a, **kw: [])
    out = det._score(runner, entry_of(len(logits)), {})
    assert out["status"] == "scored", out["reason"]
    return out["logit"]


@pytest.mark.parametrize("how", HOW)
def test_validation_eval_panel_fit_and_detection_agree(how):
    df = scores_table()
    names = sorted(VIDEOS)
    # evaluation
    ev = aggregate_videos(df, how).set_index("video_id")
    # panel fit
    table = video_logit_table({"bg": df}, how=how)
    # validation monitor (video ids as the data module numbers them)
    metric = VideoAUROC(how=how)
    video_no = {v: i for i, v in enumerate(names)}
    metric.update(torch.tensor(df["logit"].to_numpy(), dtype=torch.float32), torch.tensor(df["label"].to_numpy(), dtype=torch.float32),
                  torch.tensor(df["video_id"].map(video_no).to_numpy()))
    ids, val_z, val_labels = metric.video_scores()
    # detection
    det_z = [detection_logit(VIDEOS[v][1], how) for v in names]

    expected = np.array([video_logit(VIDEOS[v][1], how) for v in names])
    assert np.isfinite(expected).all() and (np.abs(expected) <= LOGIT_MAX).all()
    np.testing.assert_allclose(ev.loc[names, "logit"], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table.loc[[("ds", v) for v in names], "bg"], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(val_z, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(det_z, expected, rtol=0, atol=1e-9)
    assert list(ids) == list(range(len(names))) and list(val_labels) == [VIDEOS[v][0] for v in names]
    np.testing.assert_allclose(ev.loc[names, "prob"], sigmoid(expected), rtol=0, atol=1e-9)
    # and so the video AUC the monitor reports is the one metrics.json reports
    auc = evaluate_scores(df, how=how)["video"]["overall"]["auc"]
    assert float(metric.compute()["video_auc"]) == pytest.approx(auc, abs=1e-12)


def test_the_rule_itself():
    z = [-800.0, 40.0, 2.0]
    p = np.clip(sigmoid(z), PROB_EPS, 1 - PROB_EPS)
    assert video_logit(z, "mean") == pytest.approx(math.log(p.mean() / (1 - p.mean())))
    assert video_logit(z, "median") == pytest.approx(2.0)
    assert video_logit(z, "max") == pytest.approx(LOGIT_MAX)
    assert video_logit(z, "logit_mean") == pytest.approx((-LOGIT_MAX + LOGIT_MAX + 2.0) / 3)
    assert video_logit([math.inf], "mean") == pytest.approx(LOGIT_MAX)  # finite at the extremes
    assert video_logit([-math.inf], "logit_mean") == pytest.approx(-LOGIT_MAX)
    assert np.isnan(video_logits([0.0, math.nan, 1.0], [0, 1, 1])[1])  # a NaN sample is not skipped
    assert video_logits([1.0, 2.0, 3.0], ["y", "x", "y"], "max").tolist() == [2.0, 3.0]  # sorted by video
    with pytest.raises(ConfigError, match="logit_mean"):
        video_logit([0.0], "mode")
    with pytest.raises(DataError):
        video_logit([], "mean")


def test_one_class_auc_is_nan_everywhere():
    assert math.isnan(auroc([0.2, 0.9], [1, 1])) and auroc([0.2, 0.9], [0, 1]) == 1.0
    fakes = scores_table().query("label == 1")
    m = evaluate_scores(fakes)["video"]["overall"]
    assert math.isnan(m["auc"]) and "only fake" in m["notes"][0]
    metric = VideoAUROC()
    metric.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), torch.tensor([0, 1]))
    out = metric.compute()
    assert math.isnan(float(out["video_auc"])) and math.isnan(float(out["frame_auc"]))
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(VideoAUROC().compute()["video_auc"]))  # nothing seen
    table = pd.DataFrame({"label": [1, 1, 0], "av": [1.0, 2.0, np.nan], "bg": [1.0, 2.0, 0.0]})
    aucs, notes = _specialist_auc(table, ["av", "bg"])
    assert aucs == {"av": None, "bg": 1.0}  # null in panel.json, which has no NaN
    assert len(notes) == 1 and notes[0].startswith("AV:")


def test_a_validation_split_without_both_classes_trains_on_without_early_stopping(tmp_path, caplog):
    """An all-fake val split (AUC undefined) still trains: a warning, no early stopping, the last
    epoch's weights, and val_auc written as null (JSON has no NaN), never a made-up 0.5."""
    import json

    from dfpanel.train.stage import train_stage

    cache = make_cache(tmp_path / "cache", counts={"train": (2, 2), "val": (0, 2)})
    cfg = tiny_config(cache, "fakeframe", "trainer.max_epochs=3", "trainer.early_stopping_patience=1")
    with caplog.at_level("WARNING"):
        result = train_stage(cfg, tmp_path / "run", progress=False)
    assert any("'val' samples are all fake" in r.getMessage() and "early stopping is off" in r.getMessage() for r in caplog.records)
    assert result["epochs"] == 3  # patience 1 on an undefined AUC would have stopped after epoch 2
    side = json.loads((tmp_path / "run" / "best.json").read_text())
    assert side["metrics"]["val_auc"] is None and side["metrics"]["epoch"] == 2


def test_best_weights_never_take_a_nan_over_a_real_score(tmp_path):
    from dfpanel.train.run import BestWeights

    cb = BestWeights(tmp_path / "best.safetensors", {})
    bests = []
    for auc in (math.nan, 0.7, math.nan, 0.6, 0.8):
        trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val_auc": torch.tensor(auc)},
                                  global_step=1, current_epoch=0, is_global_zero=False)
        cb.on_validation_end(trainer, None)
        bests.append(cb.best_score)
    assert math.isnan(bests[0]) and bests[1:] == pytest.approx([0.7, 0.7, 0.7, 0.8])


def test_best_weights_break_a_video_auc_tie_by_frame_auc(tmp_path):
    from dfpanel.train.run import BestWeights

    cb = BestWeights(tmp_path / "best.safetensors", {})
    epochs = []
    for epoch, (auc, frame) in enumerate([(0.9, 0.7), (1.0, 0.8), (1.0, 0.85), (1.0, 0.82), (0.95, 0.99)]):
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=False, global_step=epoch, current_epoch=epoch,
                                  callback_metrics={"val_auc": torch.tensor(auc), "val_frame_auc": torch.tensor(frame)})
        cb.on_validation_end(trainer, None)
        epochs.append(cb.best_metrics["epoch"])
    # A saturated video AUC (1.0 from epoch 1) keeps the epoch that tells frames apart best, never a lower video AUC.
    assert epochs == [0, 1, 2, 2, 2]
    assert cb.load_state_dict(cb.state_dict()) is None and cb.best_tiebreak == pytest.approx(0.85)


def test_the_train_command_prints_an_undefined_val_auc_and_exits_zero(tmp_path, capsys):
    """The CLI's result table once crashed formatting a null val_auc after such a run."""
    import train_fakes  # noqa: F401  (registers the stand-in specialists)

    from dfpanel.cli import main

    cache = make_cache(tmp_path / "cache", counts={"train": (2, 2), "val": (2, 0)})
    sets = ["model.specialist=fakeframe", "model.backbone=null", "model.pretrained=null", "model.image_size=null",
            "model.dropout=null", "data.dataset=null", "data.max_videos=null", "data.frames_per_video=null",
            "data.val_frames_per_video=null", "data.batch_size=8", "trainer.max_epochs=1"]
    argv = ["train", "--config", "cm/tiny_ffpp", "--data", str(cache), "--out", str(tmp_path / "run"), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    assert "undefined" in "".join(capsys.readouterr().out.split())
