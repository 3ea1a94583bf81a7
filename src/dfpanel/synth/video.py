"""Writing MP4 files with PyAV: H.264 (libx264, yuv420p) video and optional AAC audio.

Files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a truncated video that a resumed run would mistake for a finished one.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

AUDIO_FRAME = 1024  # AAC frame size


class VideoWriter:
    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, crf: int, sample_rate: int | None = None):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
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
            self._audio = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        self._n = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._n
        self._n += 1
        for packet in self._video.encode(vf):
            self._container.mux(packet)

    def close(self, audio: np.ndarray | None = None) -> Path:
        import av

        for packet in self._video.encode():
            self._container.mux(packet)
        if self._audio is not None:
            samples = np.zeros(1, np.float32) if audio is None else audio.astype(np.float32)
            for start in range(0, len(samples), AUDIO_FRAME):
                chunk = samples[start : start + AUDIO_FRAME][None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate = self._sample_rate
                af.pts = start
                for packet in self._audio.encode(af):
                    self._container.mux(packet)
            for packet in self._audio.encode():
                self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; just do not leave the partial file
            pass
        self._tmp.unlink(missing_ok=True)
