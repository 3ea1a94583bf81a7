"""Batched face detection (dfpanel.extract.batched): one detector serving every extraction worker,
batching frames of several videos. The GPU path's logic, exercised on the CPU (`--detect-batch`).

Tolerance: batched and per-video detection run the same networks on the same pixels; only the batch
a frame shares (its size, its neighbours) changes, which MTCNN's per-frame computation sees only as
the order of float32 sums inside a convolution (~1e-6 relative). Boxes and landmarks must agree
within 0.01 px, the precision the cache stores them at; a frame answered with another frame's or
another video's result would be off by pixels (the face moves ~1 px per frame, and across videos).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.errors import ConfigError
from dfpanel.extract.batched import DetectorError, DetectorServer, RemoteNets
from dfpanel.extract.cache import FaceTrackCache
from dfpanel.extract.decode import VideoReader
from dfpanel.extract.faces import (
    DETECTORS,
    Detection,
    FaceDetector,
    MTCNNDetector,
    MTCNNNets,
    register_detector,
)
from dfpanel.extract.run import run_extraction
from dfpanel.extract.video import ExtractConfig
from dfpanel.index.manifest import VideoRecord, write_manifest

TOL_PX = 0.01
SIZES = [(320, 240), (320, 240), (352, 288)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("videos")
    paths = [make_video(root / f"v{k}.mp4", VideoSpec(seconds=1.2, seed=k, size=size)) for k, size in enumerate(SIZES)]
    make_video(root / "noface.mp4", VideoSpec(seconds=1.2, face=False))
    (root / "notes.mp4").write_text("not a video\n" * 50)
    return root, paths


def _close(a: list[Detection], b: list[Detection]) -> float:
    """Largest difference in px between two detection lists (boxes and landmarks), inf if they differ in count."""
    if len(a) != len(b):
        return float("inf")
    return max([0.0] + [max(np.abs(x.box - y.box).max(), np.abs(x.landmarks - y.landmarks).max()) for x, y in zip(a, b)])


def test_batched_detection_across_videos_matches_per_video_detection(videos):
    _, paths = videos
    frames = []
    for p in paths:
        with VideoReader(p) as reader:
            frames.append([f.rgb for f in reader.frames(list(range(8)))])
    local = MTCNNDetector()
    want = [(local.detect(fs), None) for fs in frames]
    want = [(dets, local.refine(fs[1:], [dets[0][0].box] * 7)) for fs, (dets, _) in zip(frames, want)]
    assert all(d[0] for dets, _ in want for d in [dets])  # a face in every video's first frame

    # One server; three workers (threads here) ask at once; it waits 0.5 s to batch what arrives.
    server = DetectorServer(MTCNNNets("cpu"), batch=32, gather_s=0.5)
    got: list = [None] * len(paths)

    def worker(k: int) -> None:
        det = MTCNNDetector(nets=RemoteNets(*server.client))
        dets = det.detect(frames[k])
        got[k] = (dets, det.refine(frames[k][1:], [want[k][0][0][0].box] * 7))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stats = server.close()
    # the two 320x240 videos' frames went through the networks together, and the refine crops of all three
    assert stats["max_requests_per_batch"] >= 2 and stats["batches"] < 2 * len(paths)
    assert stats["frames"] == sum(len(fs) for fs in frames) and stats["crops"] == 7 * len(paths)
    worst = 0.0
    for (want_dets, want_ref), (got_dets, got_ref) in zip(want, got):
        for a, b in zip(want_dets, got_dets):
            worst = max(worst, _close(a, b))
            assert [round(d.score, 4) for d in a] == [round(d.score, 4) for d in b]
        worst = max(worst, _close(want_ref, got_ref))
    assert worst <= TOL_PX


def test_a_batched_run_writes_the_cache_one_process_writes_and_resumes(videos, tmp_path):
    root, paths = videos
    rows = [VideoRecord(id=p.stem, path=p.name, label=k % 2, fake_type="real" if k % 2 == 0 else "Deepfakes",
                        split="train", dataset="folder", group=f"g{k}", root=str(root))
            for k, p in enumerate([*paths, root / "noface.mp4", root / "notes.mp4"])]  # fmt: skip
    write_manifest(rows, tmp_path / "m.jsonl")
    cfg = ExtractConfig(frames=16, clip_len=8)
    one = run_extraction(tmp_path / "m.jsonl", tmp_path / "one", cfg, progress=False)
    batched_cfg = ExtractConfig(frames=16, clip_len=8, detect_batch=8)
    two = run_extraction(tmp_path / "m.jsonl", tmp_path / "two", batched_cfg, workers=2, progress=False)
    assert (one["ok"], one["failed"]) == (two["ok"], two["failed"]) == (3, 2)
    assert sorted(f["error"] for f in two["failures"]) == ["NoFaceError", "VideoError"]  # failures stay per video
    det = two["detector"]
    assert det["device"] == "cpu" and det["frames"] > 0 and det["crops"] > 0 and det["failed_requests"] == 0
    assert "detector" not in one

    a, b = FaceTrackCache(tmp_path / "one"), FaceTrackCache(tmp_path / "two")
    assert sorted((r.id, r.n_frames) for r in a.rows()) == sorted((r.id, r.n_frames) for r in b.rows())
    for row in a.rows():
        ma = json.loads((a.root / row.dir / "meta.json").read_text())["frames"]
        mb = json.loads((b.root / row.dir / "meta.json").read_text())["frames"]
        assert [f["index"] for f in ma] == [f["index"] for f in mb]
        for fa, fb in zip(ma, mb):
            assert np.abs(np.subtract(fa["box"], fb["box"])).max() <= TOL_PX + 1e-9
            assert np.abs(np.subtract(fa["landmarks"], fb["landmarks"])).max() <= TOL_PX + 1e-9
            assert fa["crop_box"] == fb["crop_box"]
        ea, eb = a.entry(row), b.entry(row)
        assert all(np.array_equal(ea.crop(k), eb.crop(k)) for k in range(len(ma)))

    again = run_extraction(tmp_path / "m.jsonl", tmp_path / "two", batched_cfg, workers=2, progress=False)
    assert (again["skipped"], again["ok"], again["failed"]) == (3, 0, 2)  # resumed: only the failures retried


class StubNets:
    """Answers like MTCNNNets: per frame one box at its top-left pixel value; O-Net outputs from the
    crop's mean. A frame whose first pixel is 255 makes the whole call fail; `delay` slows it."""

    def __init__(self):
        self.delay = 0.0

    def detect(self, batch, min_size):
        time.sleep(self.delay)
        if (batch[:, 0, 0, 0] == 255).any():
            raise ValueError("poisoned frame")
        v = batch[:, 0, 0, 0].astype(float)
        return ([np.array([[x, x, x + 10, x + 10]]) for x in v], [np.array([0.99])] * len(v),
                [np.full((1, 5, 2), x) for x in v])

    def onet(self, crops, min_size):
        m = crops.float().mean(dim=(1, 2, 3)).numpy()
        return np.stack([m] * 4, 1), np.stack([m] * 10, 1), np.stack([1 - m, m], 1)


