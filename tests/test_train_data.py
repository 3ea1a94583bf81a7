"""Datasets over the cache, class balance, augmentation and the video-level monitor."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from factories import cache_on_disk
from train_fakes import FakeClipSpecialist, FakeFrameSpecialist, tiny_config

from dfpanel.extract.cache import FaceTrackCache
from dfpanel.train.augment import CropAugmenter
from dfpanel.train.datamodule import CacheDataModule
from dfpanel.train.metrics import VideoAUROC
from dfpanel.views.samples import (
    ClipSampleDataset,
    FrameSampleDataset,
    balanced_sampler,
    pos_weight_from_labels,
    select_rows,
    spaced,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_on_disk(tmp_path_factory.mktemp("cache"), counts={"train": (2, 6), "val": (2, 2)}, n_frames=8, clip_len=4)


def test_frame_dataset_has_one_sample_per_cached_frame(cache):
    rows = select_rows(FaceTrackCache(cache).rows(), split="train")
    ds = FrameSampleDataset(cache, rows, FakeFrameSpecialist().view)
    assert len(ds) == 8 * 8
    inputs, label, meta = ds[13]
    video, position = ds.items[13]
    assert position == 13 % 8 and meta["position"] == position and meta["video"] == video
    assert meta["time"] == pytest.approx(position / 25.0)
    assert float(label) == rows[video].label and inputs["image"].shape == (3, 16, 16)
    capped = FrameSampleDataset(cache, rows, FakeFrameSpecialist().view, per_video=3)
    assert [k for v, k in capped.items if v == 0] == [0, 4, 7]


def test_clip_dataset_gives_the_clip_positions_in_time_order(cache):
    rows = select_rows(FaceTrackCache(cache).rows(), split="val")
    seen = []
    ds = ClipSampleDataset(cache, rows, lambda entry, pos: seen.append(list(pos)) or {"x": torch.zeros(1)})
    assert len(ds) == len(rows) * 2
    ds[0], ds[1]
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_select_rows_filters_and_caps_with_both_classes(cache):
    rows = FaceTrackCache(cache).rows()
    train = select_rows(rows, split="train")
    assert len(train) == 8 and {r.split for r in train} == {"train"}
    capped = select_rows(rows, split="train", max_videos=4, seed=1)
    assert Counter(r.label for r in capped) == {0: 2, 1: 2}
    ids = {train[0].id, train[-1].id}
    assert {r.id for r in select_rows(rows, ids=ids)} == ids
    assert select_rows(rows, dataset="celebdf") == []
    assert spaced(10, 4) == [0, 3, 6, 9] and spaced(3, None) == [0, 1, 2]


def test_balanced_sampler_draws_classes_equally():
    labels = [0] * 20 + [1] * 180
    drawn = [labels[i] for i in balanced_sampler(labels, num_samples=4000, generator=torch.Generator().manual_seed(0))]
    assert 0.45 < np.mean(drawn) < 0.55  # unbalanced it would be 0.9


def test_pos_weight_comes_from_the_train_split(cache):
    assert pos_weight_from_labels([0, 0, 0, 1]) == 3.0
    assert pos_weight_from_labels([1, 1]) == 1.0
    view = FakeFrameSpecialist().view
    plain = CacheDataModule(tiny_config(cache, "fakeframe", "data.balanced=false"), view, "frame")
    assert plain.pos_weight == pytest.approx(2 / 6)  # 2 real, 6 fake training videos (same frames each)
    sampled = CacheDataModule(tiny_config(cache, "fakeframe", "data.balanced=true"), view, "frame")
    assert sampled.pos_weight == 1.0  # the sampler already evens the classes out
    fixed = CacheDataModule(tiny_config(cache, "fakeframe", "optim.pos_weight=2.5"), view, "frame")
    assert fixed.pos_weight == 2.5


def test_clip_augmentation_draws_once_per_clip_and_moves_the_box(cache):
    entry = FaceTrackCache(cache).entry(FaceTrackCache(cache).rows()[0])
    aug = CropAugmenter([{"name": "HorizontalFlip", "p": 0.5}])
    flips = Counter()
    for seed in range(12):
        out = aug(entry, [0, 1, 2, 3], seed)
        flipped = [np.array_equal(out.crop(p), entry.crop(p)[:, ::-1]) for p in range(4)]
        assert len(set(flipped)) == 1  # all frames of the clip or none
        flips[flipped[0]] += 1
        f0, g0 = entry.meta.frames[0], out.meta.frames[0]
        if flipped[0]:  # the face box mirrors inside the crop: x0' - cx0 = cx1 - x1
            assert g0.box[0] - f0.crop_box[0] == pytest.approx(f0.crop_box[2] - f0.box[2], abs=1.01)
        else:
            assert g0.box == pytest.approx(f0.box)
        assert np.array_equal(out.crop(5), entry.crop(5))  # untouched positions read through
    assert flips[True] and flips[False]
    assert entry.meta.frames[0].box == [106, 66, 118, 78]  # the original entry is never modified


def test_unknown_or_misconfigured_transform_is_a_config_error():
    from dfpanel.errors import ConfigError

    with pytest.raises(ConfigError, match="NoSuchFlip"):
        CropAugmenter([{"name": "NoSuchFlip"}])
    assert not CropAugmenter([])


def test_video_auc_scores_video_means_not_frames():
    metric = VideoAUROC()
    # sample logits; video 0 real: probabilities 0.1, 0.7 (mean 0.4); video 1 fake: 0.6, 0.6 (mean 0.6)
    logits = torch.logit(torch.tensor([0.1, 0.7, 0.6, 0.6], dtype=torch.float64)).float()
    metric.update(logits, torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    out = metric.compute()
    assert out["video_auc"] == pytest.approx(1.0)
    assert out["frame_auc"] == pytest.approx(0.5)  # 2 of 4 real-fake frame pairs ordered right
    metric.reset()
    metric.update(torch.tensor([0.3]), torch.tensor([1.0]), torch.tensor([4]))
    assert torch.isnan(metric.compute()["video_auc"])  # one class: undefined (NaN), as in metrics.json


def test_predict_scores_one_row_per_sample(cache):
    from dfpanel.inference.scores import COLUMNS, predict_scores

    model = FakeClipSpecialist()
    df = predict_scores(model, cache, split="val", batch_size=3, progress=False)
    assert list(df.columns) == COLUMNS
    assert len(df) == 4 * 2 and set(df["split"]) == {"val"}
    assert sorted(df["position"].unique()) == [0, 4]
    assert np.allclose(df["prob"], 1 / (1 + np.exp(-df["logit"])))
    assert df.groupby("video_id")["label"].nunique().max() == 1
    assert model.training  # left as it was found


def test_predict_scores_of_an_empty_selection_is_an_empty_table(cache):
    # A manifest with no video of the split (synthetic DFDC had no test split) must not crash scoring.
    from dfpanel.inference.scores import COLUMNS, predict_scores

    df = predict_scores(FakeClipSpecialist(), cache, manifest=[], progress=False)
    assert list(df.columns) == COLUMNS and len(df) == 0
