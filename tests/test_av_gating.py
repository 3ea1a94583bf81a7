"""Issue 12: AV's speech/mouth gate, gated samples left out of video scores, and the one-sided panel."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from detect_fakes import FakeSpecialist, fake_runners
from factories import cache_video, extracted_track, memory_entry

from dfpanel.detect.discovery import VideoInfo
from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.extract.spec import InputSpec
from dfpanel.extract.video import sparse_positions
from dfpanel.inference.aggregate import (
    aggregate_videos,
    sigmoid,
    video_logit,
    video_logits,
)
from dfpanel.inference.runners import OnnxRunner, TorchRunner
from dfpanel.models.specialists.av import (
    MAX_BRIDGED_FRAMES,
    MIN_MOUTH_WIDTH,
    mouth_visible,
)
from dfpanel.models.specialists.base import (
    create_specialist,
    find_specialist,
    specialist_class,
    specialist_view,
)
from dfpanel.panel.combiner import Panel
from dfpanel.report.html import bars_svg
from dfpanel.report.schema import validate_report
from dfpanel.synth.audio import make_speech
from dfpanel.views.samples import sample_groups

SR = 16000
CLIP = 8
TINY = {"backbone": "tiny", "image_size": 64, "clip_len": 4}
BOX = (40.0, 30.0, 100.0, 100.0)


def gate(clip_len: int = CLIP):
    return specialist_class("av").gate_for(clip_len=clip_len)


def speech_entry(audio=None, n_frames: int = 100):
    """4 s at 25 fps in clips of 8 frames (0.32 s); default audio: 1 s of silence, then speech."""
    if audio is None:
        audio = np.concatenate([np.zeros(SR), make_speech(0, 3.0).audio]).astype(np.float32)
    entry, _ = memory_entry(n_frames=n_frames, clip_len=CLIP, audio=audio, size=(160, 120), box=BOX)
    return entry


# ---- the gate -------------------------------------------------------------------------------------
def test_silence_is_no_speech_and_no_audio_is_no_audio_track():
    silent = speech_entry(np.zeros(4 * SR, np.float32), n_frames=24)
    assert {gate()(silent, g) for g in sample_groups(silent, "clip", CLIP)} == {"no speech in the clip"}
    hiss = speech_entry((np.random.default_rng(0).standard_normal(4 * SR) * 0.05).astype(np.float32), n_frames=24)
    assert {gate()(hiss, g) for g in sample_groups(hiss, "clip", CLIP)} == {"no speech in the clip"}
    mute, _ = memory_entry(n_frames=16, clip_len=CLIP, audio=None, size=(160, 120), box=BOX)
    assert gate()(mute, list(range(8))) == "no audio track"


def test_leading_silence_is_trimmed_and_speech_clips_pass():
    entry = speech_entry()
    gates = [gate()(entry, g) for g in sample_groups(entry, "clip", CLIP)]
    # clips 0-2 (0-0.96 s) lie in the leading second of silence; speech (seed 0) runs 1.06-3.86 s
    assert gates[:3] == ["no speech in the clip"] * 3
    assert gates[4:] == [None] * 8


def test_audio_that_stops_before_the_clip_is_no_speech():
    entry = speech_entry(make_speech(0, 1.0).audio.astype(np.float32))  # a 1 s track under 4 s of video
    gates = [gate()(entry, g) for g in sample_groups(entry, "clip", CLIP)]
    assert set(gates[4:]) == {"no speech in the clip"}


def _with_frames(entry, positions, **changes):
    for p in positions:
        for key, value in changes.items():
            setattr(entry.meta.frames[p], key, value)
    return entry


def test_mouth_not_visible_when_tracked_collapsed_or_outside_the_box():
    clip = list(range(40, 48))  # clip 5, inside speech
    assert gate()(speech_entry(), clip) is None
    # half the frames detected still shows the mouth; under half does not
    assert gate()(_with_frames(speech_entry(), clip[:4], detected=False), clip) is None
    assert gate()(_with_frames(speech_entry(), clip[:5], detected=False), clip) == "mouth not visible"
    w = BOX[2] - BOX[0]
    cx, my = (BOX[0] + BOX[2]) / 2, BOX[1] + 0.78 * (BOX[3] - BOX[1])

    def lms(left, right):
        return [[55, 50], [85, 50], [70, 65], list(left), list(right)]

    narrow = 0.9 * MIN_MOUTH_WIDTH * w  # a profile: corners almost on each other
    collapsed = lms((cx - narrow / 2, my), (cx + narrow / 2, my))
    assert gate()(_with_frames(speech_entry(), clip, landmarks=collapsed), clip) == "mouth not visible"
    wide = 1.2 * MIN_MOUTH_WIDTH * w
    assert gate()(_with_frames(speech_entry(), clip, landmarks=lms((cx - wide / 2, my), (cx + wide / 2, my))), clip) is None
    outside = lms((cx - 10, BOX[3] + 0.3 * w), (cx + 10, BOX[3] + 0.3 * w))  # below the chin: a bad fit
    assert gate()(_with_frames(speech_entry(), clip, landmarks=outside), clip) == "mouth not visible"


def test_tracked_frames_between_two_detections_show_the_mouth():
    """Extraction detects every 4th frame of a clip it cannot follow frame to frame (0, 4, 7 of 8) and
    interpolates the rest: those clips must pass, a longer gap or an unseen neighbour must not."""
    clip = list(range(40, 48))
    sparse = [41, 42, 43, 45, 46]
    assert gate()(_with_frames(speech_entry(), sparse, detected=False), clip) is None
    # the detector looked at frame 44 and found nothing: 6 frames guessed between 40 and 47
    assert gate()(_with_frames(speech_entry(), clip[1:-1], detected=False), clip) == "mouth not visible"
    # a detection whose mouth is hidden bridges nothing
    hidden = [[55, 50], [85, 50], [70, 65], [70, 85], [71, 85]]
    entry = _with_frames(_with_frames(speech_entry(), sparse, detected=False), [44], landmarks=hidden)
    assert gate()(entry, clip) == "mouth not visible"
    frames = _with_frames(speech_entry(), [40, 43], detected=False).meta.frames
    assert frames[39].clip != frames[40].clip
    assert not mouth_visible(frames, 40)  # its clip has no detection before it: a held guess
    assert mouth_visible(frames, 43) and mouth_visible(frames, 41)
    # the bridge spans the extractor's default sparse plan (a larger detect_every would gate it again)
    spec = InputSpec()
    planned = sparse_positions(list(range(spec.clip_len)), spec.detect_every)
    assert max(b - a - 1 for a, b in zip(planned, planned[1:])) <= MAX_BRIDGED_FRAMES


def test_view_masks_audio_exactly_when_gated():
    entry = speech_entry()
    view = specialist_view("av", clip_len=CLIP, image_size=32, mouth_size=16, n_mels=16)
    g = gate()
    for positions in sample_groups(entry, "clip", CLIP):
        inputs = view(entry, positions)
        gated = g(entry, positions) is not None
        assert float(inputs["audio_mask"]) == (0.0 if gated else 1.0)
        if gated:
            assert float(inputs["mel"].abs().sum()) == 0.0


def test_av_is_one_sided_and_onnx_runner_has_the_same_gate():
    assert find_specialist("av").one_sided and not find_specialist("cm").one_sided
    entry = speech_entry()
    onnx = OnnxRunner.from_config("av", {"clip_len": CLIP}, onnx_model=lambda d: None)  # no model built
    groups = sample_groups(entry, "clip", CLIP)
    assert [onnx.gate(entry, g) for g in groups] == [gate()(entry, g) for g in groups]
    assert OnnxRunner.from_config("cm", {"clip_len": CLIP}, onnx_model=lambda d: None).gate(entry, [0]) is None


# ---- video level ----------------------------------------------------------------------------------
def test_gated_samples_are_left_out_of_the_video_score():
    z = [3.0, -1.0, 2.0, np.nan]
    gates = ["no speech in the clip", None, None, "mouth not visible"]
    assert video_logit(z, gates=gates) == pytest.approx(video_logit([-1.0, 2.0]))
    assert math.isnan(video_logit([1.0, 2.0], gates=["no speech in the clip"] * 2))
    out = video_logits([1.0, 2.0, 3.0], ["a", "b", "b"], gates=["x", "", None])
    assert math.isnan(out[0]) and out[1] == pytest.approx(video_logit([2.0, 3.0]))
    table = pd.DataFrame({
        "video_id": ["a", "a", "a", "b", "b"], "dataset": "d", "label": [1, 1, 1, 0, 0],
        "prob": sigmoid([4.0, 1.0, -2.0, 0.0, 0.0]),
        "gate": ["no speech in the clip", None, None, "no speech in the clip", "mouth not visible"],
    })  # fmt: skip
    v = aggregate_videos(table).set_index("video_id")
    assert v.loc["a", "logit"] == pytest.approx(video_logit([1.0, -2.0])) and v.loc["a", "n_gated"] == 1
    assert np.isnan(v.loc["b", "logit"]) and v.loc["b", "reason"] == "no speech in the clip"


class GatedFake(FakeSpecialist):
    """The stand-in AV with a gate: the real AV's, or `fn`."""

    def __init__(self, fn=None, **kw):
        super().__init__("av", "clip", needs_audio=True, title="Lip sync", **kw)
        self._fn = fn

    def gate_fn(self):
        return self._fn or specialist_class("av").gate_for(clip_len=4)


