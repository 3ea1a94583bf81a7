"""Videos -> face-track cache.

`extract_video` turns one video into face tracks in memory (detection of a single video reuses it);
`run_extraction` does a whole manifest into a cache: a process pool, resume (a video with a
committed entry and an index row is skipped), `--shard i/n` by a stable hash of the id, and
per-video failures recorded with their reason instead of stopping the run.

Per video: decode only the sampled frames (clips of consecutive frames spread over the video, by
seeking); search each clip's first frame for faces and follow them through the clip with the
detector's refine step (MTCNN's O-Net on the previous frame's box: real boxes and landmarks on every
frame for ~2% of a full detection each); where a face is lost, or with `track="interpolate"`, detect
on every k-th frame (every frame where those disagree) and interpolate between; link into tracks;
cut square context crops (2x the face box) at native resolution; keep the audio (16 kHz mono).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from dfpanel.errors import ConfigError, DfpanelError, NoFaceError, VideoError
from dfpanel.extract.cache import (
    INDEX_FILE,
    AudioInfo,
    CacheIndexRow,
    EntryWriter,
    FrameRecord,
    TrackMeta,
    append_index_row,
    normalise_audio,
    record_cache_spec,
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
from dfpanel.extract.report import failure_key, update_report
from dfpanel.extract.spec import DEFAULT_SPEC, InputSpec
from dfpanel.index.manifest import VideoRecord, iter_manifest

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

    def __init__(self, spec: InputSpec | None = None, *, device: str = "cpu", decode_threads: int = 0, **spec_fields):
        if "all_faces" in spec_fields:
            spec_fields["faces"] = "all" if spec_fields.pop("all_faces") else "main"
        spec = spec or DEFAULT_SPEC
        object.__setattr__(self, "spec", spec.replace(**spec_fields) if spec_fields else spec)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "decode_threads", decode_threads)

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
        return ExtractConfig(self.spec.replace(**changes), device=self.device, decode_threads=self.decode_threads)

    def as_dict(self) -> dict:
        return {"input_spec": self.spec.to_dict(), "device": self.device, "decode_threads": self.decode_threads}

    def validate(self) -> "ExtractConfig":
        if self.frames < 1 or self.clip_len < 1:
            raise ConfigError(f"--frames ({self.frames}) and --clip-len ({self.clip_len}) must be at least 1")
        from dfpanel.extract.faces import DETECTORS

        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown face detector {self.detector!r}; choose one of: {', '.join(sorted(DETECTORS))}")
        return self


# -- one video -----------------------------------------------------------------------------------

_detector_cache: dict[tuple, FaceDetector] = {}


def get_detector(cfg: ExtractConfig) -> FaceDetector:
    """One detector per process and configuration (loading MTCNN costs ~0.1 s; keep it)."""
    key = (cfg.detector, cfg.device, cfg.min_face_size, cfg.max_side)
    if key not in _detector_cache:
        _detector_cache[key] = create_detector(
            cfg.detector, device=cfg.device, min_face_size=cfg.min_face_size, max_side=cfg.max_side
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
) -> list[tuple[TrackMeta, list[np.ndarray], np.ndarray | None]]:
    """Face tracks of one video, main track first: (meta, RGB crops in meta.frames order, audio
    float32 mono at the spec's rate, already normalised exactly as the cache stores it, or None). Raises VideoError (unreadable) or NoFaceError. `timings`, if
    given, receives seconds spent per stage (decode, audio, faces, crops)."""
    cfg = (cfg or ExtractConfig()).validate()
    detector = detector or get_detector(cfg)
    path = Path(path)
    timings = {} if timings is None else timings
    t = time.perf_counter()
    with VideoReader(path, threads=cfg.decode_threads) as reader:
        info = reader.info
        planned = plan_clips(info.n_frames, cfg.frames, cfg.clip_len)
        decoded = {f.index: f for f in reader.frames([i for c in planned for i in c])}
        clips = [c for c in planned if all(i in decoded for i in c)]  # only whole clips
        if not clips:
            raise VideoError(f"{path}: none of the sampled frames could be decoded; the file is corrupt or truncated")
        timings["decode"] = time.perf_counter() - t
        t = time.perf_counter()
        audio = reader.audio(cfg.spec.audio_rate) if info.has_audio else None
        if audio is not None:  # normalised once, here: the cache's WAV holds exactly these floats
            audio = (normalise_audio(audio[0], cfg.spec.audio_norm), audio[1])
        truncated = reader.truncated
        timings["audio"] = time.perf_counter() - t
    t = time.perf_counter()

    sampled = [decoded[i] for c in clips for i in c]
    clip_of = [k for k, c in enumerate(clips) for _ in c]
    frames = [f.rgb for f in sampled]
    clip_positions = [[p for p, k in enumerate(clip_of) if k == c] for c in range(len(clips))]

    dets, stats = detect_clips(detector, frames, clip_positions, cfg)

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
        meta.extra.update(detection=stats, track=cfg.track, n_tracks=n_found, truncated=truncated)
        meta.input_spec = cfg.spec.to_dict()
        out.append((meta, crops, audio[0] if audio is not None else None))
    timings["crops"] = time.perf_counter() - t
    return out


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
        x0, y0, x1, y1 = crop_box
        crops.append(np.ascontiguousarray(frame.rgb[y0:y1, x0:x1]))
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


# -- one video into the cache --------------------------------------------------------------------


def write_tracks(out: Path, tracks, record: VideoRecord) -> list[CacheIndexRow]:
    """Commit each track's entry; return index rows (the caller appends them, main track last)."""
    rows = []
    for meta, crops, audio in tracks:
        writer = EntryWriter(out, record.dataset, meta.video_id)
        try:
            for n, crop in enumerate(crops):
                writer.add_crop(n, crop)
            if audio is not None:
                writer.add_audio(audio, meta.audio.sample_rate)
            folder = writer.commit(meta)
        except BaseException:
            writer.abort()
            raise
        rows.append(
            CacheIndexRow(
                id=meta.video_id,
                dataset=record.dataset,
                dir=folder.relative_to(out).as_posix(),
                label=record.label,
                fake_type=record.fake_type,
                split=record.split,
                group=record.group,
                has_audio=meta.audio is not None,
                chunk=record.chunk,
                n_frames=len(meta.frames),
                n_clips=len({f.clip for f in meta.frames}),
                manipulations=list(record.manipulations),
                synthetic=record.synthetic,
            )
        )
    return rows


def process_record(record: VideoRecord, out: Path, cfg: ExtractConfig, detector: FaceDetector | None = None) -> dict:
    """Extract one manifest row into the cache. Never raises for a bad video: returns
    {"ok": bool, "rows": [...], "error": class name, "reason": one line, ...}."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = {"id": record.id, "dataset": record.dataset, "path": str(record.abspath), "ok": False, "rows": []}
    try:
        timings: dict = {}
        result["timings"] = timings
        tracks = extract_video(record.abspath, cfg, video_id=record.id, dataset=record.dataset, detector=detector, timings=timings)
        t = time.perf_counter()
        rows = write_tracks(out, tracks, record)
        timings["write"] = time.perf_counter() - t
        result.update(ok=True, rows=[asdict(r) for r in rows], frames=sum(len(m.frames) for m, _, _ in tracks))
    except DfpanelError as exc:
        result.update(error=type(exc).__name__, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bad video must not stop the run; keep the trace in the log
        log.debug("%s failed:\n%s", record.abspath, traceback.format_exc())
        result.update(error=type(exc).__name__, reason=f"{record.abspath}: unexpected {type(exc).__name__}: {str(exc)[:200]}")
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = time.process_time() - c0  # this process's CPU: ~one core per worker
    return result


# -- whole manifest ------------------------------------------------------------------------------


def shard_of(video_id: str, n: int) -> int:
    """1-based shard of a video: a stable hash of its id (same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "big") % n + 1


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ConfigError(f"--shard {text!r}: need 1 <= i <= n")
    return i, n


def done_ids(out: Path) -> set[tuple[str, str]]:
    """(dataset, id) of videos with an index row whose entry is on disk."""
    index = out / INDEX_FILE
    if not index.is_file():
        return set()
    import json

    done = set()
    with open(index, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
                if (out / row["dir"] / "meta.json").is_file():
                    done.add((row["dataset"], row["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from a killed run
    return done


def remove_stale_temp(out: Path, older_than_s: float = 3600.0) -> int:
    """Delete entry temp folders left by killed runs. Only old ones: another run sharing the cache
    may be writing a young one right now (an entry takes seconds to write)."""
    import shutil

    now, n = time.time(), 0
    for tmp in out.glob("*/.tmp-*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > older_than_s:
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        except OSError:
            continue
    return n


def select_records(
    manifest_path: str | os.PathLike, shard: tuple[int, int] = (1, 1), splits: Sequence[str] | None = None
) -> list[VideoRecord]:
    i, n = shard
    rows = list(iter_manifest(manifest_path))
    if splits:
        rows = [r for r in rows if r.split in set(splits)]
    return [r for r in rows if n == 1 or shard_of(r.id, n) == i]


_worker_cfg: ExtractConfig | None = None


def _init_worker(cfg: ExtractConfig, log_level: int) -> None:
    global _worker_cfg
    import signal

    import cv2
    import torch

    # Ctrl-C is the parent's to handle: it stops handing out videos and records what finished;
    # a worker finishes (or its EntryWriter leaves no trace of) the video it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    logging.basicConfig(level=log_level)
    _worker_cfg = cfg
    # Load once per worker, up front, and run it once: the first forward pass sets up kernels.
    get_detector(cfg).detect([np.zeros((96, 96, 3), np.uint8)])


def _work(record: VideoRecord, out: str) -> dict:
    assert _worker_cfg is not None
    return process_record(record, Path(out), _worker_cfg)


def run_extraction(
    manifest_path: str | os.PathLike,
    out: str | os.PathLike,
    cfg: ExtractConfig | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    strict: bool = False,
    progress: bool = True,
    splits: Sequence[str] | None = None,
) -> dict:
    """Extract a manifest (its shard, its splits) into the cache `out`; returns a summary dict
    (also folded into CACHE/extract_report.json). Videos already in the cache are skipped."""
    cfg = (cfg or ExtractConfig()).validate()
    _check_device(cfg.device)
    out = Path(out)
    records = select_records(manifest_path, shard, splits)
    out.mkdir(parents=True, exist_ok=True)
    record_cache_spec(out, cfg.spec)  # refuses a cache extracted with other settings
    remove_stale_temp(out)
    done = done_ids(out)
    todo = [r for r in records if (r.dataset, r.id) not in done]
    log.info("extract: %d video(s) selected (shard %d/%d), %d already in %s, %d to do with %d worker(s)",
             len(records), shard[0], shard[1], len(records) - len(todo), out, len(todo), workers)
    summary = {
        "manifest": str(manifest_path),
        "shard": f"{shard[0]}/{shard[1]}",
        "workers": workers,
        "selected": len(records),
        "skipped": len(records) - len(todo),
        "ok": 0,
        "failed": 0,
        "tracks": 0,
        "frames": 0,
        "video_cpu_seconds": 0.0,  # CPU spent on the videos, summed over workers
        "stage_seconds": {},  # wall seconds per stage (decode, audio, faces, crops, write), summed
        "failures": [],
    }
    run_key = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    t0 = time.perf_counter()
    pending_fail: dict[str, dict] = {}
    pending_ok: list[str] = []
    last_save = time.monotonic()

    def save() -> None:
        nonlocal pending_fail, pending_ok, last_save
        elapsed = time.perf_counter() - t0
        run = {k: v for k, v in summary.items() if k != "failures"}
        run.update(seconds=round(elapsed, 2), config=cfg.as_dict(), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        update_report(out, failures=pending_fail, succeeded=pending_ok, run=run, run_key=run_key)
        pending_fail, pending_ok, last_save = {}, [], time.monotonic()

    def on_result(res: dict) -> None:
        key = failure_key(res["dataset"], res["id"])
        summary["video_cpu_seconds"] += res.get("cpu_seconds", 0.0)
        for stage, secs in res.get("timings", {}).items():
            summary["stage_seconds"][stage] = summary["stage_seconds"].get(stage, 0.0) + secs
        if res["ok"]:
            rows = res["rows"]
            for row in rows[1:] + rows[:1]:  # main track last: its row marks the video done
                append_index_row(out, CacheIndexRow(**row))
            summary["ok"] += 1
            summary["tracks"] += len(rows)
            summary["frames"] += res.get("frames", 0)
            pending_ok.append(key)
        else:
            summary["failed"] += 1
            fail = {"id": res["id"], "dataset": res["dataset"], "path": res["path"], "error": res["error"], "reason": res["reason"]}
            summary["failures"].append(fail)
            pending_fail[key] = fail
            log.warning("%s: %s", res["error"], res["reason"])
        if time.monotonic() - last_save > 30:
            save()

    pools = _WorkerPool(cfg, workers) if workers > 1 and len(todo) > 1 else None
    pool = pools.start() if pools else None
    try:
        with _progress(progress, len(todo)) as advance:
            if pools is None:
                for record in todo:
                    on_result(process_record(record, out, cfg))
                    advance(summary["failed"])
            else:
                _run_pool(todo, out, pools, pool, on_result, lambda: advance(summary["failed"]))
    finally:
        elapsed = time.perf_counter() - t0
        summary["seconds"] = round(elapsed, 3)
        summary["videos_per_s"] = round(len(todo) / elapsed, 3) if elapsed > 0 and todo else 0.0
        summary["frames_per_s"] = round(summary["frames"] / elapsed, 2) if elapsed > 0 else 0.0
        save()
    summary["report"] = str(out / "extract_report.json")
    summary["exit_code"] = 1 if strict and summary["failed"] else 0
    return summary


class _WorkerPool:
    """Makes process pools for extraction. Workers come from a fork server that imported torch,
    the detector and PyAV once (and never computed, so no OpenMP/CUDA state is inherited): a
    worker is ready in well under a second instead of re-importing torch (seconds). Plain fork is
    not safe once this process has run torch ops. Windows spawns. Each worker sets torch to one
    thread and loads its own detector once."""

    def __init__(self, cfg: ExtractConfig, workers: int):
        import multiprocessing as mp

        self.cfg, self.workers = replace(cfg, decode_threads=1), workers
        if "forkserver" in mp.get_all_start_methods():
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(["torch", "facenet_pytorch", "cv2", "av", "dfpanel.extract.run"])
        else:
            self.ctx = mp.get_context("spawn")

    def start(self):
        """A pool whose workers are up (started here, before any progress-bar thread exists)."""
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self.ctx, initializer=_init_worker,
            initargs=(self.cfg, logging.getLogger().level),
        )
        pool.submit(_ready).result()
        return pool


def _ready() -> bool:
    return True


def _run_pool(todo, out, pools: _WorkerPool, pool, on_result, advance) -> None:
    """Run `todo` on the pool with a bounded queue; a crashed worker (segfault in a codec, OOM kill)
    fails only the videos it had in flight, and the pool is rebuilt."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(reversed(todo))
    while queue:
        pool = pool or pools.start()
        inflight: dict = {}
        broken = False
        try:
            while queue or inflight:
                while queue and len(inflight) < pools.workers * 2 and not broken:
                    rec = queue.pop()
                    inflight[pool.submit(_work, rec, str(out))] = rec
                if not inflight:
                    break
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    rec = inflight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        res = {"id": rec.id, "dataset": rec.dataset, "path": str(rec.abspath), "ok": False, "rows": [],
                               "error": "WorkerCrash", "reason": f"{rec.abspath}: the worker process died while extracting it (codec crash or out of memory)"}
                    on_result(res)
                    advance()
                if broken and not inflight:
                    break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        pool = None


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    elif device != "cpu" and not device.startswith("mps"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda[:N]")


class _progress:
    """Rich progress bar with videos/s and ETA (or nothing when progress=False)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled and total > 0, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda *a: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]extract[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} videos/s"),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("extract", total=self.total, rate="-", failed=0)
        self.t0 = time.perf_counter()
        self.n = 0

        def advance(failed: int = 0) -> None:
            self.n += 1
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{rate:.2f}", failed=failed)

        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
