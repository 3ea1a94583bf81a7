"""Synthetic face-track cache entries for the views/models tests (no extract needed). No tests here."""

from __future__ import annotations

import numpy as np

from dfpanel.extract.cache import AudioInfo, FaceTrackEntry, FrameRecord, TrackMeta

# Specialist options small enough for fast CPU tests (timm's test_efficientnet backbone).
SMALL = {"backbone": "tiny", "image_size": 64, "clip_len": 4, "fusion_dim": 32, "fusion_heads": 4}


def make_frames(n: int, size=(320, 240), seed: int = 0) -> list[np.ndarray]:
    """n random RGB source frames, height x width x 3 uint8."""
    rng = np.random.default_rng(seed)
    w, h = size
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def make_entry(
    n_frames: int = 8,
    fps: float = 25.0,
    t0: float = 0.0,
    box=(101.3, 61.7, 181.3, 151.7),
    size=(320, 240),
    audio: np.ndarray | None = None,
    audio_start: float = 0.0,
    clip_len: int = 8,
    frames: list[np.ndarray] | None = None,
    landmarks=None,
    seed: int = 0,
) -> tuple[FaceTrackEntry, list[np.ndarray]]:
    """An in-memory entry whose crops are cut from `frames` exactly as extract does: crop_box = 2x the
    face box, integral, clipped to the frame. Returns (entry, source frames)."""
    frames = frames if frames is not None else make_frames(n_frames, size, seed)
    w, h = size
    x0, y0, x1, y1 = box
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    crop_box = [max(0, int(np.floor(cx - bw))), max(0, int(np.floor(cy - bh))), min(w, int(np.ceil(cx + bw))), min(h, int(np.ceil(cy + bh)))]
    if landmarks is None:
        landmarks = [[x0 + 0.3 * bw, y0 + 0.35 * bh], [x0 + 0.7 * bw, y0 + 0.35 * bh], [cx, y0 + 0.55 * bh], [x0 + 0.35 * bw, y0 + 0.78 * bh], [x0 + 0.65 * bw, y0 + 0.78 * bh]]
    records, crops = [], []
    for i, frame in enumerate(frames):
        records.append(
            FrameRecord(index=i, time=t0 + i / fps, clip=i // clip_len, box=list(box), crop_box=list(crop_box),
                        landmarks=[list(p) for p in landmarks], score=0.99, file=f"crops/{i:06d}.png")
        )
        crops.append(frame[crop_box[1] : crop_box[3], crop_box[0] : crop_box[2]].copy())
    audio_info = None if audio is None else AudioInfo(file="audio.wav", sample_rate=16000, start_time=audio_start, n_samples=len(audio))
    meta = TrackMeta(video_id="v", dataset="synthetic", source="/dev/null", source_size=[w, h], fps=fps,
                     duration=len(frames) / fps, codec="h264", rotation=0, clip_len=clip_len, frames=records, audio=audio_info)
    return FaceTrackEntry.from_memory(meta, crops, audio), frames