def runners_with(av):
    return [r for r in fake_runners() if r.name != "av"] + [TorchRunner(av, weights_id="sha-av")]


def talk(tmp_path) -> VideoInfo:
    """A video that is never read (extraction is stood in for), so it need not be probed."""
    return VideoInfo(tmp_path / "talk.mp4", "mp4", "h264", 160, 120, 25.0, 2.4, True, 1)


def test_some_gated_clips_video_score_is_the_others(tmp_path):
    first_clip_silent = GatedFake(lambda entry, g: "no speech in the clip" if g[0] < 4 else None, bias=1.0)
    r = PanelDetector(runners_with(first_clip_silent), Panel(), DetectConfig(clip_len=4),
                      extract=lambda p, v, t, progress=None: [extracted_track()]).analyse(talk(tmp_path)).report
    av = {s["name"]: s for s in validate_report(r)["specialists"]}["av"]
    assert av["status"] == "scored" and av["gated"] == 1 and av["gated_reasons"] == {"no speech in the clip": 1}
    assert [s["position"] for s in av["samples"]] == [4, 8]
    assert av["logit"] == pytest.approx(video_logit([s["logit"] for s in av["samples"]]))
    assert any("left out 1 of its 3 samples" in line for line in r["explanation"])


def test_av_abstains_on_a_video_whose_audio_is_silent(tmp_path, fake_weights):
    def silent_audio(path, video_id, timings, progress=None):
        meta, crops, samples = extracted_track()
        return [(meta, crops, np.zeros_like(samples))]

    for av in (GatedFake(), create_specialist("av", **TINY).eval()):  # the stand-in and the real tiny AV
        r = PanelDetector(runners_with(av), Panel(), DetectConfig(clip_len=4), extract=silent_audio).analyse(
            talk(tmp_path)).report
        s = {x["name"]: x for x in validate_report(r)["specialists"]}
        assert r["video"]["has_audio"] is True
        assert s["av"]["status"] == "abstained" and s["av"]["reason"] == "no speech in the clip"
        assert s["av"]["gated"] == 3 and s["av"]["samples"] == []
        assert any("abstained: no speech in the clip" in line for line in r["explanation"])
        assert "abstained: no speech in the clip" in bars_svg(r)
        others = [s[k]["logit"] for k in ("bg", "cm", "tm")]
        assert r["panel"]["probability"] == pytest.approx(float(sigmoid(np.mean(others))))


