"""`dfpanel panel fit` end to end with stand-in models: per-video aggregation, AV masked on silent
videos, panel.json written next to the weights and picked up by detection."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from factories import cache_video, extracted_track, index_row

from dfpanel.cli import main
from dfpanel.extract.cache import append_index_row
from dfpanel.index.manifest import VideoRecord, write_manifest
from dfpanel.panel import fit as panel_fit
from dfpanel.panel.combiner import Panel, video_logit
from dfpanel.panel.fit import video_logit_table

N_VIDEOS = 160


def videos():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N_VIDEOS)
    audio = rng.random(N_VIDEOS) > 0.3
    return [(f"v{i:03d}", int(labels[i]), bool(audio[i])) for i in range(N_VIDEOS)]


def fake_scores(name: str, seed: int) -> pd.DataFrame:
    """4 samples per video. bg and av carry the label, cm is loud noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for vid, label, _ in videos():
        s = 2 * label - 1
        for pos in range(4):
            z = {"bg": 1.5 * s, "av": 2.0 * s, "cm": 0.0}[name] + rng.normal(0, 6.0 if name == "cm" else 1.0)
            rows.append({"video_id": vid, "dataset": "folder", "label": label, "fake_type": "x", "split": "val",
                         "group": vid, "position": pos, "time": pos / 25, "logit": z, "prob": 1 / (1 + np.exp(-z))})
    return pd.DataFrame(rows)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for i, name in enumerate(("bg", "av", "cm")):
        (wdir / f"{name}_best.safetensors").write_bytes(b"")
        (wdir / f"{name}_best.json").write_text(json.dumps({"specialist": name, "sha256": f"sha{i}"}))
    cache = tmp_path / "cache"
    cache.mkdir()
    for vid, label, audio in videos():
        append_index_row(cache, index_row(vid, dataset="folder", label=label, fake_type="x", split="val", has_audio=audio,
                                          n_frames=4, n_clips=1))
    manifest = tmp_path / "val.jsonl"
    write_manifest([VideoRecord(id=v, path=f"{v}.mp4", label=y, fake_type="x", split="val", dataset="folder", group=v)
                    for v, y, _ in videos()], manifest)
    calls = []
    monkeypatch.setattr(panel_fit, "_load_specialist", lambda path, device: SimpleNamespace(name=path.stem.split("_")[0]))

    def predict(model, data, **kw):
        calls.append((model.name, kw["manifest"], kw["split"]))
        return fake_scores(model.name, seed=len(calls))

    monkeypatch.setattr(panel_fit, "_predict_scores", predict)
    return SimpleNamespace(weights=wdir, cache=cache, manifest=manifest, calls=calls)


def test_video_logit_table_aggregates_and_masks_silent_videos():
    df = fake_scores("av", 1)
    audio = {("folder", v): a for v, _, a in videos()}
    table = video_logit_table({"av": df, "bg": fake_scores("bg", 2)}, audio, {"av"})
    assert len(table) == N_VIDEOS
    talking = next(v for v, _, a in videos() if a)
    first = df[df.video_id == talking]["logit"].to_numpy()
    assert table.loc[("folder", talking), "av"] == pytest.approx(video_logit(first))
    silent = [k for k, a in audio.items() if not a]
    assert table.loc[silent, "av"].isna().all() and table["bg"].notna().all()
    assert table["av"].isna().sum() == len(silent)


def test_panel_fit_command_writes_a_panel_that_beats_equal_weights(setup, capsys):
    code = main(["panel", "fit", "--weights", str(setup.weights), "--manifest", str(setup.manifest),
                 "--data", str(setup.cache), "--threshold", "fpr", "--target-fpr", "0.1", "--margin", "0.05"])
    assert code == 0, capsys.readouterr().err
    assert sorted(c[0] for c in setup.calls) == ["av", "bg", "cm"]
    assert all([r.id for r in c[1]] == [v for v, _, _ in videos()] for c in setup.calls)  # the manifest's records
    panel = Panel.load(setup.weights)
    assert panel.fitted and panel.threshold_method == "fpr" and panel.target_fpr == 0.1 and panel.margin == 0.05
    assert panel.weights["bg"] > 0.3 and panel.weights["av"] > 0.3 and abs(panel.weights["cm"]) < 0.15
    assert panel.metrics["abstained"]["av"] == sum(not a for _, _, a in videos())
    assert panel.metrics["auc"] > panel.metrics["equal_weights_auc"]
    assert panel.metrics["specialist_auc"]["av"] > 0.8 and abs(panel.metrics["specialist_auc"]["cm"] - 0.5) < 0.15
    assert panel.weights_ids == {"bg": "sha0", "av": "sha1", "cm": "sha2"}
    assert "wrote" in capsys.readouterr().out
    # detection picks it up from the same folder
    assert Panel.load_or_default(setup.weights).to_dict() == panel.to_dict()


def test_panel_fit_usage_errors(setup, tmp_path):
    base = ["panel", "fit", "--weights", str(setup.weights), "--data", str(setup.cache)]
    assert main(base + ["--manifest", str(setup.manifest), "--threshold", "fpr"]) == 2
    assert main(base + ["--manifest", str(tmp_path / "nope.jsonl")]) == 2
    (tmp_path / "empty.jsonl").write_text("")
    assert main(base + ["--manifest", str(tmp_path / "empty.jsonl")]) == 2
    assert main(["panel", "fit", "--weights", str(setup.weights), "--manifest", str(setup.manifest)]) == 2  # no cache known
    assert not (setup.weights / "panel.json").exists()


def test_panel_fit_with_real_tiny_models_over_a_real_cache(tmp_path, capsys):
    """Nothing stood in: tiny specialists from safetensors, predict_scores over a cache written with
    EntryWriter, a manifest from write_manifest."""
    import torch

    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.io import save_weights

    cache, records = tmp_path / "cache", []
    for i in range(8):
        vid, label, audio = f"v{i}", i % 2, i < 6
        meta, crops, samples = extracted_track(n_clips=2, clip_len=4, audio=audio, seed=i, video_id=vid, dataset="folder")
        brighter = [crop + np.uint8(20 * label) for crop in crops]  # fakes a little brighter
        cache_video(cache, meta, brighter, samples, label=label, split="val", fake_type="x")
        records.append(VideoRecord(id=vid, path=f"{vid}.mp4", label=label, fake_type="x", split="val", dataset="folder", group=vid))
    write_manifest(records[:5], tmp_path / "val.jsonl")  # two manifests, as FF++ + DFDC would be
    write_manifest(records[5:], tmp_path / "val2.jsonl")
    torch.manual_seed(0)
    for name in ("av", "cm"):
        save_weights(create_specialist(name, backbone="tiny", image_size=64, clip_len=4).eval(), tmp_path / "w" / name, {})
    code = main(["panel", "fit", "--weights", str(tmp_path / "w"), "--manifest", str(tmp_path / "val.jsonl"),
                 "--manifest", str(tmp_path / "val2.jsonl"), "--data", str(cache)])
    assert code == 0, capsys.readouterr().err
    panel = Panel.load(tmp_path / "w")
    assert panel.fitted and sorted(panel.specialists) == ["av", "cm"]
    assert panel.metrics["n_videos"] == 8 and panel.metrics["abstained"] == {"av": 2, "cm": 0}
    assert 0.0 <= panel.threshold <= 1.0
