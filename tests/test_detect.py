"""Detection pipeline and `dfpanel detect` with stand-in specialists and extraction (see detect_fakes)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from detect_fakes import fake_extract, fake_runners
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.detect.discovery import discover_videos
from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.panel.combiner import Panel, sigmoid, video_logit
from dfpanel.report.schema import validate_report


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))


def copy_as(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def detector(panel: Panel | None = None, **biases) -> PanelDetector:
    return PanelDetector(fake_runners(**biases), panel or Panel(), DetectConfig(clip_len=4), extract=fake_extract)


def by_name(report: dict) -> dict:
    return {s["name"]: s for s in report["specialists"]}


def test_no_audio_video_av_abstains_and_panel_uses_the_rest(clip, tmp_path):
    out = detector().analyse(copy_as(clip, tmp_path / "silent.mp4"))
    r = validate_report(out.report)
    s = by_name(r)
    assert r["status"] == "analysed" and r["video"]["has_audio"] is False
    assert s["av"]["status"] == "abstained" and s["av"]["reason"] == "no audio track"
    assert s["av"]["probability"] is None and s["av"]["samples"] == []
    assert all(s[k]["status"] == "scored" for k in ("bg", "cm", "tm"))
    # frame specialists: one sample per frame; clip specialists: one per clip of 4
    assert len(s["cm"]["samples"]) == 12 and len(s["tm"]["samples"]) == 3
    assert s["cm"]["logit"] == pytest.approx(video_logit([x["logit"] for x in s["cm"]["samples"]]))
    expected = float(sigmoid(np.mean([s[k]["logit"] for k in ("bg", "cm", "tm")])))
    assert r["panel"]["probability"] == pytest.approx(expected)
    assert r["verdict"] == Panel().verdict(expected)
    assert any("abstained: no audio track" in line for line in r["explanation"])
    tm0 = s["tm"]["samples"][0]
    assert tm0["start"] == 0.0 and tm0["end"] == pytest.approx(4 / 25) and tm0["frame"] == 0


def test_video_with_audio_gets_av_score_and_timeline_moments(clip, tmp_path):
    out = detector().analyse(copy_as(clip, tmp_path / "talk.mp4"))
    r = out.report
    assert by_name(r)["av"]["status"] == "scored"
    tl = r["timeline"]
    assert len(tl["times"]) == len(tl["panel"]) == 12
    assert 1 <= len(tl["moments"]) <= 3
    # the moments are the highest panel points, one per clip
    clips = {int(m["position"]) // 4 for m in tl["moments"]}
    assert len(clips) == len(tl["moments"])
    assert max(m["probability"] for m in tl["moments"]) == pytest.approx(max(tl["panel"]))
    assert out.thumbnails and all(t["png"][:8] == b"\x89PNG\r\n\x1a\n" for t in out.thumbnails)
    assert {t["position"] for t in out.thumbnails if t["moment"]} == {m["position"] for m in tl["moments"]}
    for step in ("decode", "faces", "extract", "views", "models", "combine", "total"):
        assert r["timings"][step] >= 0
    assert r["weights"]["cm"]["sha256"] == "sha-cm"


def test_verdict_and_strongest_follow_the_evidence(clip, tmp_path):
    video = copy_as(clip, tmp_path / "talk.mp4")
    fake = detector(bg=6.0, cm=8.0, av=5.0, tm=5.0).analyse(video).report
    assert fake["verdict"] == "fake" and fake["strongest"] == "cm"
    real = detector(bg=-6.0, cm=-3.0, av=-5.0, tm=-4.0).analyse(video).report
    assert real["verdict"] == "real" and real["strongest"] == "bg"
    # a fitted panel that trusts only TM follows TM, even against the others
    panel = Panel(specialists=["bg", "cm", "av", "tm"], weights={"bg": 0.0, "cm": 0.0, "av": 0.0, "tm": 1.0},
                  fitted=True, threshold=0.5)
    r = detector(panel, bg=-6.0, cm=-6.0, av=-6.0, tm=5.0).analyse(video).report
    assert r["verdict"] == "fake" and r["strongest"] == "tm"


def test_no_face_is_a_failed_outcome_not_an_exception(clip, tmp_path):
    out = detector().analyse(copy_as(clip, tmp_path / "noface.mp4"))
    assert not out.ok
    r = validate_report(out.report)
    assert r["error"]["kind"] == "no_face" and "no face" in r["error"]["message"]
    assert r["verdict"] is None and r["specialists"] == []


def test_discovery_probes_contents_not_extensions(clip, tmp_path):
    from PIL import Image

    copy_as(clip, tmp_path / "a" / "one.mp4")
    copy_as(clip, tmp_path / "a" / "b" / "renamed.bin")  # a video whatever its name says
    (tmp_path / "a" / "notes.txt").write_text("not a video")
    Image.new("RGB", (32, 32)).save(tmp_path / "a" / "still.png")
    (tmp_path / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (tmp_path / "a" / ".hidden").mkdir()
    copy_as(clip, tmp_path / "a" / ".hidden" / "x.mp4")
    found = discover_videos([tmp_path / "a"])
    assert sorted(v.path.name for v in found.videos) == ["one.mp4", "renamed.bin"]
    assert [(u.path.name, u.corrupt) for u in found.failures] == [("broken.mp4", True)]
    assert found.skipped == 2  # notes.txt, still.png
    v = next(v for v in found.videos if v.path.name == "one.mp4")
    assert (v.width, v.height, v.has_audio) == (160, 120, False) and v.duration == pytest.approx(0.6, abs=0.05)
    # a file named explicitly that is not a video is reported, not skipped
    explicit = discover_videos([tmp_path / "a" / "notes.txt"])
    assert explicit.videos == [] and [u.corrupt for u in explicit.failures] == [False]


# ---- the command ----------------------------------------------------------------------------------
def test_folder_run_with_a_corrupt_file_exits_1_and_writes_summary(clip, tmp_path, fake_weights, capsys):
    videos = tmp_path / "videos"
    copy_as(clip, videos / "talk.mp4")
    copy_as(clip, videos / "sub" / "silent.mp4")
    (videos / "corrupt.mp4").write_bytes(b"\x1aE\xdf\xa3" + bytes(range(256)) * 4)
    (videos / "readme.txt").write_text("hello")
    out = tmp_path / "out"
    code = main(["detect", str(videos), "--weights", str(fake_weights), "--out", str(out), "--frames", "16"])
    cap = capsys.readouterr()
    assert code == 1
    assert "corrupt.mp4" in cap.err and "not analysed" in cap.err
    assert "talk.mp4" in cap.out and "silent.mp4" in cap.out
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(r["video"] for r in rows) == ["corrupt.mp4", "silent.mp4", "talk.mp4"]
    row = {r["video"]: r for r in rows}
    assert row["corrupt.mp4"]["status"] == "failed" and row["corrupt.mp4"]["reason"]
    assert row["silent.mp4"]["av"] == "abstained" and float(row["talk.mp4"]["av"]) > 0
    assert (out / "summary.html").is_file()
    for name in ("talk", "silent", "corrupt"):
        validate_report(json.loads((out / name / "report.json").read_text()))
        assert (out / name / "report.html").is_file()


def test_all_analysed_exits_0_and_json_output(clip, tmp_path, fake_weights, capsys):
    video = copy_as(clip, tmp_path / "talk.mp4")
    code = main(["detect", str(video), "--weights", str(fake_weights), "--out", str(tmp_path / "o"), "--json"])
    cap = capsys.readouterr()
    assert code == 0
    report = validate_report(json.loads(cap.out))
    assert report["video"]["name"] == "talk.mp4" and report["timings"]["report"] > 0
    assert not (tmp_path / "o" / "summary.csv").exists()  # a single file is not a folder run


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "missing.mp4"), "--weights", str(tmp_path)]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    video = tmp_path / "x.mp4"
    video.write_bytes(b"x")
    assert main(["detect", str(video), "--weights", str(tmp_path / "nowhere")]) == 2
    assert "weights folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["detect", str(video), "--weights", str(empty)]) == 2
    assert "no .safetensors weights" in capsys.readouterr().err
    assert main(["detect", str(video), "--weights", str(empty), "--frames", "0"]) == 2


def test_fitted_panel_is_used_and_stale_panel_warns(clip, tmp_path, fake_weights, capsys):
    panel = Panel(specialists=["bg", "cm", "av", "tm"], weights={"bg": 0.0, "cm": 0.0, "av": 0.0, "tm": 1.0},
                  bias=0.0, fitted=True, threshold=0.3, margin=0.05,
                  weights_ids={"bg": "sha-bg", "cm": "sha-OTHER", "av": "sha-av", "tm": "sha-tm"})
    panel.save(fake_weights)
    video = copy_as(clip, tmp_path / "talk.mp4")
    assert main(["detect", str(video), "--weights", str(fake_weights), "--out", str(tmp_path / "o"), "--json"]) == 0
    cap = capsys.readouterr()
    assert "fitted on other weights for CM" in cap.err and "BG" not in cap.err.split("warning:")[1].split(";")[0]
    r = json.loads(cap.out)
    tm = by_name(r)["tm"]
    assert r["panel"]["fitted"] is True and r["panel"]["threshold"] == 0.3 and r["panel"]["margin"] == 0.05
    assert r["panel"]["probability"] == pytest.approx(float(sigmoid(tm["logit"])))


def test_clip_specialist_with_shorter_clips_takes_windows(clip, tmp_path):
    from detect_fakes import FakeSpecialist

    from dfpanel.inference.runners import TorchRunner

    short = TorchRunner(FakeSpecialist("tm", "clip", 1.0, clip_len=2))
    long = TorchRunner(FakeSpecialist("av", "clip", 1.0, clip_len=4))
    det = PanelDetector([short, long], Panel(), DetectConfig(), extract=fake_extract)
    assert [s.clip_len for s in det.specs] == [8]  # extraction clips come from the weights' input spec
    s = by_name(det.analyse(copy_as(clip, tmp_path / "talk.mp4")).report)
    assert len(s["av"]["samples"]) == 3 and len(s["tm"]["samples"]) == 6
    assert [x["position"] for x in s["tm"]["samples"]] == [0, 2, 4, 6, 8, 10]


def test_faceless_video_through_real_extraction_is_a_no_face_outcome(tmp_path):
    """Real decoding and MTCNN (no stand-in extraction) on a video with no face in it."""
    video = make_video(tmp_path / "empty_room.mp4", VideoSpec(seconds=0.6, size=(160, 120), face=False))
    det = PanelDetector(fake_runners(), Panel(), DetectConfig(frames=8, clip_len=4))
    out = det.analyse(video)
    assert not out.ok and out.report["error"]["kind"] == "no_face"
    assert out.report["error"]["message"].startswith("no face found") and "manifest" not in out.report["error"]["message"]
    assert out.report["timings"]["faces"] > 0 and out.report["video"]["width"] == 160
