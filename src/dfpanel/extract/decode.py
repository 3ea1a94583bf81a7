"""PyAV decoding: the sampled frames of one video (by seeking) and its audio (16 kHz mono).

Frames are addressed by *index* in presentation order. The index is built by demuxing the video
stream's packets once (no decoding): sorted packet pts give every frame's index and timestamp, which
stays right for variable frame rate and B-frames, and the keyframe positions tell when a seek beats
decoding on. Times are pts * time_base on the container clock; audio is reported on that same clock.
Frames come out rotated as the display matrix (or an old-style `rotate` tag) says.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from dfpanel.errors import VideoError

log = logging.getLogger(__name__)

AUDIO_RATE = 16000

# FFmpeg opens text files as "video": the tty demuxer renders .txt/.nfo/.asc/.diz/.ans as ANSI art,
# and its cousins do BIN/XBIN/ADF/IDF art files. None of them is a camera's video.
TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}
TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}


@dataclass
class DecodedFrame:
    index: int  # position in presentation order, 0-based
    time: float  # presentation time, seconds (pts * time_base)
    rgb: np.ndarray  # H x W x 3 uint8, rotation applied


@dataclass
class VideoInfo:
    path: str
    width: int  # after rotation
    height: int
    fps: float  # average frame rate
    duration: float  # seconds, first to last frame plus one frame
    codec: str
    rotation: int  # degrees counterclockwise applied to decoded frames (0, 90, 180, 270)
    n_frames: int
    has_audio: bool
    start_time: float  # time of frame 0


def plan_clips(n_frames: int, frames: int, clip_len: int) -> list[list[int]]:
    """Frame indices to sample: clips of `clip_len` consecutive frames, each centred in one of
    `frames // clip_len` equal segments of the video. Short videos give fewer (or shorter) clips."""
    if n_frames <= 0 or frames <= 0:
        return []
    clip_len = max(1, min(clip_len, frames))
    if n_frames <= clip_len:
        return [list(range(n_frames))]
    n_clips = max(1, min(frames // clip_len, n_frames // clip_len))
    seg = n_frames / n_clips
    clips = []
    for k in range(n_clips):
        start = int(math.floor((k + 0.5) * seg - clip_len / 2 + 0.5))
        start = min(max(start, 0), n_frames - clip_len)
        clips.append(list(range(start, start + clip_len)))
    return clips


def rotation_of(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counterclockwise degrees that turn the decoded picture upright (multiple of 90)."""
    try:
        rot = frame.rotation  # display matrix side data (ffmpeg attaches the stream's to frames)
    except Exception:  # noqa: BLE001 - older PyAV or odd side data: fall back to the tag
        rot = 0
    if not rot:
        tag = stream.metadata.get("rotate")
        try:
            rot = -int(float(tag)) if tag else 0  # the tag is clockwise
        except ValueError:
            rot = 0
    return (int(round(rot / 90.0)) * 90) % 360


_rotation_of = rotation_of  # the old name


