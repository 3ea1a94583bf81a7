"""What a specialist sees at training time and at detection time is equal by construction.

The golden test: one video through `extract` -> cache on disk -> the cache datasets training uses ->
each specialist's view, and through detection's in-memory path (PanelDetector.analyse with real
extraction, built from the weights' sidecars) gives identical view tensors for every specialist,
matched by the video frames they cover. Then: detection extracts with the weights' input spec (also a
non-default one), once per distinct spec; eval and panel fit refuse a cache made otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.detect.build import build_detector
from dfpanel.extract.cache import FaceTrackCache, FaceTrackEntry
from dfpanel.extract.run import ExtractConfig, run_extraction
from dfpanel.extract.spec import InputSpec
from dfpanel.index.manifest import VideoRecord, write_manifest
from dfpanel.models.specialists.base import create_specialist
from dfpanel.views.ops import clip_log_mel
from dfpanel.views.samples import clip_len_of, dataset_for, sample_groups
from dfpanel.weights.io import load_specialist, save_weights

FIVE = ("bg", "av", "cm", "rr", "tm")
TINY = dict(backbone="tiny", image_size=64, clip_len=4, pretrained=False)
AUDIO_KEYS = {"mel", "audio_mask"}  # audio-derived inputs: equal within 1e-6; everything else bit-exact
# The cache the golden weights were trained on: not the defaults (frames, clip_len, context_scale).
SPEC = InputSpec(frames=8, clip_len=4, context_scale=1.8)
VIDEOS = {
    # AAC decodes a full-scale square wave to peaks far above 1.0
    "loud": VideoSpec(seconds=1.0, click_at=0.5, square=0.9),
    # a phone video: stored sideways with a display-matrix rotation, with audio
    "rotated": VideoSpec(seconds=1.0, rotation=90, size=(320, 240), click_at=0.4, seed=2),
    # 3 frames: fewer than asked (8) and fewer than a clip (4)
    "short": VideoSpec(seconds=0.12, sweep=0.1, click_at=0.05, seed=3),
}


def save_five(folder: Path, spec: InputSpec | None, names=FIVE, seed: int = 0) -> Path:
    """Tiny random-init specialists whose sidecars carry `spec` as training writes it (None: an old sidecar)."""
    torch.manual_seed(seed)
    for name in names:
        side = {"stage": "parity"} | ({"input_spec": spec.to_dict()} if spec is not None else {})
        save_weights(create_specialist(name, **TINY).eval(), folder / name, side)
    return folder


def capture_views(runners) -> dict:
    """Wrap each runner's view: name -> list of (entry, positions, tensors) it computed."""
    seen: dict[str, list] = {r.name: [] for r in runners}
    for r in runners:
        inner = r.view

        def view(entry, positions, _inner=inner, _name=r.name):
            out = _inner(entry, positions)
            seen[_name].append((entry, list(positions), out))
            return out

        r.view = view
    return seen


def by_frames(calls) -> dict[tuple[int, ...], dict]:
    """Views keyed by the decoded frame indices they cover (positions differ in meaning per entry)."""
    return {tuple(e.meta.frames[p].index for p in pos): out for e, pos, out in calls}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    (root / "videos").mkdir()
    videos = {name: make_video(root / "videos" / f"{name}.mp4", spec) for name, spec in VIDEOS.items()}
    manifest = root / "manifest.jsonl"
    write_manifest([VideoRecord(id=name, path=str(p), label=0, fake_type="real", split="train", dataset="folder",
                                group=name) for name, p in videos.items()], manifest)  # fmt: skip
    summary = run_extraction(manifest, root / "cache", ExtractConfig(SPEC), progress=False)
    assert summary["failed"] == 0, summary["failures"]
    # Training copies the cache's spec into each sidecar (tests/test_input_spec.py checks fit_stage does).
    weights = save_five(root / "weights", FaceTrackCache(root / "cache").input_spec)
    return root, videos, weights


def cache_views(root: Path, weights: Path) -> dict[str, dict[str, dict]]:
    """specialist -> video id -> {frame indices: view}, through the datasets training and eval use."""
    cache = FaceTrackCache(root / "cache")
    rows = cache.rows()
    out: dict[str, dict[str, dict]] = {}
    for name in FIVE:
        model = load_specialist(weights / f"{name}.safetensors")
        calls: list = []
        view = model.view_fn()

        def capturing(entry, positions, _view=view, _calls=calls):
            res = _view(entry, positions)
            _calls.append((entry, list(positions), res))
            return res

        ds = dataset_for(model.sample_kind)(cache.root, rows, capturing, clip_len=clip_len_of(model))  # as training builds it
        for i in range(len(ds)):
            ds[i]
        out[name] = {}
        for entry, pos, res in calls:
            out[name].setdefault(entry.meta.video_id, []).append((entry, pos, res))
        out[name] = {vid: by_frames(c) for vid, c in out[name].items()}
    return out