def _frames(value: int, n: int = 2, size=(24, 32)) -> np.ndarray:
    return np.full((n, *size, 3), value, np.uint8)


def test_a_failing_request_fails_alone_and_answers_go_to_whoever_asked():
    server = DetectorServer(StubNets(), batch=3)
    try:
        replies = server.run([("detect", _frames(10), 12), ("onet", np.full((1, 3, 48, 48), 0.25, np.float32), 12),
                              ("detect", _frames(255, 1), 12), ("detect", _frames(30, 3), 12),
                              ("onet", np.full((2, 3, 48, 48), 0.5, np.float32), 12)])
    finally:
        stats = server.close()
    status = [r[0] for r in replies]
    assert status == ["ok", "ok", "error", "ok", "ok"]
    assert "poisoned frame" in replies[2][1] and stats["failed_requests"] == 1
    assert [b[0][0] for b in replies[0][1][0]] == [10, 10] and [b[0][0] for b in replies[3][1][0]] == [30, 30, 30]
    assert replies[1][1][2].tolist() == [[0.75, 0.25]] and replies[4][1][2].tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_remote_nets_survive_dead_and_slow_clients():
    from multiprocessing.connection import Client

    nets = StubNets()
    server = DetectorServer(nets, batch=8)
    try:
        dead = Client(*server.client[:1], authkey=server.client[1])
        dead.send(("detect", _frames(5), 12))
        dead.close()  # a worker that died waiting for its answer
        remote = RemoteNets(*server.client)
        boxes, _, _ = remote.detect(_frames(7), 12)
        assert [b[0][0] for b in boxes] == [7, 7]
        with pytest.raises(DetectorError, match="poisoned frame"):
            remote.detect(_frames(255, 1), 12)
        nets.delay = 0.5
        slow = RemoteNets(*server.client, timeout_s=0.1)
        with pytest.raises(DetectorError, match="did not answer within"):
            slow.detect(_frames(1), 12)
        nets.delay, slow.timeout_s = 0.0, 10.0
        boxes, _, _ = slow.detect(_frames(2), 12)  # reconnected: its own answer, not the late one
        assert [b[0][0] for b in boxes] == [2, 2]
    finally:
        server.close()
    with pytest.raises(DetectorError):
        RemoteNets(*server.client).detect(_frames(3), 12)


def test_detectors_that_cannot_be_shared_are_refused(tmp_path, videos):
    root, paths = videos

    @register_detector("unshared-test")
    class Unshared(FaceDetector):
        def __init__(self, **kwargs):
            pass

        def detect(self, frames):
            return [[] for _ in frames]

    rows = [VideoRecord(id=p.stem, path=p.name, label=0, fake_type="real", split="train", dataset="folder",
                        group=p.stem, root=str(root)) for p in paths]
    write_manifest(rows, tmp_path / "m.jsonl")
    try:
        with pytest.raises(ConfigError, match="cannot be shared between workers; use --detect-batch 0"):
            run_extraction(tmp_path / "m.jsonl", tmp_path / "c", ExtractConfig(detector="unshared-test", detect_batch=4),
                           workers=2, progress=False)
    finally:
        DETECTORS.pop("unshared-test")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_cuda_stops_at_once_with_one_line(tmp_path, capsys):
    write_manifest([VideoRecord(id="v", path="v.mp4", label=0, fake_type="real", split="train", dataset="folder",
                                group="g", root=str(tmp_path))], tmp_path / "m.jsonl")
    assert main(["extract", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "c"), "--device", "cuda", "--workers", "4"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available here; use --device cpu" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