class VideoReader:
    """One open video. Use as a context manager; raises VideoError for anything unreadable."""

    skip_nonref = True  # drop unreferenced frames while decoding up to a wanted one

    def __init__(self, path: str | Path, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file; check the manifest's root and path")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path}: empty file (0 bytes); re-download or remove it from the manifest")
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot open video ({_reason(exc)}); the file is corrupt or not a video") from None
        try:
            self._setup(threads)
        except (av.error.FFmpegError, ValueError, OverflowError, MemoryError) as exc:
            # a damaged file can fail anywhere while the index and first frame are read
            self.container.close()
            raise VideoError(f"{self.path}: cannot read video ({_reason(exc)}); the file is corrupt or truncated") from None
        except BaseException:
            self.container.close()
            raise

    def _setup(self, threads: int) -> None:
        if not self.container.streams.video:
            raise VideoError(f"{self.path}: has no video stream")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:  # a codec id FFmpeg has no decoder for (or a damaged header)
            raise VideoError(f"{self.path}: the video stream's codec cannot be decoded; the file is corrupt or uses an unsupported codec")
        if self.container.format.name in TEXT_FORMATS or self.stream.codec_context.name in TEXT_CODECS:
            raise VideoError(f"{self.path}: not a video (a text file)")
        self.stream.thread_count = threads
        self.tb = self.stream.time_base
        if self.tb is None:
            raise VideoError(f"{self.path}: video stream has no time base")
        self.truncated = False
        self.expected_frames: int | None = None
        self._skip_below: int | None = None  # see _decode_stream
        self.pts, self.key_pts = self._index_packets()
        if not self.pts:
            raise VideoError(f"{self.path}: no video frames found; the file is empty or truncated")
        self._pos = {p: i for i, p in enumerate(self.pts)}
        first = next(self._decode_from(self.pts[0]), None)
        if first is None:
            raise VideoError(f"{self.path}: no frame could be decoded; the file is corrupt or uses an unsupported codec")
        self.rotation = rotation_of(first, self.stream)
        w, h = first.width, first.height
        if self.rotation in (90, 270):
            w, h = h, w
        times = [float(p * self.tb) for p in self.pts]
        step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
        rate = self.stream.average_rate
        fps = float(rate) if rate else (1.0 / step if step > 0 else 0.0)
        self.info = VideoInfo(
            path=str(self.path),
            width=w,
            height=h,
            fps=fps,
            duration=times[-1] - times[0] + (1.0 / fps if fps > 0 else 0.0),
            codec=self.stream.codec_context.name,
            rotation=self.rotation,
            n_frames=len(self.pts),
            has_audio=bool(self.container.streams.audio),
            start_time=times[0],
        )
        claimed = None
        if self.stream.duration is not None:
            claimed = float(self.stream.duration * self.tb)
        elif self.container.duration is not None:
            claimed = self.container.duration / 1_000_000
        self.claimed_duration = claimed  # what the header says (more than info.duration when truncated)

    # -- index ---------------------------------------------------------------------------------
    def _index_packets(self) -> tuple[list[int], list[int]]:
        pts: set[int] = set()
        keys: list[int] = []
        no_pts = 0
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                p = packet.pts
                if p is None:
                    no_pts += 1
                    continue
                pts.add(p)
                if packet.is_keyframe:
                    keys.append(p)
        except av.error.FFmpegError as exc:
            # Keep what was read: a truncated tail still leaves the frames before it usable.
            log.warning("%s: stopped reading packets (%s); using the frames before that", self.path, _reason(exc))
            self.truncated = True
        expected = int(self.stream.frames or 0)  # from the container's index (0: not recorded)
        self.expected_frames = expected or None
        if expected and len(pts) < expected:
            # The index lists frames whose data is not in the file: it was cut (a partial download).
            log.warning("%s: the index lists %d frames, the file holds %d; the rest is missing", self.path,
                        expected, len(pts))
            self.truncated = True
        if no_pts and not pts:
            raise VideoError(f"{self.path}: video packets carry no timestamps; remux it (ffmpeg -i IN -c copy OUT.mp4)")
        return sorted(pts), sorted(keys)

    # -- frames --------------------------------------------------------------------------------
    def _decode_from(self, target_pts: int) -> Iterator[av.VideoFrame]:
        """Seek to the keyframe at or before target_pts and yield decoded frames from there. If the
        seek lands past the target (formats without an index), decode from the start instead."""
        for seek_pts in (target_pts, self.pts[0]):
            try:
                self.container.seek(seek_pts, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                # A damaged keyframe table (stss) can leave no keyframe to seek back to: seek to any
                # frame at or before the target instead, and let the decoder find its footing.
                try:
                    self.container.seek(seek_pts, stream=self.stream, backward=True, any_frame=True)
                except av.error.FFmpegError:
                    log.warning("%s: seeking failed (%s)", self.path, _reason(exc))
                    self.truncated = True
                    return
            frames = self._decode_stream()
            first = next(frames, None)
            if first is None:
                return
            if first.pts > target_pts and seek_pts != self.pts[0]:
                continue  # overshot
            yield first
            yield from frames
            return

    def _decode_stream(self) -> Iterator[av.VideoFrame]:
        """Decode packets in order. Packets before the next wanted frame (`_skip_below`) are decoded
        with skip_frame=NONREF: frames nothing else references are dropped unseen, which saves about
        half the work of decoding up to a target in an H.264 stream with B-frames."""
        ctx = self.stream.codec_context
        mode = None
        try:
            for packet in self.container.demux(self.stream):
                below = self._skip_below
                want = "NONREF" if self.skip_nonref and below is not None and packet.pts is not None and packet.pts < below else "DEFAULT"
                if want != mode:
                    ctx.skip_frame = mode = want
                for frame in packet.decode():
                    if frame.pts is not None:
                        yield frame
        except av.error.FFmpegError as exc:
            log.warning("%s: decoding stopped (%s)", self.path, _reason(exc))
            self.truncated = True

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        if self.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self.rotation // 90))
        return rgb

    def frames(self, indices: Sequence[int]) -> list[DecodedFrame]:
        """Decode the frames at these indices (any order; returned sorted). Seeks to the nearest
        keyframe before each run of wanted frames unless decoding on from the current position is
        no longer than that. Frames that cannot be decoded are missing from the result."""
        return list(self.iter_frames(indices))

    def iter_frames(self, indices: Sequence[int]) -> Iterator[DecodedFrame]:
        """`frames`, one frame at a time as it is decoded (the same frames, the same decoding), so a
        caller can hold only some of them."""
        wanted = sorted({i for i in indices if 0 <= i < len(self.pts)})
        frames_iter: Iterator[av.VideoFrame] | None = None
        last_pts: int | None = None
        j = 0
        try:
            while j < len(wanted):
                target = self.pts[wanted[j]]
                self._skip_below = target
                if frames_iter is None or last_pts is None or last_pts >= target or self._keyframe_between(last_pts, target):
                    frames_iter = self._decode_from(target)
                for frame in frames_iter:
                    last_pts = frame.pts
                    if frame.pts < target:
                        continue
                    while j < len(wanted) and self.pts[wanted[j]] < frame.pts:
                        j += 1  # a wanted frame the decoder never produced
                    if j < len(wanted) and frame.pts == self.pts[wanted[j]]:
                        j += 1
                        yield DecodedFrame(wanted[j - 1], float(frame.pts * self.tb), self._to_rgb(frame))
                    if j >= len(wanted):
                        break
                    target = self._skip_below = self.pts[wanted[j]]
                    if self._keyframe_between(frame.pts, target):
                        break
                else:
                    break  # decoder ran dry: whatever is still wanted cannot be decoded
        finally:
            self._skip_below = None

    def _keyframe_between(self, after_pts: int, upto_pts: int) -> bool:
        """Is there a keyframe in (after_pts, upto_pts]? Then seeking there beats decoding on."""
        k = bisect.bisect_right(self.key_pts, after_pts)
        return k < len(self.key_pts) and self.key_pts[k] <= upto_pts

    def all_frames(self) -> list[DecodedFrame]:
        """Decode every frame from the start (reference for tests and dense sampling)."""
        out = []
        for frame in self._decode_from(self.pts[0]):
            i = self._pos.get(frame.pts)
            if i is not None:
                out.append(DecodedFrame(i, float(frame.pts * self.tb), self._to_rgb(frame)))
        return out

    # -- audio ---------------------------------------------------------------------------------
    def audio(self, rate: int = AUDIO_RATE) -> tuple[np.ndarray, float] | None:
        """(float32 mono samples at `rate`, time of sample 0 on the frames' clock) or None when the
        video has no (decodable) audio."""
        if not self.container.streams.audio:
            return None
        stream = self.container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        start: float | None = None
        try:
            self.container.seek(0)
            for frame in self.container.decode(stream):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * frame.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("%s: audio unreadable (%s); continuing without audio", self.path, _reason(exc))
            if not chunks:
                return None
        if not chunks:
            return None
        if start is None:
            st = stream.start_time
            start = float(st * stream.time_base) if st is not None else 0.0
        return np.concatenate(chunks).astype(np.float32), start

    # -- context -------------------------------------------------------------------------------
    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]