def test_cache_and_detection_give_identical_views_for_every_specialist(golden):
    root, videos, weights = golden
    from dfpanel.extract.decode import VideoReader

    with VideoReader(videos["loud"]) as r:
        raw, _ = r.audio(SPEC.audio_rate)
    assert np.abs(raw).max() > 1.0  # the loud case is really there: the decoder gives samples beyond full scale

    trained = cache_views(root, weights)
    det = build_detector(weights, device="cpu", backend="torch")
    assert [s.frames for s in det.specs] == [8] and det.specs[0] == SPEC  # frames too: from the weights
    seen = capture_views(det.runners)
    checked, audio_checked = 0, 0.0
    for vid, path in videos.items():
        for calls in seen.values():
            calls.clear()
        outcome = det.analyse(path)
        assert outcome.ok, outcome.reason
        cached = FaceTrackEntry(root / "cache" / "folder" / vid)
        live = seen["bg"][0][0]
        assert live.meta.input_spec == cached.meta.input_spec == SPEC.to_dict()
        if cached.has_audio:  # normalised once, at extraction: the WAV holds the very same floats
            assert live.audio.dtype == cached.audio.dtype == np.float32
            assert np.array_equal(live.audio, cached.audio)
        for name in FIVE:
            here, there = by_frames(seen[name]), trained[name].get(vid, {})
            # Same samples: the same frames grouped the same way (a 3-frame video gives the clip specialists no sample in either).
            # Detection does not view the samples a gate holds back (AV: no speech, no mouth; their
            # cached view has audio_mask 0); training views them all (its loss leaves them out).
            skipped = set(there) - set(here)
            assert set(here) <= set(there), f"{vid}/{name}: detection and training group frames differently"
            assert all(float(there[f]["audio_mask"]) == 0.0 for f in skipped), f"{vid}/{name}: an ungated sample was skipped"
            if name == "av" and cached.has_audio:  # the audio path itself, gated or not: the same mel
                assert [f.index for f in live.meta.frames] == [f.index for f in cached.meta.frames]
                for pos in sample_groups(cached, "clip", 4):
                    (ma, ka), (mb, kb) = clip_log_mel(live, pos), clip_log_mel(cached, pos)
                    assert float(ka) == float(kb) and float((ma - mb).abs().max()) <= 1e-6
                    audio_checked += float(kb)
            for frames, view in here.items():
                want = there[frames]
                assert view.keys() == want.keys()
                for key in view:
                    a, b = view[key], want[key]
                    assert a.shape == b.shape and a.dtype == b.dtype, f"{vid}/{name}/{key}"
                    if key in AUDIO_KEYS:
                        diff = float((a - b).abs().max()) if a.numel() else 0.0
                        assert diff <= 1e-6, f"{vid}/{name}/{key} frames {frames}: differs by {diff:.3g}"
                    else:
                        assert torch.equal(a, b), f"{vid}/{name}/{key} frames {frames}: pixels differ"
                    checked += 1
    # the audio path was exercised with audio present
    assert audio_checked > 0
    assert checked > 50


def test_detection_extracts_with_the_weights_non_default_settings(golden, tmp_path):
    _, videos, _ = golden
    spec = InputSpec(frames=12, clip_len=4, min_face_size=30, context_scale=1.5, track="interpolate",
                     detect_every=2, min_score=0.85, max_side=480)
    weights = save_five(tmp_path / "w", spec, names=("cm", "tm"))
    det = build_detector(weights, device="cpu", backend="torch")
    assert det.specs == [spec]
    seen = capture_views(det.runners)
    report = det.analyse(videos["rotated"]).report
    assert report["status"] == "analysed" and report["faces"]["frames"] == 12
    assert report["weights"]["cm"]["input_spec"] == report["weights"]["tm"]["input_spec"] == spec.to_dict()  # the report says how
    entries = {id(e): e for calls in seen.values() for e, _, _ in calls}
    assert len(entries) == 1  # one extraction for both
    (entry,) = entries.values()
    assert InputSpec.from_dict(entry.meta.input_spec) == spec and entry.meta.extra["track"] == "interpolate"
    f = entry.meta.frames[0]
    side = f.crop_box[2] - f.crop_box[0]
    face = max(f.box[2] - f.box[0], f.box[3] - f.box[1])
    assert side <= 1.5 * face * 1.3  # crops at the weights' context scale (1.5), not the default 2.0
    # --frames overrides the sampling density only
    det16 = build_detector(weights, frames=16, device="cpu", backend="torch")
    assert det16.specs == [spec.replace(frames=16)]