def test_predict_scores_and_panel_fit_table_treat_all_gated_videos_as_abstained(tmp_path):
    from dfpanel.inference.scores import predict_scores
    from dfpanel.panel.fit import video_logit_table

    cache = tmp_path / "cache"
    for i, speech in enumerate((True, False)):
        meta, crops, samples = extracted_track(n_clips=2, speech=speech, seed=i, video_id=f"v{i}", dataset="d")
        cache_video(cache, meta, crops, samples, label=i, split="val")
    torch.manual_seed(0)
    model = create_specialist("av", **TINY).eval()
    df = predict_scores(model, cache, progress=False)
    g = df.set_index("video_id")["gate"]
    assert g.loc["v0"].isna().all() and (g.loc["v1"] == "no speech in the clip").all()
    table = video_logit_table({"av": df})
    assert np.isfinite(table.loc[("d", "v0"), "av"]) and np.isnan(table.loc[("d", "v1"), "av"])


# ---- the one-sided panel --------------------------------------------------------------------------
@pytest.mark.parametrize("panel", [
    Panel(),
    Panel(specialists=["bg", "cm", "av"], weights={"bg": 0.8, "cm": 1.2, "av": 1.0}, bias=-0.3, fitted=True),
])  # fmt: skip
def test_av_saying_real_never_pulls_the_panel_towards_real(panel):
    others = {"bg": 0.5, "cm": 1.0}  # a face swap: the image specialists say fake
    without = panel.probability(others)
    assert panel.probability({**others, "av": -8.0}) == pytest.approx(without)
    assert panel.contributions({**others, "av": -8.0})["av"] == 0.0
    assert panel.probability({**others, "av": 8.0}) > without + 0.01
    assert panel.contributions({**others, "av": 8.0})["av"] > 0
    assert panel.probability({**others, "av": None}) == pytest.approx(without)


def test_av_alone_saying_real_is_no_evidence():
    assert Panel().probability({"av": -6.0}) == pytest.approx(0.5)
    assert Panel().probability({"av": 6.0}) == pytest.approx(float(sigmoid(6.0)))
    fitted = Panel(specialists=["av"], weights={"av": 1.0}, bias=-1.0, fitted=True)
    assert fitted.decision({"av": -5.0}) == pytest.approx(-1.0)


def test_fitted_panel_records_one_sided_specialists():
    from dfpanel.panel.combiner import fit_panel

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    logits = np.stack([y * 2.0 - 1 + rng.normal(0, 1, 40), rng.normal(0, 1, 40)], axis=1)
    panel = fit_panel(logits, y, ["cm", "av"])
    assert panel.metrics["one_sided"] == ["av"]
