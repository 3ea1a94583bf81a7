"""One batched scoring loop (`predict_batches`) under both the cache scorer (predict_scores: eval and
panel fit) and detection (PanelDetector), for torch models and ONNX-style callables alike; and ONNX
runners that take a specialist's view from its class and config without building a backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detect_fakes import fake_extract, fake_runners
from factories import SMALL_SPECIALIST as SMALL
from factories import cache_on_disk as make_cache
from factories import memory_entry as make_entry
from train_fakes import FakeClipSpecialist

import dfpanel.detect.pipeline as pipeline_mod
import dfpanel.inference.scores as scores_mod
from dfpanel.detect.discovery import VideoInfo
from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.inference import batches
from dfpanel.inference.batches import GroupViews, predict_batches, torch_predict
from dfpanel.inference.runners import OnnxRunner, load_runners
from dfpanel.models.specialists.base import (
    create_specialist,
    list_specialists,
    specialist_class,
    specialist_view,
)
from dfpanel.panel.combiner import Panel


def video(tmp_path, name: str = "talk.mp4") -> VideoInfo:
    """A probed video as discovery gives it (the fake extraction never opens the file)."""
    return VideoInfo(tmp_path / name, "mp4", "h264", 320, 240, 25.0, 2.4, True, 1000)


class Views(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.full((2,), float(i))}


def test_predict_batches_keeps_order_batches_and_times():
    sizes, timings = [], {}

    def predict(batch):
        sizes.append(len(batch["x"]))
        return batch["x"][:, 0].numpy() * 2

    out = [(z, b) for z, b in predict_batches(Views(7), predict, batch_size=3, timings=timings)]
    assert sizes == [3, 3, 1]
    assert np.concatenate([z for z, _ in out]).tolist() == [2.0 * i for i in range(7)]
    assert out[0][1]["x"].shape == (3, 2) and timings["views"] >= 0 and timings["models"] >= 0
    assert list(predict_batches(Views(0), predict)) == []
    with pytest.raises(ValueError, match="2 logits for a batch of 3"):
        list(predict_batches(Views(3), lambda b: np.zeros(2), batch_size=3))


def test_torch_and_onnx_style_predictors_run_through_the_same_loop():
    model = FakeClipSpecialist().eval()
    entry, _ = make_entry(n_frames=8, clip_len=4)
    samples = GroupViews(entry, [[0, 1, 2, 3], [4, 5, 6, 7], [2, 3, 4, 5]], model.view)
    torch_z = np.concatenate([z for z, _ in predict_batches(samples, torch_predict(model), batch_size=2)])

    def numpy_model(batch):  # what an onnxruntime session is: numpy in, numpy out
        with torch.no_grad():
            return model({k: torch.from_numpy(v.numpy()) for k, v in batch.items()}).logit.numpy()

    onnx_z = np.concatenate([z for z, _ in predict_batches(samples, numpy_model, batch_size=3)])
    np.testing.assert_allclose(torch_z, onnx_z, atol=1e-6)


def test_cache_scoring_and_detection_both_use_predict_batches(tmp_path, monkeypatch):
    calls = []

    def spy(samples, predict, **kwargs):
        calls.append(type(samples).__name__)
        yield from batches.predict_batches(samples, predict, **kwargs)

    monkeypatch.setattr(scores_mod, "predict_batches", spy)
    monkeypatch.setattr(pipeline_mod, "predict_batches", spy)
    cache = make_cache(tmp_path / "cache", counts={"val": (1, 1)})
    df = scores_mod.predict_scores(FakeClipSpecialist(), cache, progress=False)
    assert len(df) == 4 and calls == ["ClipSampleDataset"]
    det = PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4, batch_size=5), extract=fake_extract)
    report = det.analyse(video(tmp_path)).report
    assert report["status"] == "analysed"
    assert calls[1:] == ["GroupViews"] * 4  # bg, cm, av, tm
    assert report["timings"]["models"] == pytest.approx(sum(report["timings"][f"model_{n}"] for n in ("bg", "cm", "av", "tm")))


# ---- ONNX runners: a view without a model --------------------------------------------------------
@pytest.fixture
def no_models(monkeypatch):
    """Building any backbone or specialist module fails the test."""
    from dfpanel.models.backbone import Backbone
    from dfpanel.models.specialists.common import PanelSpecialist

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was built")

    monkeypatch.setattr(Backbone, "__init__", refuse)
    monkeypatch.setattr(PanelSpecialist, "__init__", refuse)


class StubSession:
    """Stands in for OnnxSpecialist (no onnxruntime needed): logit = mean of the first input."""

    def __init__(self, path):
        self.path = path

    def __call__(self, inputs):
        first = next(iter(inputs.values()))
        return {"logit": first.reshape(len(first), -1).mean(axis=1), "aux_logit": np.zeros(len(first))}


def test_registry_gives_a_view_without_building_the_model(no_models):
    entry, _ = make_entry(n_frames=8, clip_len=4, audio=np.zeros(16000, np.float32))
    for name in ["bg", "av", "cm", "rr", "tm"]:
        view = specialist_view(name, **SMALL)
        out = view(entry, [0, 1, 2, 3])
        assert set(out) == set(specialist_class(name).input_shapes(specialist_class(name).full_config(**SMALL)))
    with pytest.raises(AssertionError, match="was built"):
        create_specialist("cm", **SMALL)


def test_registry_views_equal_the_built_models_views():
    entry, _ = make_entry(n_frames=8, clip_len=4, audio=(np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32))
    for name in ["bg", "av", "cm", "rr", "tm"]:
        built = create_specialist(name, **SMALL).view(entry, [0, 1, 2, 3])
        free = specialist_view(name, **SMALL)(entry, [0, 1, 2, 3])
        assert built.keys() == free.keys() and all(torch.equal(built[k], free[k]) for k in built)
    assert "fakeclip" in list_specialists()  # a specialist that is no PanelSpecialist still has a view
    assert specialist_view("fakeclip", clip_len=3) is not None


def test_onnx_runners_never_build_a_backbone(tmp_path, monkeypatch, no_models):
    import dfpanel.weights.export as export_mod

    monkeypatch.setattr(export_mod, "OnnxSpecialist", StubSession)
    wdir = tmp_path / "onnx"
    wdir.mkdir()
    for name in ["bg", "av", "cm", "rr", "tm"]:
        (wdir / f"{name}.onnx").write_bytes(b"stub")
        (wdir / f"{name}.onnx.json").write_text(json.dumps({"specialist": name, "sha256": f"sha-{name}", "model_config": SMALL}))
    runners = load_runners(wdir, backend="onnx")
    assert all(isinstance(r, OnnxRunner) for r in runners)
    facts = {r.name: (r.sample_kind, r.clip_len, r.needs_audio) for r in runners}
    assert facts == {"bg": ("frame", 4, False), "av": ("clip", 4, True), "cm": ("frame", 4, False),
                     "rr": ("frame", 4, False), "tm": ("clip", 4, False)}
    report = PanelDetector(runners, Panel(), DetectConfig(clip_len=4, backend="onnx"), extract=fake_extract).analyse(video(tmp_path)).report
    assert report["status"] == "analysed" and all(s["status"] == "scored" for s in report["specialists"])
