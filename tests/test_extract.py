"""`dfpanel extract`: one video -> tracks, a manifest -> cache, resume, shards, merge, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from video_factory import VideoSpec, face_patch, face_position, make_video, truncate

from dfpanel.cli import main
from dfpanel.errors import NoFaceError, VideoError
from dfpanel.extract.cache import INDEX_FILE, REPORT_FILE, FaceTrackCache, read_wav
from dfpanel.extract.decode import VideoReader
from dfpanel.extract.faces import (
    DETECTORS,
    Detection,
    FaceDetector,
    register_detector,
    track_faces,
)
from dfpanel.extract.merge import merge_caches
from dfpanel.extract.run import run_extraction, select_records, shard_of
from dfpanel.extract.video import ExtractConfig, extract_video, get_detector
from dfpanel.index.manifest import VideoRecord, write_manifest
from dfpanel.models.specialists.av import MIN_VISIBLE_MOUTH, mouth_visible

CFG = ExtractConfig(frames=16, clip_len=8)
GOOD = ("real_a", "fake_b")
BAD = {"noface": "NoFaceError", "empty": "VideoError", "cut": "VideoError", "notes": "VideoError"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ds")
    make_video(root / "real_a.mp4", VideoSpec(seconds=1.2, click_at=0.6))
    make_video(root / "fake_b.mp4", VideoSpec(seconds=1.2, seed=1))
    make_video(root / "noface.mp4", VideoSpec(seconds=1.2, face=False))
    (root / "empty.mp4").write_bytes(b"")
    truncate(root / "real_a.mp4", root / "cut.mp4", keep=0.5)
    (root / "notes.mp4").write_text("not a video\n" * 50)
    rows = []
    for n, vid in enumerate(list(GOOD) + list(BAD)):
        label = 0 if vid.startswith("real") else 1
        rows.append(VideoRecord(
            id=vid, path=f"{vid}.mp4", label=label, fake_type="real" if label == 0 else "Deepfakes",
            split=("train", "val", "test")[n % 3], dataset="folder", group=f"g{n}", chunk=n,
            root=str(root), manipulations=[] if label == 0 else ["blend"],
        ))
    manifest = root / "manifest.jsonl"
    write_manifest(rows, manifest)
    return root, manifest, rows


@pytest.fixture(scope="module")
def cache(dataset, tmp_path_factory):
    _, manifest, _ = dataset
    out = tmp_path_factory.mktemp("cache")
    summary = run_extraction(manifest, out, CFG, progress=False)
    return out, summary


def test_extract_video_gives_clips_of_native_lossless_crops_and_aligned_audio(dataset):
    root, _, _ = dataset
    ((meta, crops, audio),) = extract_video(root / "real_a.mp4", CFG, video_id="real_a", dataset="folder")
    assert meta.video_id == "real_a" and meta.track_id == 0 and meta.detector == "mtcnn"
    assert meta.source_size == [320, 240] and meta.fps == 25.0 and meta.codec == "h264"
    assert len(meta.frames) == 16 == len(crops)
    clips = {}
    for f in meta.frames:
        clips.setdefault(f.clip, []).append(f.index)
    assert sorted(clips) == [0, 1]
    for idx in clips.values():
        assert idx == list(range(idx[0], idx[0] + 8))  # consecutive frames
    assert clips[1][0] - clips[0][0] >= 8  # spread, not overlapping
    patch_h, patch_w = face_patch(110).shape[:2]
    with VideoReader(root / "real_a.mp4") as r:
        full = r.all_frames()
    for f, crop in zip(meta.frames, crops):
        assert f.time == pytest.approx(f.index / 25.0)
        x0, y0, x1, y1 = f.crop_box
        np.testing.assert_array_equal(crop, full[f.index].rgb[y0:y1, x0:x1])  # native pixels, untouched
        # The face box lies on the pasted face; the crop is about twice its size.
        fx, fy = face_position(f.index, 30, VideoSpec(), np.zeros((patch_h, patch_w)))
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        assert fx < cx < fx + patch_w and fy < cy < fy + patch_h
        assert 1.8 < (x1 - x0) / max(f.box[2] - f.box[0], f.box[3] - f.box[1]) < 2.2
    # Each clip's first frame searched whole, the face followed through the other 7 by refinement.
    assert meta.extra["detection"] == {"full": 2, "roi": 0, "refined": 14, "dense": 0}
    assert all(f.detected for f in meta.frames)
    # Interpolating instead: the face crosses the frame in 1.2 s (7 px/frame), sparse boxes jump,
    # so every frame gets detected.
    ((inter, _, _),) = extract_video(root / "real_a.mp4", replace(CFG, track="interpolate"))
    assert inter.extra["detection"]["dense"] > 0 and all(f.detected for f in inter.frames)
    sizes = {(c.shape, f.clip) for c, f in zip(crops, meta.frames)}
    assert len(sizes) == 2  # one crop size per clip
    assert meta.audio is not None and meta.audio.sample_rate == 16000 and meta.audio.n_samples == len(audio)
    click = meta.audio.start_time + int(np.argmax(audio > 0.5)) / 16000
    assert click == pytest.approx(0.6, abs=1 / 25)


def test_interpolated_boxes_match_detection_on_every_frame(dataset):
    root, _, _ = dataset
    slow = make_video(root.parent / "slow.mp4", VideoSpec(seconds=6.0, seed=3))  # ~1.3 px/frame
    ((sparse, _, _),) = extract_video(slow, replace(CFG, track="interpolate"))
    # Reference: the full-frame detector on every frame (all_faces turns off the region search).
    ((dense, _, _),) = extract_video(slow, ExtractConfig(frames=16, clip_len=8, detect_every=1, track="interpolate", all_faces=True))
    ((refined, _, _),) = extract_video(slow, CFG)
    assert sparse.extra["detection"] == {"full": 2, "roi": 4, "refined": 0, "dense": 0}
    assert dense.extra["detection"]["full"] == 16
    assert [f.index for f in sparse.frames] == [f.index for f in dense.frames]
    tracked = [(a, b) for a, b in zip(sparse.frames, dense.frames) if not a.detected]
    assert len(tracked) == 10
    for a, b in tracked:
        np.testing.assert_allclose(a.box, b.box, atol=3.0)  # within 3 px of running the detector
    # AV's gate sees the mouth on those tracked frames too; counting detections alone (3 of each 8)
    # gated every clip extracted this way.
    assert all(mouth_visible(sparse.frames, p) for p in range(len(sparse.frames)))
    assert sum(f.detected for f in sparse.frames) < MIN_VISIBLE_MOUTH * len(sparse.frames)
    # Refined frames: real landmarks on every frame, as close to a full detection's as those are
    # to each other (an MTCNN box moves a few px with the proposal it was refined from).
    assert refined.extra["detection"]["refined"] == 14 and all(f.detected for f in refined.frames)
    for a, b in zip(refined.frames, dense.frames):
        assert a.index == b.index
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=4.0)
        np.testing.assert_allclose(a.box, b.box, atol=6.0)


def test_rotated_video_is_extracted_upright(dataset):
    root, _, _ = dataset
    path = make_video(root.parent / "rot.mp4", VideoSpec(seconds=0.8, rotation=90, size=(320, 240)))
    ((meta, crops, _),) = extract_video(path, ExtractConfig(frames=8, clip_len=8))
    assert meta.rotation == 90 and meta.source_size == [240, 320]
    for f in meta.frames:
        x0, y0, x1, y1 = f.crop_box
        assert x1 <= 240 and y1 <= 320
        # Upright face: eyes above the nose above the mouth.
        lm = np.array(f.landmarks)
        assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()


def test_a_face_lost_by_refinement_is_detected_in_full_in_that_clip():
    from dfpanel.extract.video import detect_clips

    class Flaky(FaceDetector):
        name = "flaky"

        def __init__(self):
            self.full = []

        def detect(self, frames):
            self.full.extend(f[0, 0, 0] for f in frames)
            return [[Detection(np.array([10.0, 10, 50, 50]), np.full((5, 2), 30.0), 0.99)] for _ in frames]

        def refine(self, frames, boxes):
            # Frames of clip 1 (marked 1 in pixel [0,0]) lose the face from their third frame on.
            return [Detection(b.copy(), np.full((5, 2), 30.0), 0.2 if f[0, 0, 1] else 0.99) for f, b in zip(frames, boxes)]

    frames = []
    for clip in range(2):
        for k in range(8):
            f = np.zeros((64, 64, 3), np.uint8)
            f[0, 0, 0], f[0, 0, 1] = clip, clip == 1 and k >= 2
            frames.append(f)
    det = Flaky()
    dets, stats = detect_clips(det, frames, [list(range(8)), list(range(8, 16))], ExtractConfig(frames=16, clip_len=8))
    assert stats["refined"] == 7 + 2  # clip 0 all the way, clip 1 until the face was lost
    # Clip 1 went the full-frame way: its sparse frames (every 4th and the last) were detected, its
    # refined ones dropped, and the tracker interpolates the rest.
    assert sorted(dets) == list(range(8)) + [8, 12, 15]
    assert stats["full"] == 2 + 2 and stats["dense"] == 0 and det.full.count(1) == 3
    clip_of = [0] * 8 + [1] * 8
    (track,) = track_faces(clip_of, dets)
    assert [p.pos for p in track.points] == list(range(16))


def test_a_video_shorter_than_a_clip_gives_one_short_clip(dataset):
    root, _, _ = dataset
    path = make_video(root.parent / "short.mp4", VideoSpec(seconds=0.2, sweep=0.1))  # 5 frames
    ((meta, crops, _),) = extract_video(path, CFG)
    assert [f.index for f in meta.frames] == [0, 1, 2, 3, 4] and meta.clip_len == 5 and len(crops) == 5


def test_extract_video_raises_for_no_face_and_bad_files(dataset):
    root, _, _ = dataset
    with pytest.raises(NoFaceError, match="noface.mp4: no face"):
        extract_video(root / "noface.mp4", CFG)
    for name in ("empty.mp4", "cut.mp4", "notes.mp4"):
        with pytest.raises(VideoError, match=name):
            extract_video(root / name, CFG)


def test_run_writes_entries_and_index_rows_from_the_manifest(dataset, cache):
    _, _, rows = dataset
    out, summary = cache
    assert (summary["selected"], summary["ok"], summary["failed"], summary["skipped"]) == (6, 2, 4, 0)
    assert set(summary["stage_seconds"]) >= {"decode", "audio", "faces", "crops", "write"}
    by_id = {r.id: r for r in rows}
    index = FaceTrackCache(out).rows()
    assert sorted(r.id for r in index) == sorted(GOOD)
    for row in index:
        src = by_id[row.id]
        assert (row.label, row.split, row.fake_type, row.group, row.chunk, row.manipulations) == (
            src.label, src.split, src.fake_type, src.group, src.chunk, src.manipulations)
        assert row.dir == f"folder/{row.id}" and row.n_frames == 16 and row.n_clips == 2
        entry = FaceTrackCache(out).entry(row)
        assert len(entry) == 16
        x0, y0, x1, y1 = entry.meta.frames[3].crop_box
        assert entry.crop(3).shape == (y1 - y0, x1 - x0, 3)
    real = FaceTrackCache(out).entry(next(r for r in index if r.id == "real_a"))
    assert real.has_audio and (out / real.meta.audio.file).name == "audio.wav"
    assert len(read_wav(real.folder / "audio.wav")) == real.meta.audio.n_samples
    fake = FaceTrackCache(out).entry(next(r for r in index if r.id == "fake_b"))
    assert not fake.has_audio and not (fake.folder / "audio.wav").exists()
    assert not any(p.name.startswith(".tmp-") for p in (out / "folder").iterdir())  # all committed


def test_failures_are_recorded_with_reasons(cache):
    out, summary = cache
    report = json.loads((out / REPORT_FILE).read_text())
    fails = report["failures"]
    assert sorted(fails) == sorted(f"folder/{k}" for k in BAD)
    for vid, kind in BAD.items():
        f = fails[f"folder/{vid}"]
        assert f["error"] == kind and f"{vid}.mp4" in f["reason"] and "\n" not in f["reason"]
    assert report["runs"][-1]["ok"] == 2 and report["runs"][-1]["failed"] == 4
    assert {f["id"] for f in summary["failures"]} == set(BAD)


def test_rerun_skips_finished_videos_and_resumes_a_killed_one(dataset, tmp_path):
    _, manifest, _ = dataset
    good = tmp_path / "good.jsonl"
    good.write_text("".join(l for l in manifest.read_text().splitlines(True) if any(f'"{g}"' in l for g in GOOD)))
    out = tmp_path / "cache"
    run_extraction(good, out, CFG, progress=False)
    det = get_detector(CFG)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("folder/*/meta.json")}
    calls = det.calls
    again = run_extraction(good, out, CFG, progress=False)
    assert (again["skipped"], again["ok"]) == (2, 0)
    assert det.calls == calls  # nothing decoded or detected
    assert {p: p.stat().st_mtime_ns for p in out.glob("folder/*/meta.json")} == mtimes
    # A killed run's half-written entry folders: old ones are cleared, a young one (maybe another
    # run's, in progress) is left alone.
    stale, young = out / "folder" / ".tmp-x-1", out / "folder" / ".tmp-y-2"
    for d in (stale, young):
        (d / "crops").mkdir(parents=True)
    os.utime(stale, (0, 0))
    run_extraction(good, out, CFG, progress=False)
    assert not stale.exists() and young.exists()
    # Killed after fake_b's entry was committed but before its index row: it is redone, once.
    lines = (out / INDEX_FILE).read_text().splitlines(True)
    (out / INDEX_FILE).write_text("".join(l for l in lines if '"fake_b"' not in l))
    third = run_extraction(good, out, CFG, progress=False)
    assert (third["skipped"], third["ok"]) == (1, 1) and det.calls > calls
    assert sorted(r.id for r in FaceTrackCache(out).rows()) == sorted(GOOD)
    assert len((out / INDEX_FILE).read_text().splitlines()) == 2


def test_shards_partition_the_manifest_and_merge_gives_the_union(dataset, cache, tmp_path):
    _, manifest, rows = dataset
    n = 3
    parts = [select_records(manifest, (i, n)) for i in range(1, n + 1)]
    ids = [r.id for p in parts for r in p]
    assert sorted(ids) == sorted(r.id for r in rows) and len(set(ids)) == len(ids)
    assert [r.id for r in select_records(manifest, splits=["train"])] == [r.id for r in rows if r.split == "train"]

    shard_caches = []
    for i in (1, 2):
        c = tmp_path / f"shard{i}"
        run_extraction(manifest, c, CFG, shard=(i, 2), progress=False)
        shard_caches.append(c)
    merged = tmp_path / "merged"
    res = merge_caches(merged, shard_caches)
    single_out, _ = cache
    assert sorted((r.dataset, r.id) for r in FaceTrackCache(merged).rows()) == sorted(
        (r.dataset, r.id) for r in FaceTrackCache(single_out).rows())
    assert res["entries"] == 2 and res["failed"] == len(BAD)
    report = json.loads((merged / REPORT_FILE).read_text())
    assert sorted(report["failures"]) == sorted(f"folder/{k}" for k in BAD)
    for row in FaceTrackCache(merged).rows():
        entry = FaceTrackCache(merged).entry(row)
        assert len(entry) == 16 and entry.crop(0).ndim == 3
    # Merging into one of the inputs with --move through the CLI.
    assert main(["cache", "merge", str(shard_caches[0]), str(shard_caches[1]), "--move"]) == 0
    assert len(FaceTrackCache(shard_caches[0]).rows()) == 2


def test_shard_hash_does_not_depend_on_the_python_process():
    code = "from dfpanel.extract.run import shard_of; print([shard_of(f'v{i}', 7) for i in range(20)])"
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed)).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    assert json.loads(outs.pop()) == [shard_of(f"v{i}", 7) for i in range(20)]


def test_all_faces_keeps_every_track_with_main_row_last(tmp_path, dataset):
    root, _, _ = dataset

    @register_detector("two-faces-test")
    class TwoFaces(FaceDetector):
        def __init__(self, **kwargs):
            pass

        def detect(self, frames):
            lm = np.tile([[0.0, 0.0]], (5, 1))
            return [[Detection(np.array([10.0, 10, 110, 110]), lm + 50, 0.99),
                     Detection(np.array([200.0, 100, 240, 140]), lm + 220, 0.98)] for _ in frames]

    try:
        rec = VideoRecord(id="fake_b", path="fake_b.mp4", label=1, fake_type="x", split="train", dataset="folder",
                          group="g", root=str(root))
        write_manifest([rec], tmp_path / "m.jsonl")
        cfg = ExtractConfig(frames=8, clip_len=8, detector="two-faces-test", all_faces=True)
        summary = run_extraction(tmp_path / "m.jsonl", tmp_path / "c", cfg, progress=False)
    finally:
        DETECTORS.pop("two-faces-test")
    assert summary["tracks"] == 2
    lines = [json.loads(l) for l in (tmp_path / "c" / INDEX_FILE).read_text().splitlines()]
    assert [l["id"] for l in lines] == ["fake_b__t1", "fake_b"]
    main_entry = FaceTrackCache(tmp_path / "c").entry(FaceTrackCache(tmp_path / "c").rows()[-1])
    assert main_entry.meta.frames[0].box == [10.0, 10.0, 110.0, 110.0]


def test_cli_strict_exit_codes_and_user_errors(dataset, tmp_path, capsys):
    _, manifest, _ = dataset
    args = ["extract", str(manifest), "--out", str(tmp_path / "c"), "--frames", "16", "--no-progress", "--split", "val,test"]
    assert main(args) == 0  # failures are recorded, not fatal
    out = capsys.readouterr().out
    assert "failed videos" in out and "NoFaceError" in out and "VideoError" in out
    assert main(args + ["--strict"]) == 1
    assert main(["extract", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "c")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(args + ["--shard", "3/2"]) == 2
    assert main(args[:-2] + ["--split", "training"]) == 2
    assert main(args + ["--detector", "nope"]) == 2


def test_worker_pool_gives_the_same_cache_as_one_process(dataset, cache, tmp_path):
    _, manifest, _ = dataset
    single_out, _ = cache
    summary = run_extraction(manifest, tmp_path / "pool", CFG, workers=2, progress=False)
    assert (summary["ok"], summary["failed"]) == (2, 4)
    for row in FaceTrackCache(single_out).rows():
        a = json.loads((single_out / row.dir / "meta.json").read_text())
        b = json.loads((tmp_path / "pool" / row.dir / "meta.json").read_text())
        assert [f["crop_box"] for f in a["frames"]] == [f["crop_box"] for f in b["frames"]]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ffpp", "celebdf", "dfdc", "fakeavceleb", "folder"])
def test_extraction_works_on_synthetic_datasets_of_every_layout(layout, tmp_path):
    from dfpanel.index import index_dataset
    from dfpanel.synth import synthesize
    from dfpanel.synth.layouts import MIN_VIDEOS

    root = tmp_path / layout
    synthesize(layout, root, videos=MIN_VIDEOS[layout], seconds=1.0, progress=False)
    records = index_dataset(root)
    write_manifest(records, tmp_path / "m.jsonl")
    summary = run_extraction(tmp_path / "m.jsonl", tmp_path / "cache", ExtractConfig(frames=8, clip_len=8), progress=False)
    assert summary["failed"] == 0, summary["failures"]  # MTCNN found a face in every synthetic video
    cache = FaceTrackCache(tmp_path / "cache")
    rows = {r.id: r for r in cache.rows()}
    assert sorted(rows) == sorted(r.id for r in records)
    for rec in records:
        row = rows[rec.id]
        assert (row.label, row.fake_type, row.split, row.dataset) == (rec.label, rec.fake_type, rec.split, rec.dataset)
        meta = cache.entry(row).meta
        assert len(meta.frames) == 8 and all(f.score > 0.9 for f in meta.frames)
        assert (meta.audio is not None) == bool(rec.has_audio) or rec.has_audio is None


def test_a_crashed_worker_fails_only_its_video_and_the_pool_is_rebuilt(tmp_path):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from dfpanel.extract.run import _run_pool

    class FakePool:
        def submit(self, fn, rec, out):
            fut = Future()
            if rec.id == "v3" and starts[0] == 1:
                fut.set_exception(BrokenProcessPool("worker died"))
            else:
                fut.set_result({"id": rec.id, "dataset": rec.dataset, "path": "", "ok": True, "rows": []})
            return fut

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    class FakePools:
        workers = 2

        def start(self):
            starts[0] += 1
            return FakePool()

    starts = [0]
    todo = [VideoRecord(id=f"v{i}", path=f"v{i}.mp4", label=0, fake_type="real", split="train", dataset="folder",
                        group="g") for i in range(8)]
    results = []
    _run_pool(todo, tmp_path, FakePools(), None, results.append, lambda: None)
    assert sorted(r["id"] for r in results) == sorted(r.id for r in todo)  # every video answered once
    crashed = [r for r in results if not r["ok"]]
    assert [r["id"] for r in crashed] == ["v3"] and crashed[0]["error"] == "WorkerCrash"
    assert "v3.mp4" in crashed[0]["reason"] and starts[0] == 2  # a fresh pool took the rest


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(dataset, tmp_path):
    import signal
    import time

    root, _, _ = dataset
    rows = [VideoRecord(id=f"v{i}", path="real_a.mp4" if i % 2 else "fake_b.mp4", label=0, fake_type="real",
                        split="train", dataset="folder", group=f"g{i}", root=str(root)) for i in range(8)]
    write_manifest(rows, tmp_path / "m.jsonl")
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "dfpanel", "extract", str(tmp_path / "m.jsonl"), "--out", str(out), "--frames", "16",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / INDEX_FILE).is_file() and (out / INDEX_FILE).read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len((out / INDEX_FILE).read_text().splitlines())
    summary = run_extraction(tmp_path / "m.jsonl", out, CFG, progress=False)
    assert summary["skipped"] == before and summary["ok"] == 8 - before and summary["failed"] == 0
    ids = [json.loads(l)["id"] for l in (out / INDEX_FILE).read_text().splitlines()]
    assert sorted(ids) == sorted(r.id for r in rows)  # each video once
    assert all((out / "folder" / r.id / "meta.json").is_file() for r in rows)
