"""Which of the given paths are videos: files and folders (recursive), found by probing with PyAV.

A file counts as a video when PyAV opens it and finds a video stream with more than one frame (a
still image opens as a one-frame "video" and is not one). Inside folders, a file that does not probe
is skipped silently unless its extension says it should be a video, in which case it is reported as
unreadable (a corrupt .mp4 is a per-video failure, a stray .txt is not). A file named explicitly
that does not probe is always reported.

Text files are not videos even though FFmpeg's `tty` demuxer (and its ANSI-art cousins) opens them as
one: those formats and codecs are refused as "not a video". Links: a symlink loop is skipped with a
warning naming it; a dangling link named like a video is reported (its target is missing); links to
folders are not followed, so the walk always ends.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.extract.decode import TEXT_CODECS, TEXT_FORMATS, rotation_of

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".3gp", ".ogv", ".asf", ".vob", ".y4m",
}
# Formats PyAV opens as a "video" that are really still images or image sequences.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe", "apng"}


@dataclass
class VideoInfo:
    path: Path
    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    has_audio: bool
    size_bytes: int

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.path.name,
            "size_bytes": self.size_bytes,
            "container": self.container,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration": self.duration,
            "has_audio": self.has_audio,
        }


class NotAVideo(Exception):
    """The file opened (or not) but holds no video; `corrupt` says whether it looked like one."""

    def __init__(self, message: str, corrupt: bool = False):
        super().__init__(message)
        self.corrupt = corrupt


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open the container and read its stream headers (no frame decoding)."""
    import av

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotAVideo(f"cannot read the file ({exc.strerror})") from None
    if size == 0:
        raise NotAVideo("empty file", corrupt=True)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            fmt = container.format.name
            streams = container.streams.video
            if fmt in TEXT_FORMATS or any(s.codec_context is not None and s.codec_context.name in TEXT_CODECS
                                          for s in streams):
                raise NotAVideo("not a video (a text file)")
            if fmt in _IMAGE_FORMATS or not streams:
                raise NotAVideo(f"no video stream (format {fmt})")
            vs = streams[0]
            if vs.codec_context is None:  # a codec id FFmpeg cannot decode (often a damaged header)
                raise NotAVideo("the video stream's codec cannot be decoded", corrupt=True)
            if vs.frames == 1 or (vs.codec_context.name in {"png", "mjpeg", "bmp"} and fmt.endswith("_pipe")):
                raise NotAVideo("a still image, not a video")
            fps = float(vs.average_rate) if vs.average_rate else None
            if vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = None
            width, height = int(vs.codec_context.width or 0), int(vs.codec_context.height or 0)
            if _displayed_turned(container, vs):  # the analysed (displayed) size, as decode gives it
                width, height = height, width
            return VideoInfo(
                path=path,
                container=fmt,
                codec=vs.codec_context.name,
                width=width,
                height=height,
                fps=fps,
                duration=duration,
                has_audio=bool(container.streams.audio),
                size_bytes=size,
            )
    except NotAVideo:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OverflowError, MemoryError) as exc:
        raise NotAVideo(f"unreadable container ({_short(exc)})", corrupt=True) from None


def _displayed_turned(container, stream) -> bool:
    """Is the picture shown turned by 90 or 270 degrees? The display matrix rides on decoded frames
    (PyAV has no stream-level getter), so the first frame is decoded; no frame: not turned."""
    import av

    try:
        for n, packet in enumerate(container.demux(stream)):
            for frame in packet.decode():
                return rotation_of(frame, stream) in (90, 270)
            if n >= 64:  # a stream that gives no frame this early will fail later, in decoding
                break
    except (av.error.FFmpegError, ValueError, OverflowError, MemoryError):
        pass
    return False


def _short(exc: Exception) -> str:
    # FFmpeg errors carry "[Errno N] message: 'path'"; the message alone says it (the path is named already).
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.split("\n")[0][:160]


@dataclass
class Unreadable:
    """A path that should have been a video but is not readable as one."""

    path: Path
    reason: str
    corrupt: bool  # named like a video but does not open as one (else: simply not a video)
    kind: str | None = None  # the report's error kind when neither corrupt nor not_video (not_found)

    @property
    def error_kind(self) -> str:
        return self.kind or ("corrupt" if self.corrupt else "not_video")


@dataclass
class Discovery:
    videos: list[VideoInfo]
    failures: list[Unreadable]
    skipped: int  # files in folders that were not videos
    warnings: list[str] = field(default_factory=list)  # paths skipped for a reason worth naming (link loops)


def _real(p: Path) -> Path:
    """The resolved path, never raising: Path.resolve() raises RuntimeError on a symlink loop
    (Python <= 3.12); os.path.realpath stops at the loop instead."""
    return Path(os.path.realpath(p))


def _link_problem(p: Path) -> tuple[str, str] | None:
    """('loop' | 'dangling', reason) for a link that leads nowhere; None for anything else."""
    if not p.is_symlink():
        return None
    try:
        os.stat(p)
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "loop", "symlink loop"
        target = os.readlink(p) if p.is_symlink() else "?"
        return "dangling", f"broken link: its target {target} does not exist"


def _walk(folder: Path, exclude: set[Path]) -> list[Path]:
    out = []
    # followlinks=False: a link to a folder is not entered, so a link back up the tree cannot loop
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        # Hidden folders (.git, .cache) and our own output folder are never inputs.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _real(here / d) not in exclude)
        out.extend(here / f for f in sorted(filenames) if not f.startswith("."))
    return out


def discover_videos(paths: list[str | os.PathLike], exclude: list[str | os.PathLike] = ()) -> Discovery:
    """Resolve PATH arguments into probed videos; a path that does not exist is a usage error."""
    excl = {_real(Path(p)) for p in exclude}
    found = Discovery(videos=[], failures=[], skipped=0)
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        problem = _link_problem(p)
        if problem and problem[0] == "loop":
            raise DataError(f"{p}: is a symlink loop (a link that leads back to itself); check the path")
        if not p.exists() and not problem:
            raise DataError(f"{p}: no such file or folder; check the path")
        explicit = not p.is_dir()
        for f in [p] if explicit else _walk(p, excl):
            key = _real(f)
            if key in seen:
                continue
            seen.add(key)
            problem = _link_problem(f)
            if problem:
                kind, reason = problem
                if explicit or (kind == "dangling" and f.suffix.lower() in VIDEO_EXTENSIONS):
                    found.failures.append(Unreadable(f, reason, corrupt=False, kind="not_found"))
                else:
                    found.warnings.append(f"{f}: {reason}; skipped")
                    log.warning("%s: %s; skipped", f, reason)
                    found.skipped += 1
                continue
            try:
                found.videos.append(probe_video(f))
            except NotAVideo as exc:
                looks_like_video = exc.corrupt and f.suffix.lower() in VIDEO_EXTENSIONS
                if explicit or looks_like_video:
                    found.failures.append(Unreadable(f, str(exc), looks_like_video))
                else:
                    found.skipped += 1
    return found
