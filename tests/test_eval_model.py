"""`dfpanel eval` with a real (tiny, untrained) specialist over a real face-track cache: the weights
load from safetensors + sidecar, predict_scores scores every cached frame, and the metrics written
agree with scikit-learn on the scores written next to them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from factories import cache_video, track_meta
from sklearn.metrics import log_loss, roc_auc_score

from dfpanel.cli import main
from dfpanel.index.manifest import VideoRecord, write_manifest

FRAMES = 3
SIZE = 128  # source frame, pixels


def cache_random_video(root, dataset: str, vid: str, label: int, rng) -> None:
    """One silent clip of FRAMES random 96 px crops; fakes carry a darker square in the middle."""
    crops = []
    for _ in range(FRAMES):
        crop = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        if label:  # a visible trace on fakes, so scores differ by class at all
            crop[24:72, 24:72] //= 2
        crops.append(crop)
    meta = track_meta(FRAMES, clip_len=FRAMES, box=[40.0, 40.0, 88.0, 88.0], crop_box=[16, 16, 112, 112],
                      landmarks=[[52, 56], [76, 56], [64, 66], [54, 78], [74, 78]], video_id=vid, dataset=dataset,
                      source_size=(SIZE, SIZE))  # fmt: skip
    cache_video(root, meta, crops, label=label, split="test")


@pytest.fixture
def tiny_setup(tmp_path):
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.io import save_weights

    rng = np.random.default_rng(0)
    cache = tmp_path / "cache"
    manifests = []
    for dataset in ("celebdf", "dfdc"):
        recs = []
        for i in range(4):
            vid, label = f"v{i}", i % 2  # the same ids in both datasets, as real datasets may have
            cache_random_video(cache, dataset, vid, label, rng)
            recs.append(VideoRecord(id=vid, path=f"{vid}.mp4", label=label, fake_type="fake" if label else "real",
                                    split="test", dataset=dataset, group=vid))  # fmt: skip
        manifests.append(tmp_path / f"{dataset}.jsonl")
        write_manifest(recs, manifests[-1])
    model = create_specialist("bg", backbone="tiny", pretrained=False, image_size=64, fusion_dim=32, fusion_heads=2)
    weights = save_weights(model, tmp_path / "bg_ffpp", {"stage": "ffpp"})
    return weights, manifests, cache, tmp_path / "out"


def test_eval_with_tiny_specialist(tiny_setup, capsys, monkeypatch):
    from dfpanel.weights.io import file_sha256

    monkeypatch.setenv("COLUMNS", "240")
    weights, manifests, cache, out = tiny_setup
    argv = ["eval", "--weights", str(weights), "--data", str(cache), "--out", str(out), "--batch-size", "4"]
    for m in manifests:
        argv += ["--manifest", str(m)]
    assert main(argv) == 0, capsys.readouterr().err

    metrics = json.loads((out / "metrics.json").read_text())
    (run,) = metrics["runs"]
    assert run["weights"]["sha256"] == file_sha256(weights)
    assert run["weights"]["specialist"] == "bg"
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 2 * 4 * FRAMES
    assert set(scores["test_set"]) == {"celebdf", "dfdc"}
    for ts in run["test_sets"]:
        s = scores[scores["test_set"] == ts["name"]]
        assert set(s["dataset"]) == {ts["name"]}  # each manifest scored only its own videos
        frame = ts["frame"]["overall"]
        assert frame["n"] == 4 * FRAMES and ts["n_videos"] == 4
        assert frame["auc"] == pytest.approx(roc_auc_score(s["label"], s["prob"]), abs=1e-5)
        assert frame["log_loss"] == pytest.approx(log_loss(s["label"], s["prob"]), abs=1e-5)
        video = s.groupby("video_id").agg(label=("label", "first"), prob=("prob", "mean"))
        assert ts["video"]["overall"]["auc"] == pytest.approx(roc_auc_score(video["label"], video["prob"]), abs=1e-5)
    assert (out / "roc.png").stat().st_size > 1000
    assert "celebdf" in capsys.readouterr().out
