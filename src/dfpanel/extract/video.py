"""One video -> face tracks in memory: the per-video half of extraction, shared by `dfpanel extract`
(which writes the tracks to the cache, `dfpanel.extract.run`) and detection (which keeps them in memory).

Decode only the sampled frames (clips of consecutive frames spread over the video, by seeking); search
each clip's first frame for faces and follow them through the clip with the detector's refine step
(MTCNN's O-Net on the previous frame's box: real boxes and landmarks on every frame for ~2% of a full
detection each); where a face is lost, or with `track="interpolate"`, detect on every k-th frame
(every frame where those disagree) and interpolate between; link into tracks; cut square context crops
(context_scale x the face box) at native resolution; keep the audio, normalised once (InputSpec).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfpanel.errors import ConfigError, NoFaceError, VideoError
from dfpanel.extract.cache import (
    AudioInfo,
    FrameRecord,
    TrackMeta,
    normalise_audio,
)
from dfpanel.extract.decode import VideoReader, plan_clips
from dfpanel.extract.faces import (
    Detection,
    FaceDetector,
    FaceTrack,
    context_box,
    create_detector,
    iou,
    track_faces,
)
from dfpanel.extract.spec import DEFAULT_SPEC, InputSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, init=False)
class ExtractConfig:
    """How to extract: the InputSpec (every setting that shapes pixels and audio: the one source of
    truth, recorded in the cache) plus operational settings that change nothing in the output.

    `ExtractConfig(spec)`, or `ExtractConfig(frames=16, min_face_size=60, device="cuda")` for a
    default spec with those fields changed (`all_faces=True` is `faces="all"`)."""

    spec: InputSpec
    device: str  # for the detector: cpu or cuda[:N]
    decode_threads: int  # codec threads (0 = FFmpeg's choice); workers use 1
    # Frames per detector batch. > 0: a run with workers shares one detector on `device` between them,
    # batching frames of several videos (dfpanel.extract.batched); 0: each worker has its own.
    # Default (None): 64 on a GPU, 0 on the CPU.
    detect_batch: int

    def __init__(self, spec: InputSpec | None = None, *, device: str = "cpu", decode_threads: int = 0,
                 detect_batch: int | None = None, **spec_fields):
        if "all_faces" in spec_fields:
            spec_fields["faces"] = "all" if spec_fields.pop("all_faces") else "main"
        spec = spec or DEFAULT_SPEC
        if detect_batch is None:
            detect_batch = 64 if device.startswith("cuda") else 0
        object.__setattr__(self, "spec", spec.replace(**spec_fields) if spec_fields else spec)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "decode_threads", decode_threads)
        object.__setattr__(self, "detect_batch", int(detect_batch))

    # Read access to the spec's fields, so extraction code reads cfg.frames, cfg.min_score...
    frames = property(lambda self: self.spec.frames)
    clip_len = property(lambda self: self.spec.clip_len)
    detector = property(lambda self: self.spec.detector)
    min_face_size = property(lambda self: self.spec.min_face_size)
    max_side = property(lambda self: self.spec.max_side)
    min_score = property(lambda self: self.spec.min_score)
    track = property(lambda self: self.spec.track)
    detect_every = property(lambda self: self.spec.detect_every)
    context_scale = property(lambda self: self.spec.context_scale)
    all_faces = property(lambda self: self.spec.all_faces)

    def with_spec(self, **changes) -> "ExtractConfig":
        return ExtractConfig(self.spec.replace(**changes), device=self.device, decode_threads=self.decode_threads,
                             detect_batch=self.detect_batch)

    def as_dict(self) -> dict:
        return {"input_spec": self.spec.to_dict(), "device": self.device, "decode_threads": self.decode_threads,
                "detect_batch": self.detect_batch}

    def validate(self) -> "ExtractConfig":
        if self.frames < 1 or self.clip_len < 1:
            raise ConfigError(f"--frames ({self.frames}) and --clip-len ({self.clip_len}) must be at least 1")
        from dfpanel.extract.faces import DETECTORS

        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown face detector {self.detector!r}; choose one of: {', '.join(sorted(DETECTORS))}")
        if self.detect_batch < 0:
            raise ConfigError(f"--detect-batch {self.detect_batch}: must be 0 (off) or more")
        return self


# -- one video -----------------------------------------------------------------------------------

_detector_cache: dict[tuple, FaceDetector] = {}


def get_detector(cfg: ExtractConfig) -> FaceDetector:
    """One detector per process and configuration (loading MTCNN costs ~0.1 s; keep it)."""
    key = (cfg.detector, cfg.device, cfg.min_face_size, cfg.max_side, cfg.detect_batch)
    if key not in _detector_cache:
        extra = {"batch_size": cfg.detect_batch} if cfg.detect_batch > 0 else {}
        _detector_cache[key] = create_detector(
            cfg.detector, device=cfg.device, min_face_size=cfg.min_face_size, max_side=cfg.max_side, **extra
        )
    return _detector_cache[key]


def sparse_positions(clip_positions: list[int], every: int) -> list[int]:
    """First, every k-th and last position of one clip."""
    picked = clip_positions[::every]
    if clip_positions and clip_positions[-1] not in picked:
        picked.append(clip_positions[-1])
    return picked


def _unsteady(dets_by_pos: list[list[Detection]], main_only: bool) -> bool:
    """Should this clip get dense detection? Yes when the detected frames disagree on how many
    faces there are (only whether there is one, when keeping the main face), or the largest face
    jumps (IoU < 0.3: more than about half its width) between them."""
    counts = {min(len(d), 1) if main_only else len(d) for d in dets_by_pos}
    if len(counts) > 1:
        return True
    if counts == {0}:
        return False
    tops = [max(d, key=lambda x: x.area).box for d in dets_by_pos]
    return any(iou(a, b) < 0.3 for a, b in zip(tops, tops[1:]))


def _detect(detector: FaceDetector, frames: list[np.ndarray], positions: list[int], min_score: float) -> dict[int, list[Detection]]:
    if not positions:
        return {}
    found = detector.detect([frames[p] for p in positions])
    return {p: [d for d in ds if d.score >= min_score] for p, ds in zip(positions, found)}


ROI_SCALE = 2.5  # region searched around a known face, x its box
ROI_FACE_PX = 80  # the region is downscaled so the known face is about this big (2x min_face_size)


def _detect_roi(
    detector: FaceDetector, frames: list[np.ndarray], positions: list[int], anchor: Detection, cfg: ExtractConfig
) -> dict[int, list[Detection]]:
    """Detect only in a region around a face found a few frames earlier, downscaled so that face is
    ~ROI_FACE_PX: a fraction of a full-frame pass. Boxes come back in frame pixels."""
    import cv2

    if not positions:
        return {}
    h, w = frames[positions[0]].shape[:2]
    x0, y0, x1, y1 = context_box(anchor.box, w, h, scale=ROI_SCALE)
    face = max(anchor.box[2] - anchor.box[0], anchor.box[3] - anchor.box[1], 1.0)
    s = min(1.0, max(ROI_FACE_PX, 2 * cfg.min_face_size) / face)
    size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
    crops = [frames[p][y0:y1, x0:x1] for p in positions]
    if s < 1.0:
        crops = [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in crops]
    sx, sy = (x1 - x0) / crops[0].shape[1], (y1 - y0) / crops[0].shape[0]
    out = {}
    for p, ds in zip(positions, detector.detect(crops)):
        out[p] = [
            Detection(d.box * [sx, sy, sx, sy] + [x0, y0, x0, y0], d.landmarks * [sx, sy] + [x0, y0], d.score)
            for d in ds
            if d.score >= cfg.min_score
        ]
    return out


def detect_clips(
    detector: FaceDetector, frames: list[np.ndarray], clip_positions: list[list[int]], cfg: ExtractConfig
) -> tuple[dict[int, list[Detection]], int]:
    """Detections for the sampled frames: position -> detections, and how many positions needed a
    full-frame pass beyond the plan. With `track="refine"` (and a detector that can), each clip's
    first frame is searched whole and its faces followed frame to frame by the detector's refine
    step; otherwise detection runs on every k-th frame and tracking interpolates between."""
    stats = {"full": 0, "roi": 0, "refined": 0, "dense": 0}
    if cfg.track == "refine" and detector.refine([], []) is not None:
        dets = _detect_refine(detector, frames, clip_positions, cfg, stats)
    else:
        dets = _detect_sparse(detector, frames, clip_positions, cfg, {}, stats)
    return dets, stats


def _detect_refine(detector, frames, clip_positions, cfg, stats):
    dets = _detect(detector, frames, [cp[0] for cp in clip_positions], cfg.min_score)
    stats["full"] += len(clip_positions)
    chains: dict[int, list[Detection]] = {}
    for c, cp in enumerate(clip_positions):
        found = dets[cp[0]]
        chains[c] = found if cfg.all_faces else sorted(found, key=lambda d: -d.area)[:1]
    lost: set[int] = set()
    for k in range(1, max(len(cp) for cp in clip_positions)):
        batch = [(c, cp[k], d) for c, cp in enumerate(clip_positions) if c not in lost and k < len(cp) for d in chains[c]]
        if not batch:
            break
        refined = detector.refine([frames[p] for _, p, _ in batch], [d.box for _, _, d in batch])
        stats["refined"] += len(batch)
        new: dict[int, list[Detection]] = {}
        for (c, p, _), r in zip(batch, refined):
            dets.setdefault(p, [])
            if r.score >= cfg.min_score:
                new.setdefault(c, []).append(r)
                dets[p].append(r)
            else:
                lost.add(c)  # the face slipped away mid-clip: detect this clip in full instead
        chains.update(new)
    # Clips with no face on their first frame, or a face lost: the full-frame way.
    redo = [c for c, cp in enumerate(clip_positions) if c in lost or not dets[cp[0]]]
    for c in redo:
        for p in clip_positions[c][1:]:
            dets.pop(p, None)
    return _detect_sparse(detector, frames, [clip_positions[c] for c in redo], cfg.with_spec(faces="all"), dets, stats)


def _detect_sparse(detector, frames, clip_positions, cfg, known, stats):
    """Per clip its first, every k-th and last frame; every frame of a clip where those disagree.
    Keeping only the main face, the first frame of each clip is searched whole and the others
    only around the largest face found there. Positions in `known` are not detected again."""
    dets = dict(known)
    sparse = [sparse_positions(ps, cfg.detect_every) for ps in clip_positions]
    main_only = not cfg.all_faces

    def run(positions):
        todo = [p for p in positions if p not in dets]
        stats["full"] += len(todo)
        dets.update(_detect(detector, frames, todo, cfg.min_score))

    if main_only:
        run([sp[0] for sp in sparse])
        full = []
        for sp in sparse:
            if dets[sp[0]]:
                anchor = max(dets[sp[0]], key=lambda d: d.area)
                todo = [p for p in sp[1:] if p not in dets]
                stats["roi"] += len(todo)
                dets.update(_detect_roi(detector, frames, todo, anchor, cfg))
            else:
                full.extend(sp[1:])
        run(full)
    else:
        run([p for sp in sparse for p in sp])
    dense = [p for ps, sp in zip(clip_positions, sparse) if _unsteady([dets[q] for q in sp], main_only) for p in ps if p not in dets]
    run(dense)
    stats["dense"] += len(dense)
    return dets


def extract_video(
    path: str | os.PathLike,
    cfg: ExtractConfig | None = None,
    video_id: str = "video",
    dataset: str = "folder",
    detector: FaceDetector | None = None,
    timings: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[TrackMeta, list[np.ndarray], np.ndarray | None]]:
    """Face tracks of one video, main track first: (meta, RGB crops in meta.frames order, audio
    float32 mono at the spec's rate, already normalised exactly as the cache stores it, or None). Raises VideoError (unreadable) or NoFaceError. `timings`, if
    given, receives seconds spent per stage (decode, audio, faces, crops); `progress(done, total)`
    hears each clip decoded and searched for faces (most of the time a video takes)."""
    cfg = (cfg or ExtractConfig()).validate()
    detector = detector or get_detector(cfg)
    path = Path(path)
    timings = {} if timings is None else timings
    t = time.perf_counter()
    # One clip of full frames at a time: decode it, find its faces, keep only the part of each frame
    # its crops can come from (_ClipPixels), let the full frames go, decode the next clip.
    sampled: list[_KeptFrame] = []
    clip_of: list[int] = []
    dets: dict[int, list[Detection]] = {}
    stats = {"full": 0, "roi": 0, "refined": 0, "dense": 0}
    t_faces = 0.0
    with VideoReader(path, threads=cfg.decode_threads) as reader:
        info = reader.info
        planned = plan_clips(info.n_frames, cfg.frames, cfg.clip_len)
        n_clips = 0
        for clip_frames in _whole_clips(reader, planned):  # only whole clips
            t1 = time.perf_counter()
            frames = [f.rgb for f in clip_frames]
            found, clip_stats = detect_clips(detector, frames, [list(range(len(frames)))], cfg)
            for k in stats:
                stats[k] += clip_stats[k]
            base = len(sampled)
            for p in sorted(found):
                dets[base + p] = found[p]
            pixels = _ClipPixels(path, cfg, frames, [d for ds in found.values() for d in ds], info.width, info.height)
            sampled.extend(_KeptFrame(f.index, f.time, pixels, k) for k, f in enumerate(clip_frames))
            clip_of.extend([n_clips] * len(clip_frames))
            n_clips += 1
            del frames, clip_frames
            t_faces += time.perf_counter() - t1
            if progress is not None:
                progress(n_clips, len(planned))
        if not n_clips:
            raise VideoError(f"{path}: none of the sampled frames could be decoded; the file is corrupt or truncated")
        timings["decode"] = time.perf_counter() - t - t_faces
        t = time.perf_counter()
        audio = reader.audio(cfg.spec.audio_rate) if info.has_audio else None
        if audio is not None:  # normalised once, here: the cache's WAV holds exactly these floats
            audio = (normalise_audio(audio[0], cfg.spec.audio_norm), audio[1])
        truncated = reader.truncated
        # what the file holds against what its header claims (a cut file: fewer frames, less time)
        coverage = {"frames_found": info.n_frames, "frames_expected": reader.expected_frames,
                    "frames_decoded": len(sampled), "frames_sampled": sum(len(c) for c in planned),  # decoded: in whole clips
                    "seconds_covered": info.duration, "seconds_claimed": reader.claimed_duration}
        timings["audio"] = time.perf_counter() - t
    t = time.perf_counter() - t_faces

    tracks = track_faces(clip_of, dets)
    if not tracks:
        raise NoFaceError(f"{path}: no face found in {len(dets)} frames checked; remove it from the manifest or lower --min-face-size")
    n_found = len(tracks)
    timings["faces"] = time.perf_counter() - t
    t = time.perf_counter()
    if not cfg.all_faces:
        tracks = tracks[:1]

    audio_info = None
    if audio is not None:
        samples, start = audio
        audio_info = AudioInfo(file="audio.wav", sample_rate=cfg.spec.audio_rate, start_time=start, n_samples=int(len(samples)))
    out = []
    for k, track in enumerate(tracks):
        meta, crops = _track_output(track, sampled, clip_of, info, cfg, audio_info, video_id, dataset, k, detector.name)
        meta.extra.update(detection=stats, track=cfg.track, n_tracks=n_found, truncated=truncated, coverage=coverage)
        meta.input_spec = cfg.spec.to_dict()
        out.append((meta, crops, audio[0] if audio is not None else None))
    timings["crops"] = time.perf_counter() - t
    return out


def _whole_clips(reader: VideoReader, planned: list[list[int]]):
    """The planned clips whose every frame decodes, one clip of DecodedFrames at a time (the frames
    are decoded as by `reader.frames` over all clips at once: the same seeks, the same pixels)."""
    clip_at = {i: c for c, clip in enumerate(planned) for i in clip}
    current, got = -1, []
    for f in reader.iter_frames([i for c in planned for i in c]):
        c = clip_at[f.index]
        if c != current:
            got, current = [], c
        got.append(f)
        if [g.index for g in got] == planned[c]:
            yield got
            got = []


class _ClipPixels:
    """What is kept of one clip's frames once its faces are found: per frame the part that any crop
    of the clip can come from (every detection's centre +- the largest crop side its clip can get),
    not the whole frame. A crop outside it (not expected) is decoded again from the video."""

    def __init__(self, path, cfg: ExtractConfig, frames: list[np.ndarray], dets: list[Detection], width: int, height: int):
        self.path, self.cfg = path, cfg
        self.region = None
        self.parts: list[np.ndarray] = []
        if not dets:
            return
        # Crop centres lie within the hull of the clip's face centres (interpolation and smoothing
        # average them), and a crop's side is context_scale x a median face side of the clip.
        side = self.cfg.context_scale * max(max(d.box[2] - d.box[0], d.box[3] - d.box[1], 1.0) for d in dets)
        half = side / 2 + 2
        cx = [(d.box[0] + d.box[2]) / 2 for d in dets]
        cy = [(d.box[1] + d.box[3]) / 2 for d in dets]
        x0, y0 = max(0, int(np.floor(min(cx) - half))), max(0, int(np.floor(min(cy) - half)))
        x1, y1 = min(width, int(np.ceil(max(cx) + half))), min(height, int(np.ceil(max(cy) + half)))
        if x1 <= x0 or y1 <= y0:
            return
        self.region = (x0, y0, x1, y1)
        self.parts = [np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames]

    def cut(self, k: int, index: int, box: list[int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        if self.region is not None:
            rx0, ry0, rx1, ry1 = self.region
            if rx0 <= x0 and ry0 <= y0 and x1 <= rx1 and y1 <= ry1:
                return np.ascontiguousarray(self.parts[k][y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0])
        log.debug("%s: crop %s of frame %d outside the kept region %s; decoding it again", self.path, box, index, self.region)
        with VideoReader(self.path, threads=self.cfg.decode_threads) as reader:
            (frame,) = reader.frames([index])
        return np.ascontiguousarray(frame.rgb[y0:y1, x0:x1])


@dataclass
class _KeptFrame:
    index: int
    time: float
    pixels: _ClipPixels
    k: int  # its place in the clip

    def cut(self, box: list[int]) -> np.ndarray:
        return self.pixels.cut(self.k, self.index, box)


def _clip_sizes(records: list[FrameRecord]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for f in records:
        out.setdefault(f.clip, []).append(f.index)
    return out


def track_video_id(video_id: str, k: int) -> str:
    return video_id if k == 0 else f"{video_id}__t{k}"


def _track_output(track: FaceTrack, sampled, clip_of, info, cfg, audio_info, video_id, dataset, k, detector_name):
    records, crops = [], []
    # Renumber clips so each track's clips count from 0 (a face may miss some clips).
    clip_ids = {c: n for n, c in enumerate(sorted({clip_of[p.pos] for p in track.points}))}
    # One crop size per clip (the median face size in it): TM and AV stack a clip's crops.
    sides: dict[int, float] = {}
    for c in clip_ids:
        boxes = np.stack([p.box for p in track.points if clip_of[p.pos] == c])
        sides[c] = cfg.context_scale * float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    for n, point in enumerate(track.points):
        frame = sampled[point.pos]
        crop_box = context_box(point.box, info.width, info.height, side=sides[clip_of[point.pos]])
        crops.append(frame.cut(crop_box))
        records.append(
            FrameRecord(
                index=frame.index,
                time=frame.time,
                clip=clip_ids[clip_of[point.pos]],
                box=[round(float(v), 2) for v in point.box],
                crop_box=crop_box,
                landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in point.landmarks],
                score=round(float(point.score), 4),
                file=f"crops/{n:06d}.png",
                detected=point.detected,
            )
        )
    meta = TrackMeta(
        video_id=track_video_id(video_id, k),
        dataset=dataset,
        source=str(Path(info.path).resolve()),
        source_size=[info.width, info.height],
        fps=info.fps,
        duration=info.duration,
        codec=info.codec,
        rotation=info.rotation,
        clip_len=max(len(v) for v in _clip_sizes(records).values()),  # shorter than asked for a short video
        frames=records,
        audio=audio_info,
        track_id=k,
        detector=detector_name,
    )
    return meta, crops
