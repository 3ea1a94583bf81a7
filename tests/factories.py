"""Face-track cache data built by hand, as `dfpanel extract` would have written it, so tests of views,
models, training, evaluation and detection need not run extraction. No tests here.

In memory:
    track_meta(...)         TrackMeta of one face track: N frames in clips of L, a fixed face box,
                            crop box and landmarks, optional audio
    memory_entry(...)       a FaceTrackEntry whose crops are cut from source frames exactly as extract does
    extracted_track(...)    (meta, crops, audio) as an extract function returns it to detection
    voice(...)              a steady voiced sound (harmonics of 140 Hz) where asked, silence elsewhere:
                            audio that `views.speech` calls speech exactly there

On disk:
    write_entry(...)        one entry folder (meta.json, crops, audio.wav) through EntryWriter
    index_row(...)          a CacheIndexRow with the usual defaults
    cache_video(...)        an entry and its index row, as extract writes a finished video
    cache_on_disk(...)      a small cache of many videos by dataset, split and label, fakes brighter

SMALL_SPECIALIST holds specialist options small enough for fast CPU tests.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfpanel.extract.cache import (
    AUDIO_RATE,
    AudioInfo,
    CacheIndexRow,
    EntryWriter,
    FaceTrackEntry,
    FrameRecord,
    TrackMeta,
    append_index_row,
)

# Specialist options small enough for fast CPU tests (timm's test_efficientnet backbone).
SMALL_SPECIALIST = {"backbone": "tiny", "image_size": 64, "clip_len": 4, "fusion_dim": 32, "fusion_heads": 4}


# ---- in memory ------------------------------------------------------------------------------------
def track_meta(
    n_frames: int,
    *,
    clip_len: int,
    box: Sequence[float],
    crop_box: Sequence[int],
    landmarks: Sequence[Sequence[float]],
    fps: float = 25.0,
    t0: float = 0.0,
    frame_index: Sequence[int] | None = None,
    detected: Sequence[bool] | None = None,
    video_id: str = "v",
    dataset: str = "synthetic",
    source: str | None = None,
    source_size: Sequence[int] = (320, 240),
    duration: float | None = None,
    audio: np.ndarray | None = None,
    audio_start: float = 0.0,
    detector: str = "",
) -> TrackMeta:
    """One face track of `n_frames` frames in clips of `clip_len` consecutive positions, the face at
    `box` with its crop at `crop_box` in every frame. `frame_index[pos]` is the decoded frame number of
    position pos (default: pos) and sets its time, t0 + index / fps. Crop files are crops/<pos>.png.
    `audio` (samples at 16 kHz, starting at `audio_start` s) gives the track an audio.wav; None: silent."""
    index = list(frame_index) if frame_index is not None else list(range(n_frames))
    detected = list(detected) if detected is not None else [True] * n_frames
    frames = [
        FrameRecord(index=index[pos], time=t0 + index[pos] / fps, clip=pos // clip_len, box=list(box),
                    crop_box=list(crop_box), landmarks=[list(p) for p in landmarks], score=0.99,
                    file=f"crops/{pos:06d}.png", detected=detected[pos])
        for pos in range(n_frames)
    ]  # fmt: skip
    audio_info = None if audio is None else AudioInfo("audio.wav", AUDIO_RATE, audio_start, len(audio))
    return TrackMeta(
        video_id=video_id, dataset=dataset, source=source or f"/videos/{video_id}.mp4", source_size=list(source_size),
        fps=fps, duration=n_frames / fps if duration is None else duration, codec="h264", rotation=0,
        clip_len=clip_len, frames=frames, audio=audio_info, detector=detector,
    )  # fmt: skip


def random_frames(n: int, size=(320, 240), seed: int = 0) -> list[np.ndarray]:
    """n random RGB source frames, height x width x 3 uint8."""
    rng = np.random.default_rng(seed)
    w, h = size
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def memory_entry(
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
    """An in-memory entry whose crops are cut from `frames` (default: random) exactly as extract does:
    crop_box = 2x the face box, integral, clipped to the frame. Landmarks default to eyes, nose and
    mouth corners placed inside the box. Returns (entry, source frames)."""
    frames = frames if frames is not None else random_frames(n_frames, size, seed)
    w, h = size
    x0, y0, x1, y1 = box
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    crop_box = [max(0, int(np.floor(cx - bw))), max(0, int(np.floor(cy - bh))),
                min(w, int(np.ceil(cx + bw))), min(h, int(np.ceil(cy + bh)))]  # fmt: skip
    if landmarks is None:
        landmarks = [[x0 + 0.3 * bw, y0 + 0.35 * bh], [x0 + 0.7 * bw, y0 + 0.35 * bh], [cx, y0 + 0.55 * bh],
                     [x0 + 0.35 * bw, y0 + 0.78 * bh], [x0 + 0.65 * bw, y0 + 0.78 * bh]]  # fmt: skip
    meta = track_meta(len(frames), clip_len=clip_len, box=box, crop_box=crop_box, landmarks=landmarks, fps=fps, t0=t0,
                      source="/dev/null", source_size=size, audio=audio, audio_start=audio_start)  # fmt: skip
    crops = [frame[crop_box[1] : crop_box[3], crop_box[0] : crop_box[2]].copy() for frame in frames]
    return FaceTrackEntry.from_memory(meta, crops, audio), frames


def voice(seconds: float, spans: Sequence[tuple[float, float]], f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """`seconds` of 16 kHz audio: a steady voiced sound (harmonics of f0, falling 1/k) during each
    (start, end) of `spans`, faint hiss (-80 dBFS) elsewhere. The voice-activity test calls it speech
    exactly during the spans (given enough quiet around them for its noise floor)."""
    n = int(round(seconds * AUDIO_RATE))
    t = np.arange(n) / AUDIO_RATE
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 21)) * 0.2
    on = np.zeros(n, dtype=bool)
    for a, b in spans:
        on[int(round(a * AUDIO_RATE)) : int(round(b * AUDIO_RATE))] = True
    hiss = np.random.default_rng(seed).standard_normal(n) * 1e-4
    return np.where(on, tone, 0.0).astype(np.float32) + hiss.astype(np.float32)


def extracted_track(n_clips: int = 3, clip_len: int = 4, audio: bool = True, fps: float = 25.0, seed: int = 0,
                    video_id: str = "v", dataset: str = "detect", speech: bool = True):  # fmt: skip
    """What an extract function hands detection for one track: (meta, crops, audio samples or None).
    Clips start every 20 decoded frames; every other frame was detected, the rest tracked. Crops are
    120x140 mid-grey noise; audio is a voice over each clip's frames (0.04 s either side) and quiet
    between them (`voice`: AV's gate lets every clip through), or with speech=False faint noise over
    the whole video (no speech: AV's gate holds every clip back)."""
    rng = np.random.default_rng(seed)
    crops = [rng.integers(100, 156, (140, 120, 3), dtype=np.uint8) for _ in range(n_clips * clip_len)]
    duration = (n_clips * 20) / fps
    samples = None
    if audio and speech:
        samples = voice(duration, [(max(0.0, (c * 20 - 1) / fps), (c * 20 + clip_len + 1) / fps) for c in range(n_clips)])
    elif audio:
        samples = (rng.standard_normal(int(duration * AUDIO_RATE)) * 0.05).astype(np.float32)
    meta = track_meta(
        n_clips * clip_len, clip_len=clip_len, box=[40.0, 40.0, 100.0, 110.0], crop_box=[10, 5, 130, 145],
        landmarks=[[55, 65], [85, 65], [70, 80], [58, 95], [82, 95]], fps=fps,
        frame_index=[c * 20 + k for c in range(n_clips) for k in range(clip_len)],
        detected=[k % 2 == 0 for _ in range(n_clips) for k in range(clip_len)],
        video_id=video_id, dataset=dataset, source="/x.mp4", duration=duration, audio=samples, detector="fake",
    )  # fmt: skip
    return meta, crops, samples


# ---- on disk --------------------------------------------------------------------------------------
def write_entry(cache_root: Path, meta: TrackMeta, crops: Sequence[np.ndarray], audio: np.ndarray | None = None) -> Path:
    """Write one entry folder <cache_root>/<dataset>/<video_id> with EntryWriter; returns it."""
    writer = EntryWriter(cache_root, meta.dataset, meta.video_id)
    for pos, (frame, crop) in enumerate(zip(meta.frames, crops, strict=True)):
        frame.file = writer.add_crop(pos, crop)
    if audio is not None:
        writer.add_audio(audio)
    return writer.commit(meta)


def index_row(video_id: str, *, dataset: str, label: int, split: str, n_frames: int, n_clips: int,
              has_audio: bool = False, chunk: int | None = None, fake_type: str | None = None,
              group: str | None = None) -> CacheIndexRow:  # fmt: skip
    """An index row for <dataset>/<video_id>; fake_type defaults to real/fake by label, group to the id."""
    return CacheIndexRow(
        id=video_id, dataset=dataset, dir=f"{dataset}/{video_id}", label=label,
        fake_type=fake_type or ("real" if label == 0 else "fake"), split=split, group=group or video_id,
        has_audio=has_audio, chunk=chunk, n_frames=n_frames, n_clips=n_clips,
    )  # fmt: skip


def cache_video(cache_root: Path, meta: TrackMeta, crops: Sequence[np.ndarray], audio: np.ndarray | None = None, *,
                label: int, split: str, fake_type: str | None = None, chunk: int | None = None) -> CacheIndexRow:  # fmt: skip
    """One finished video in a cache: its entry, then its index row (as extract appends them)."""
    write_entry(cache_root, meta, crops, audio)
    row = index_row(meta.video_id, dataset=meta.dataset, label=label, split=split, n_frames=len(meta.frames),
                    n_clips=len({f.clip for f in meta.frames}), has_audio=meta.audio is not None, chunk=chunk,
                    fake_type=fake_type)  # fmt: skip
    append_index_row(cache_root, row)
    return row


CROP = 24  # cache_on_disk's crop side, pixels


def cache_on_disk(
    root: Path,
    *,
    dataset: str = "ffpp",
    counts: dict[str, tuple[int, int]] | None = None,  # split -> (reals, fakes)
    n_frames: int = 8,
    clip_len: int = 4,
    chunks: int | None = None,
    invert_chunks: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """A face-track cache of tiny silent videos <dataset>_<split>_<label>_<i>; returns root.

    Fake videos have brighter 24 px crops than real ones (a signal a 2-layer net learns in a few
    steps). With `chunks`, videos go to chunks 0..chunks-1 in turn, and in `invert_chunks` the signal
    is flipped (real crops bright), which makes those chunks "hard" for weights that learned it."""
    counts = counts or {"train": (6, 6), "val": (3, 3)}
    rng = np.random.default_rng(seed + zlib.crc32(dataset.encode()) % 1000)
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.jsonl").touch()
    ox, oy = 100, 60
    n = 0
    for split, (reals, fakes) in counts.items():
        for label, how_many in ((0, reals), (1, fakes)):
            for i in range(how_many):
                chunk = (n % chunks) if chunks else None
                bright = label if chunk not in invert_chunks else 1 - label
                crops = [np.clip(rng.normal(70 + 90 * bright, 25, size=(CROP, CROP, 3)), 0, 255).astype(np.uint8)
                         for _ in range(n_frames)]  # fmt: skip
                meta = track_meta(
                    n_frames, clip_len=clip_len, box=[ox + 6, oy + 6, ox + 18, oy + 18],
                    crop_box=[ox, oy, ox + CROP, oy + CROP], video_id=f"{dataset}_{split}_{label}_{i}", dataset=dataset,
                    landmarks=[[ox + 9, oy + 9], [ox + 15, oy + 9], [ox + 12, oy + 12], [ox + 10, oy + 15], [ox + 14, oy + 15]],
                )  # fmt: skip
                cache_video(root, meta, crops, label=label, split=split, chunk=chunk,
                            fake_type="real" if label == 0 else "Deepfakes")  # fmt: skip
                n += 1
    return root
