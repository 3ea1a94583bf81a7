"""Writing MP4 files with PyAV: H.264 (libx264, yuv420p) video and optional AAC audio.

`VideoWriter` encodes frames; `remux_with_audio` writes another MP4 that carries an already encoded
file's H.264 packets unchanged (no decoding, no encoding) next to its own AAC track -- how the audio
fakes get the very video stream of their real video.

Files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a truncated video that a resumed run would mistake for a finished one.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

AUDIO_FRAME = 1024  # AAC frame size


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _add_audio(container, sample_rate: int):
    return container.add_stream("aac", rate=sample_rate, layout="mono")


def _write_audio(container, stream, sample_rate: int, audio: np.ndarray | None) -> None:
    import av

    samples = np.zeros(1, np.float32) if audio is None else audio.astype(np.float32)
    for start in range(0, len(samples), AUDIO_FRAME):
        chunk = samples[start : start + AUDIO_FRAME][None, :]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        af.sample_rate = sample_rate
        af.pts = start
        for packet in stream.encode(af):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


class VideoWriter:
    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, crf: int, sample_rate: int | None = None):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _partial(self.path)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._video = self._container.add_stream("libx264", rate=rate)
        self._video.width, self._video.height = size
        self._video.pix_fmt = "yuv420p"
        # Fixed settings and one thread: the same frames give the same bytes on every machine.
        self._video.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        self._audio = None
        self._sample_rate = sample_rate
        if sample_rate:
            self._audio = _add_audio(self._container, sample_rate)
        self._n = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._n
        self._n += 1
        for packet in self._video.encode(vf):
            self._container.mux(packet)

    def close(self, audio: np.ndarray | None = None) -> Path:
        for packet in self._video.encode():
            self._container.mux(packet)
        if self._audio is not None:
            _write_audio(self._container, self._audio, self._sample_rate, audio)
        self._container.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; just do not leave the partial file
            pass
        self._tmp.unlink(missing_ok=True)


def remux_with_audio(src: str | Path, path: str | Path, sample_rate: int | None = None,
                     audio: np.ndarray | None = None) -> Path:
    """Write `path`: `src`'s first video stream, its packets copied byte for byte with their timestamps,
    and (with `sample_rate`) `audio` as a new AAC track; `src`'s own audio is left out."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), mode="w", format="mp4") as out:
            in_video = inp.streams.video[0]
            add = getattr(out, "add_stream_from_template", None)  # PyAV >= 14; older: add_stream(template=)
            video = add(in_video) if add is not None else out.add_stream(template=in_video)
            # As from the encoder (crf: no bitrate): the MP4 header's bitrates then come from the packets
            # alone, not from the demuxer's estimate for the source file.
            video.codec_context.bit_rate = 0
            audio_stream = _add_audio(out, sample_rate) if sample_rate else None
            for packet in inp.demux(in_video):
                if packet.dts is None:  # the demuxer's empty flush packet
                    continue
                packet.stream = video  # pts/dts stay in the packet's time_base; mux rescales if needed
                out.mux(packet)
            if audio_stream is not None:
                _write_audio(out, audio_stream, sample_rate, audio)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def encoded_like(path: str | Path, size: tuple[int, int], fps: float, crf: int, n_frames: int) -> bool:
    """Whether `path` holds the H.264 stream `VideoWriter(path, size, fps, crf)` writes for `n_frames` frames:
    codec, size, frame rate, frame count, and the crf x264 records in its first frame."""
    import av

    try:
        with av.open(str(path)) as inp:
            stream = inp.streams.video[0]
            ctx = stream.codec_context
            if (ctx.name != "h264" or (ctx.width, ctx.height) != tuple(size)
                    or stream.average_rate != Fraction(fps).limit_denominator(1001)):
                return False
            packets = [p for p in inp.demux(stream) if p.dts is not None]
    except (av.FFmpegError, OSError, IndexError):
        return False
    if len(packets) != n_frames:
        return False
    # x264 writes its settings into the first frame ("... crf=23.0 ..."); a preset shows as its options.
    m = re.search(rb"\bcrf=(\d+(?:\.\d+)?)", bytes(packets[0]))
    return m is not None and float(m.group(1)) == float(crf)
