"""The panel is fitted on what it is applied to: panel.json records the frames per video of the cache
it was fitted on and the aggregation, and detection uses both unless the user says otherwise."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from detect_fakes import fake_extract, fake_runners
from video_factory import VideoSpec, make_video

import dfpanel.panel.fit as panel_fit
from dfpanel.cli import main
from dfpanel.detect.build import build_detector, frames_per_video
from dfpanel.detect.pipeline import PanelDetector
from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import CacheIndexRow, append_index_row
from dfpanel.extract.report import update_report
from dfpanel.extract.spec import DEFAULT_SPEC, InputSpec
from dfpanel.index.manifest import VideoRecord, write_manifest
from dfpanel.inference import runners as runners_mod
from dfpanel.panel.combiner import Panel
from dfpanel.panel.fit import cache_frames_per_video


def test_frames_per_video_is_the_users_then_the_panels_then_the_weights():
    fitted = Panel(fitted=True, frames_per_video=16)
    trained = [SimpleNamespace(input_spec=InputSpec(frames=12)), SimpleNamespace(input_spec=InputSpec(frames=20))]
    assert frames_per_video(8, fitted, trained) == 8
    assert frames_per_video(None, fitted, trained) == 16
    assert frames_per_video(None, Panel(), trained) == 20  # the most any specialist was trained with
    assert frames_per_video(None, Panel(), []) == DEFAULT_SPEC.frames == 32
    with pytest.raises(ConfigError, match="--frames must be between 1 and 512"):
        frames_per_video(0, fitted, trained)


def test_panel_json_round_trips_and_checks_the_new_fields(tmp_path):
    p = Panel(fitted=True, frames_per_video=24, aggregate="median")
    assert Panel.load(p.save(tmp_path)).frames_per_video == 24
    old = {k: v for k, v in p.to_dict().items() if k != "frames_per_video"}  # a panel.json from before
    assert Panel.from_dict(old).frames_per_video is None
    with pytest.raises(DataError, match="frames_per_video"):
        Panel.from_dict(dict(old, frames_per_video=0))
    with pytest.raises(DataError, match="unknown aggregation"):
        Panel.from_dict(dict(old, aggregate="mode"))


@pytest.fixture
def fake_folder(tmp_path, monkeypatch):
    """A weights folder whose specialists are the stand-ins; records the DetectConfig each detector gets."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setattr(runners_mod, "load_runners", lambda folder, backend="torch", device="cpu", only=None: fake_runners())
    seen = []
    real_init = PanelDetector.__init__

    def init(self, runners, panel, cfg=None, extract=None):
        seen.append(cfg)
        real_init(self, runners, panel, cfg, extract or fake_extract)

    monkeypatch.setattr(PanelDetector, "__init__", init)
    return SimpleNamespace(weights=wdir, seen=seen)


def test_build_detector_takes_frames_from_panel_json_unless_given(fake_folder):
    Panel(fitted=True, frames_per_video=16, aggregate="max").save(fake_folder.weights)
    det = build_detector(fake_folder.weights, device="cpu", backend="torch")
    assert det.cfg.frames == 16 and det.panel.aggregate == "max"
    assert build_detector(fake_folder.weights, frames=8, device="cpu", backend="torch").cfg.frames == 8
    (fake_folder.weights / "panel.json").unlink()
    assert build_detector(fake_folder.weights, device="cpu", backend="torch").cfg.frames == DEFAULT_SPEC.frames


def test_detect_command_without_frames_uses_the_panels(fake_folder, tmp_path):
    Panel(fitted=True, frames_per_video=16).save(fake_folder.weights)
    video = make_video(tmp_path / "talk.mp4", VideoSpec(seconds=0.4, size=(160, 120), face_height=60))
    assert main(["detect", str(video), "--weights", str(fake_folder.weights), "--out", str(tmp_path / "out")]) == 0
    assert main(["detect", str(video), "--weights", str(fake_folder.weights), "--out", str(tmp_path / "o2"), "--frames", "24"]) == 0
    assert [c.frames for c in fake_folder.seen] == [16, 24]