def test_specialists_with_different_specs_extract_once_per_spec(golden, tmp_path, monkeypatch):
    _, videos, _ = golden
    import dfpanel.extract.video as extract_run

    a = InputSpec(frames=8, clip_len=4)
    b = a.replace(min_face_size=30, context_scale=1.6)
    folder = tmp_path / "w"
    save_five(folder, a, names=("bg", "cm"))
    save_five(folder, b, names=("tm",))
    save_five(folder, a.replace(frames=4), names=("rr",))  # differs in sampling density only
    calls = []
    real = extract_run.extract_video

    def counting(path, cfg=None, **kw):
        calls.append(cfg.spec)
        return real(path, cfg, **kw)

    monkeypatch.setattr(extract_run, "extract_video", counting)
    det = build_detector(folder, device="cpu", backend="torch")
    assert det.specs == [a, b]  # frames unified (the most any weights used); rr shares bg's extraction
    seen = capture_views(det.runners)
    report = det.analyse(videos["loud"]).report
    assert calls == [a, b]  # two distinct specs: two extractions, not four
    assert report["status"] == "analysed"
    spec_of = {name: {InputSpec.from_dict(e.meta.input_spec) for e, _, _ in c} for name, c in seen.items()}
    assert spec_of == {"bg": {a}, "cm": {a}, "rr": {a}, "tm": {b}}
    s = {x["name"]: x for x in report["specialists"]}
    assert all(s[n]["status"] == "scored" for n in ("bg", "cm", "rr", "tm"))
    assert report["faces"]["frames"] == 8
    assert sum(p is not None for p in report["timeline"]["panel"]) == 8


def test_eval_and_panel_fit_refuse_a_cache_made_with_other_settings(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "index.jsonl").touch()
    (cache / "input_spec.json").write_text(json.dumps(InputSpec(min_face_size=60, frames=16).to_dict()))
    weights = save_five(tmp_path / "w", InputSpec(min_face_size=40, frames=32), names=("cm",))
    manifest = tmp_path / "m.jsonl"
    write_manifest([VideoRecord(id="v", path="v.mp4", label=0, fake_type="real", split="test", dataset="folder",
                                group="v")], manifest)  # fmt: skip
    code = main(["eval", "--weights", str(weights / "cm.safetensors"), "--manifest", str(manifest),
                 "--data", str(cache), "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "min_face_size 60 vs 40" in err and "frames" not in err.split("(")[1].split(")")[0]
    code = main(["panel", "fit", "--weights", str(weights), "--manifest", str(manifest), "--data", str(cache)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "min_face_size 60 vs 40" in err


def test_a_second_spec_that_finds_no_face_makes_only_its_specialists_abstain(tmp_path):
    from detect_fakes import FakeSpecialist
    from factories import extracted_track as fake_track

    from dfpanel.detect.pipeline import DetectConfig, PanelDetector
    from dfpanel.errors import NoFaceError
    from dfpanel.inference.runners import TorchRunner
    from dfpanel.panel.combiner import Panel

    a, b = InputSpec(frames=12, clip_len=4), InputSpec(frames=12, clip_len=4, min_face_size=200)
    runners = [TorchRunner(FakeSpecialist("cm", "frame", 1.0), input_spec=a),
               TorchRunner(FakeSpecialist("tm", "clip", 1.0), input_spec=b)]  # fmt: skip
    made = []

    def extract_for(spec):
        made.append(spec)

        def run(path, video_id, timings, progress=None):
            if spec.min_face_size == 200:
                raise NoFaceError(f"{path}: no face found in 12 frames checked")
            return [fake_track()]

        return run

    det = PanelDetector(runners, Panel(), DetectConfig(), extract_for=extract_for)
    assert made == [a, b]
    video = make_video(tmp_path / "v.mp4", VideoSpec(seconds=0.4, size=(160, 120), face_height=60))
    r = det.analyse(video).report
    s = {x["name"]: x for x in r["specialists"]}
    assert r["status"] == "analysed" and s["cm"]["status"] == "scored"
    assert s["tm"]["status"] == "abstained" and "min_face_size 200 vs 40" in s["tm"]["reason"]
    assert r["panel"]["probability"] == pytest.approx(s["cm"]["probability"])
