"""`dfpanel detect` end to end with nothing stood in: real decoding, MTCNN faces and tracking (the
extraction code), tiny random-init specialists saved as safetensors, reports on disk."""

from __future__ import annotations

import json

import pytest
import torch
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.models.specialists.base import create_specialist
from dfpanel.report.schema import validate_report
from dfpanel.weights.io import save_weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    for name in ("av", "cm"):
        model = create_specialist(name, backbone="tiny", image_size=64, clip_len=4).eval()
        save_weights(model, root / "weights" / name, {"stage": "e2e"})
    (root / "videos").mkdir()
    make_video(root / "videos" / "talking.mp4", VideoSpec(seconds=1.2, size=(320, 240), click_at=0.6))
    make_video(root / "videos" / "silent.mp4", VideoSpec(seconds=1.2, size=(320, 240), seed=1))
    return root


def test_detect_real_videos_av_abstains_without_audio(setup, capsys):
    out = setup / "out"
    code = main(["detect", str(setup / "videos"), "--weights", str(setup / "weights"), "--out", str(out), "--frames", "8"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "talking.mp4" in cap.out and "silent.mp4" in cap.out
    talking = validate_report(json.loads((out / "talking" / "report.json").read_text()))
    silent = validate_report(json.loads((out / "silent" / "report.json").read_text()))
    for r in (talking, silent):
        assert r["status"] == "analysed" and r["faces"]["tracks"] == 1 and r["faces"]["detector"] == "mtcnn"
        assert r["faces"]["frames"] == 8 and r["faces"]["detected_frames"] >= 2
        assert r["weights"]["cm"]["stage"] == "e2e" and len(r["weights"]["cm"]["sha256"]) == 64
        assert r["timings"]["faces"] > 0 and r["timings"]["decode"] > 0
    t = {s["name"]: s for s in talking["specialists"]}
    s = {s["name"]: s for s in silent["specialists"]}
    # the factory's "talking" audio is faint noise, not speech: AV's gate holds both clips back
    assert talking["video"]["has_audio"] is True and t["av"]["status"] == "abstained"
    assert t["av"]["reason"] == "no speech in the clip" and t["av"]["gated"] == 2
    assert silent["video"]["has_audio"] is False and s["av"]["status"] == "abstained"
    assert s["av"]["reason"] == "no audio track"
    assert s["cm"]["status"] == "scored" and len(s["cm"]["samples"]) == 8
    # the panel of a silent video is CM alone (unfitted panel: mean of the voters)
    assert silent["panel"]["probability"] == pytest.approx(s["cm"]["probability"])
    assert (out / "summary.csv").is_file() and "<svg" in (out / "silent" / "report.html").read_text()