# ---- panel fit records them ------------------------------------------------------------------------
def write_index(cache, n_frames: dict[str, int]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for i, (vid, n) in enumerate(n_frames.items()):
        append_index_row(cache, CacheIndexRow(id=vid, dataset="folder", dir=f"folder/{vid}", label=i % 2, fake_type="x",
                                              split="val", group=vid, has_audio=True, chunk=None, n_frames=n, n_clips=max(1, n // 8)))


def test_cache_frames_per_video_from_the_cache_spec_else_the_index(tmp_path):
    from dfpanel.extract.cache import FaceTrackCache, record_cache_spec

    old = tmp_path / "old"  # a cache from before input specs were recorded
    write_index(old, {"a": 16, "b": 8, "c": 16})
    rows = FaceTrackCache(old).rows()
    assert cache_frames_per_video(old, rows) == 16  # the most frames a video holds
    assert cache_frames_per_video(old, []) is None
    new = tmp_path / "new"
    record_cache_spec(new, InputSpec(frames=24))  # what `extract --frames 24` records first
    write_index(new, {"a": 16, "b": 8})
    assert cache_frames_per_video(new, FaceTrackCache(new).rows()) == 24


def fake_scores(vid_labels: dict[str, int], name: str) -> pd.DataFrame:
    rng = np.random.default_rng(len(name))
    rows = []
    for vid, label in vid_labels.items():
        for pos in range(3):
            z = (2 * label - 1) * (1.5 if name == "bg" else 0.5) + rng.normal()
            rows.append({"video_id": vid, "dataset": "folder", "label": label, "fake_type": "x", "split": "val",
                         "group": vid, "position": pos, "time": pos / 25, "logit": z, "prob": 1 / (1 + np.exp(-z))})
    return pd.DataFrame(rows)


def test_panel_fit_records_frames_and_aggregation(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "300")
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for name in ("bg", "cm"):
        (wdir / f"{name}.safetensors").write_bytes(b"")
        (wdir / f"{name}.json").write_text(json.dumps({"specialist": name, "sha256": f"sha-{name}"}))
    labels = {f"v{i:02d}": i % 2 for i in range(40)}
    cache = tmp_path / "cache"
    write_index(cache, {v: 16 for v in labels})
    update_report(cache, run={"config": {"frames": 16, "clip_len": 8}}, run_key="x")
    manifest = tmp_path / "val.jsonl"
    write_manifest([VideoRecord(id=v, path=f"{v}.mp4", label=y, fake_type="x", split="val", dataset="folder", group=v)
                    for v, y in labels.items()], manifest)
    monkeypatch.setattr(panel_fit, "_load_specialist", lambda path, device: SimpleNamespace(name=path.stem))
    monkeypatch.setattr(panel_fit, "_predict_scores", lambda model, data, **kw: fake_scores(labels, model.name))
    code = main(["panel", "fit", "--weights", str(wdir), "--manifest", str(manifest), "--data", str(cache),
                 "--aggregate", "median"])
    out = capsys.readouterr().out
    assert code == 0
    panel = Panel.load(wdir)
    assert panel.frames_per_video == 16 and panel.aggregate == "median"
    assert "16 frames per video" in out and "aggregated by median" in out
    # the table it was fitted on is the median aggregation
    table = panel_fit.video_logit_table({"bg": fake_scores(labels, "bg")}, how="median")
    v = fake_scores(labels, "bg").query("video_id == 'v03'")["logit"]
    assert table.loc[("folder", "v03"), "bg"] == pytest.approx(float(np.median(v)), abs=1e-9)


def test_the_demo_fits_and_detects_on_the_same_frames(tmp_path, monkeypatch):
    """The demo extracts with --frames N and detects without --frames: the panel fit reads N from
    the cache's extraction runs and detection takes it from panel.json."""
    import dfpanel.demo as demo

    plan = demo.DemoPlan(out=tmp_path / "demo", frames=12)
    argvs = []
    monkeypatch.setattr(demo, "_run", lambda console, argv, ok_codes=(0,): argvs.append(argv))
    monkeypatch.setattr(demo, "collect_weights", lambda plan, console: None)
    monkeypatch.setattr(demo, "held_out_videos", lambda plan: [tmp_path / "x.mp4"])
    monkeypatch.setattr("dfpanel.index.manifest.read_manifest", lambda path, split=None: [])
    monkeypatch.setattr("dfpanel.index.manifest.write_manifest", lambda rows, path: None)
    demo.run_demo(plan, console=demo.Console(quiet=True))
    extract = [a for a in argvs if a[0] == "extract"]
    detect = [a for a in argvs if a[0] == "detect"]
    assert extract and all(a[a.index("--frames") + 1] == "12" for a in extract)
    assert len(detect) == 1 and "--frames" not in detect[0]
    # what `extract --frames 12` records is what the fit writes to panel.json
    from dfpanel.extract.video import ExtractConfig

    cache = tmp_path / "cache"
    from dfpanel.extract.cache import record_cache_spec

    record_cache_spec(cache, ExtractConfig(frames=12).spec)
    write_index(cache, {"a": 8})
    assert cache_frames_per_video(cache, []) == 12
