"""Pseudo-fakes in training: the dataset wrapper, mask targets, paired batches, gated samples, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import cache_on_disk
from train_fakes import FakeFrameSpecialist, tiny_config

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import EditedEntry, FaceTrackCache
from dfpanel.models.specialists.base import SpecialistOutput, create_specialist
from dfpanel.pseudofakes.base import (
    PseudoFake,
    PseudoFakeGenerator,
    register_pseudofake,
)
from dfpanel.train.augment import CropAugmenter
from dfpanel.train.datamodule import CacheDataModule, real_partners
from dfpanel.train.module import SpecialistModule
from dfpanel.train.pseudo import PseudoFakeDataset, mix_weights, pseudo_sources
from dfpanel.train.sampling import PairedBatchSampler
from dfpanel.views.samples import FrameSampleDataset, select_rows


class LeftHalfPatch(PseudoFakeGenerator):
    """Test generator: the left half of each crop set to a value drawn from the rng; mask = that half."""

    name = "test_left_half"
    traces = ("test",)
    params = {"lo": 200, "hi": 255}

    def make(self, entry, positions, rng, donor=None):
        value = int(rng.integers(self.options["lo"], self.options["hi"] + 1))
        crops, masks = {}, {}
        for p in positions:
            crop = entry.crop(p).copy()
            w = crop.shape[1] // 2
            crop[:, :w] = value
            mask = np.zeros(crop.shape[:2], np.float32)
            mask[:, :w] = 1.0
            crops[p], masks[p] = crop, mask
        return PseudoFake(EditedEntry(entry, crops=crops), masks, {"value": value})


class NeverApplies(PseudoFakeGenerator):
    name = "test_never"

    def applies(self, entry, positions):
        return False


@pytest.fixture(autouse=True, scope="module")
def test_generators():
    """Registered for this module only, so other tests (the preview's default list) never see them."""
    from dfpanel.pseudofakes import base as registry

    for cls in (LeftHalfPatch, NeverApplies):
        register_pseudofake(cls)
    yield
    for cls in (LeftHalfPatch, NeverApplies):
        registry._REGISTRY.pop(cls.name, None)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_on_disk(tmp_path_factory.mktemp("pfcache"), counts={"train": (3, 3), "val": (2, 2)}, n_frames=4, clip_len=4)


def image_view(entry, positions):
    return {"image": torch.from_numpy(entry.crop(positions[0]).copy()).permute(2, 0, 1).float() / 255}


def base_set(cache, split="train", augment=None, gate=None):
    rows = select_rows(FaceTrackCache(cache).rows(), split=split)
    return FrameSampleDataset(cache, rows, image_view, augment=augment, gate=gate)


def test_only_mode_twins_every_real_sample_and_never_touches_a_fake(cache):
    base = base_set(cache)
    ds = PseudoFakeDataset(base, [(LeftHalfPatch(), 1.0)], mode="only", seed=3, train=False)
    reals = [i for i, y in enumerate(base.labels) if y == 0]
    assert ds.sources == reals and len(ds) == len(base) + len(reals)
    assert ds.labels[len(base):] == [1] * len(reals)
    for j, src in enumerate(ds.sources):
        inputs, label, meta = ds[len(base) + j]
        real_inputs, real_label, _ = ds[src]
        assert float(label) == 1.0 and float(real_label) == 0.0 and meta["pair"] == src
        img, real = inputs["image"], real_inputs["image"]
        w = img.shape[2] // 2
        assert torch.equal(img[:, :, w:], real[:, :, w:])  # untouched half is the real sample, bit for bit
        assert (img[:, :, :w] >= 200 / 255 - 1e-6).all()
    for i in range(len(base)):  # base items come through unchanged
        assert torch.equal(ds[i][0]["image"], base[i][0]["image"])


def test_pseudo_items_are_deterministic_per_seed(cache):
    base = base_set(cache)
    first = len(base)
    val = PseudoFakeDataset(base, [(LeftHalfPatch(lo=0, hi=255), 1.0)], mode="only", seed=3, train=False)
    again = PseudoFakeDataset(base, [(LeftHalfPatch(lo=0, hi=255), 1.0)], mode="only", seed=3, train=False)
    other = PseudoFakeDataset(base, [(LeftHalfPatch(lo=0, hi=255), 1.0)], mode="only", seed=4, train=False)
    a = [val[first + j][0]["image"] for j in range(len(val.sources))]
    assert all(torch.equal(x, val[first + j][0]["image"]) for j, x in enumerate(a))  # validation: same every time
    assert all(torch.equal(x, again[first + j][0]["image"]) for j, x in enumerate(a))
    assert any(not torch.equal(x, other[first + j][0]["image"]) for j, x in enumerate(a))
    train = PseudoFakeDataset(base, [(LeftHalfPatch(lo=0, hi=255), 1.0)], mode="only", seed=3, train=True)
    np.random.seed(7)
    t1 = [train[first + j][0]["image"] for j in range(len(train.sources))]
    np.random.seed(7)
    t2 = [train[first + j][0]["image"] for j in range(len(train.sources))]
    assert all(torch.equal(x, y) for x, y in zip(t1, t2))  # training draws follow numpy's (worker-seeded) state


def test_mix_mode_gives_pseudofakes_their_ratio_of_the_fake_draws(cache):
    base = base_set(cache)
    reals = [i for i, y in enumerate(base.labels) if y == 0]
    assert pseudo_sources(base, "mix") == reals == pseudo_sources(base, "only") and pseudo_sources(base, "off") == []
    labels = [0] * 10 + [1] * 90 + [1] * 10  # 10 reals, 90 dataset fakes, 10 pseudo-twins
    pseudo = [False] * 100 + [True] * 10
    w = np.array(mix_weights(labels, pseudo, ratio=0.3, balanced=True))
    assert w.sum() == pytest.approx(1.0)
    assert w[:10].sum() == pytest.approx(0.5) and w[100:].sum() == pytest.approx(0.15) and w[10:100].sum() == pytest.approx(0.35)
    natural = np.array(mix_weights(labels, pseudo, ratio=0.3, balanced=False))
    assert natural[:10].sum() == pytest.approx(0.1) and natural[100:].sum() == pytest.approx(0.27)
    ds = PseudoFakeDataset(base, [(LeftHalfPatch(), 1.0)], mode="mix", ratio=0.3, seed=0)
    weights = np.array(ds.sample_weights(balanced=True))
    assert weights[len(base):].sum() == pytest.approx(0.15)
    assert PseudoFakeDataset(base, [(LeftHalfPatch(), 1.0)], mode="only", seed=0).sample_weights(True) is None


def test_a_sample_no_generator_can_make_is_gated_not_mislabelled(cache):
    base = base_set(cache)
    ds = PseudoFakeDataset(base, [(NeverApplies(), 1.0)], mode="only", seed=0, train=False)
    _, label, meta = ds[len(base)]
    assert float(label) == 1.0 and meta["weight"] == 0.0
    assert ds[0][2]["weight"] == 1.0


def test_mask_target_follows_the_mask_through_a_flip(cache):
    base = base_set(cache)
    plain = PseudoFakeDataset(base, [(LeftHalfPatch(), 1.0)], mode="only", seed=0, train=False, mask_input="image")
    _, _, meta = plain[len(base)]
    target = meta["mask"][0]
    assert target.shape == (7, 7) and meta["mask_weight"] == 1.0
    assert target[:, :3].min() > 0.9 and target[:, 4:].max() < 0.1  # left half set, right half clear
    flipped_base = base_set(cache, augment=CropAugmenter([{"name": "HorizontalFlip", "p": 1.0}]))
    flipped = PseudoFakeDataset(flipped_base, [(LeftHalfPatch(), 1.0)], mode="only", seed=0, train=False, mask_input="image")
    inputs, _, meta = flipped[len(base)]
    assert meta["mask"][0][:, 4:].min() > 0.9 and meta["mask"][0][:, :3].max() < 0.1
    w = inputs["image"].shape[2] // 2
    assert (inputs["image"][:, :, w:] >= 200 / 255 - 1e-6).all()  # the patch moved with the mask
    real_meta = plain[0][2]
    assert float(real_meta["mask"].abs().sum()) == 0.0 and real_meta["mask_weight"] == 1.0
    fake_index = next(i for i, y in enumerate(base.labels) if y == 1)
    assert plain[fake_index][2]["mask_weight"] == 0.0  # a dataset fake's mask is unknown


def test_paired_batches_put_each_fake_next_to_its_own_real(cache):
    base = base_set(cache)
    groups = {}
    for row in base.rows:  # pair fake i with real i by group, as an index would record it
        row.group = f"g{row.id.rsplit('_', 1)[-1]}"
        groups.setdefault(row.group, []).append(row)
    ds = PseudoFakeDataset(base, [(LeftHalfPatch(), 1.0)], mode="mix", ratio=0.5, seed=0, pair_of=real_partners(base))
    pairs = ds.pairs()
    sampler = PairedBatchSampler(ds.labels, pairs, batch_size=6, num_samples=60, seed=0)
    batches = list(sampler)
    assert len(batches) == 10 and all(len(b) == 6 for b in batches)
    for batch in batches:
        for fake, real in zip(batch[::2], batch[1::2]):
            assert ds.labels[fake] == 1 and ds.labels[real] == 0
            assert real in pairs[fake]
            if ds.is_pseudo(fake):
                assert ds.sources[fake - len(base)] == real
            else:
                assert base.rows[base.items[real][0]].group == base.rows[base.items[fake][0]].group


def test_paired_batches_split_across_ranks_without_duplicates(monkeypatch):
    labels = [0] * 10 + [1] * 10
    pairs = [[] for _ in range(10)] + [[i] for i in range(10)]
    one = PairedBatchSampler(labels, pairs, batch_size=4, num_samples=40, seed=5)
    whole = one.batches(10, epoch=0)
    got = []
    for rank in (0, 1):
        monkeypatch.setattr("dfpanel.train.sampling._rank_world", lambda r=rank: (r, 2))
        s = PairedBatchSampler(labels, pairs, batch_size=4, num_samples=40, seed=5)
        got.append(list(s))
        assert len(got[-1]) == len(s) == 5
    assert sorted(got[0] + got[1]) == sorted(whole)
    assert got[0] != got[1]


def test_loss_ignores_gated_samples_and_trains_the_mask_head():
    module = SpecialistModule("fakeframe", model=FakeFrameSpecialist(), optim={"aux_weight": 0.0}, mask_weight=2.0)
    logits = torch.tensor([3.0, -1.0, 0.5])
    labels = torch.tensor([0.0, 1.0, 1.0])
    out = SpecialistOutput(logit=logits, aux_logit=logits)
    gated = module.loss(out, labels, {"weight": torch.tensor([0.0, 1.0, 1.0])})
    kept = module.loss(SpecialistOutput(logit=logits[1:], aux_logit=logits[1:]), labels[1:], {})
    assert gated == pytest.approx(float(kept))
    mask_logit = torch.zeros(3, 1, 7, 7, requires_grad=True)
    meta = {"weight": torch.ones(3), "mask": torch.ones(3, 1, 7, 7), "mask_weight": torch.tensor([1.0, 0.0, 1.0])}
    with_mask = module.loss(SpecialistOutput(logit=logits, aux_logit=logits, mask_logit=mask_logit), labels, meta)
    without = module.loss(out, labels, {"weight": torch.ones(3)})
    assert float((with_mask - without).detach()) == pytest.approx(2.0 * float(torch.nn.functional.softplus(torch.tensor(0.0))), rel=1e-5)
    with_mask.backward()
    assert mask_logit.grad[1].abs().sum() == 0 and mask_logit.grad[0].abs().sum() > 0


def test_mask_head_only_where_a_specialist_has_a_mask_input():
    bg = create_specialist("bg", backbone="tiny", image_size=64, mask_head=True)
    out = bg(bg.example_inputs(batch=2))
    assert out.mask_logit.shape == (2, 1, 7, 7)
    assert create_specialist("bg", backbone="tiny", image_size=64)(bg.example_inputs(batch=2)).mask_logit is None
    with pytest.raises(ConfigError, match="mask head"):
        create_specialist("cm", backbone="tiny", image_size=64, mask_head=True)


def test_datamodule_only_mode_trains_from_reals_and_validates_with_both_classes(cache):
    cfg = tiny_config(cache, "fakeframe", "pseudofakes.mode=only", "pseudofakes.generators=[{name: test_left_half}]")
    dm = CacheDataModule(cfg, image_view, "frame")
    assert all(r.label == 0 for r in dm.train_rows + dm.val_rows)
    assert set(dm.train_set.labels) == {0, 1} and set(dm.val_set.labels) == {0, 1} and dm.val_one_class is None
    # Validation's video-level AUC must be defined: a twin is a video of its own, never its real's.
    from dfpanel.train.metrics import VideoAUROC

    metric = VideoAUROC()
    for inputs, labels, meta in dm.val_dataloader():
        score = labels * 2.0 - 1.0  # a perfect detector
        metric.update(score, labels, meta["video"])
    assert metric.compute()["video_auc"] == pytest.approx(1.0)
    batch = next(iter(dm.train_dataloader()))
    assert {"weight", "pair"} <= set(batch[2])


def test_pseudofake_config_errors_name_the_key(cache):
    with pytest.raises(ConfigError, match="pseudofakes.mode"):
        tiny_config(cache, "fakeframe", "pseudofakes.mode=sometimes")
    with pytest.raises(ConfigError, match="unknown pseudo-fake generator"):
        tiny_config(cache, "fakeframe", "pseudofakes.mode=mix", "pseudofakes.generators=[{name: nope}]")
    with pytest.raises(ConfigError, match="unknown option"):
        tiny_config(cache, "fakeframe", "pseudofakes.mode=mix", "pseudofakes.generators=[{name: test_left_half, size: 3}]")
    with pytest.raises(ConfigError, match="no pseudo-fake generators"):
        tiny_config(cache, "fakeframe", "pseudofakes.mode=mix")


def test_a_folder_of_real_videos_alone_indexes(tmp_path):
    from dfpanel.index.base import IndexOptions, detect_layout, get_layout

    for name in ("a.mp4", "p1/b.mp4", "p2/c.mp4"):
        path = tmp_path / "real" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00")
    layout = get_layout("folder")
    options = IndexOptions(probe_audio=False)
    records = layout.index(tmp_path, options)
    assert sorted(r.path for r in records) == ["real/a.mp4", "real/p1/b.mp4", "real/p2/c.mp4"]
    assert {r.label for r in records} == {0} and any("real videos only" in n for n in options.notes)
    assert detect_layout(tmp_path) == "folder"
