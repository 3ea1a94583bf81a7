"""Small test videos written with PyAV: a real face (skimage's astronaut) moving over a textured
background, optionally with an AAC track holding one click at a known time, variable frame rate,
or rotation metadata. Pixel content is deterministic, so tests can check what was decoded."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_SOURCE_RATE = 44100


@dataclass
class VideoSpec:
    seconds: float = 1.2
    size: tuple[int, int] = (320, 240)  # width, height as stored (before rotation)
    fps: int = 25
    face: bool = True
    face_height: int = 110
    click_at: float | None = None  # seconds; adds an AAC track with a click there
    audio_level: float = 0.01  # standard deviation of the track's noise
    square: float = 0.0  # amplitude of a 220 Hz square wave on the track (0.95: AAC decodes peaks above 1.0)
    click_level: float = 0.9  # amplitude of the click
    audio_start: float = 0.0  # the audio track starts this late (seconds, on the video's clock)
    vfr: bool = False  # frame durations alternate 1/fps*0.6 and 1/fps*1.4
    rotation: int = 0  # display-matrix rotation (degrees counterclockwise), written as side data;
    # the picture is stored turned the other way, as a phone does, so it displays upright
    gop: int = 12
    codec: str = "libx264"
    container_ext: str = ".mp4"
    seed: int = 0
    sweep: float = 1.0  # how much of the frame width the face travels over the video
    stamp: bool = True  # paint the frame number as a bar pattern in the top-left corner


def face_patch(height: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    face = data.astronaut()[10:215, 130:320]
    w = round(face.shape[1] * height / face.shape[0])
    return np.asarray(Image.fromarray(face).resize((w, height), Image.BILINEAR))


def frame_times(spec: VideoSpec) -> list[float]:
    n = int(round(spec.seconds * spec.fps))
    if not spec.vfr:
        return [i / spec.fps for i in range(n)]
    t, out = 0.0, []
    for i in range(n):
        out.append(round(t, 3))
        t += (0.6 if i % 2 == 0 else 1.4) / spec.fps
    return out


def face_position(i: int, n: int, spec: VideoSpec, patch: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the face in frame i: a slow left-to-right sweep with a small bob."""
    w, h = spec.size
    ph, pw = patch.shape[:2]
    x = int(round(10 + (w - pw - 20) * spec.sweep * i / max(n - 1, 1)))
    y = int(round((h - ph) / 2 + 6 * np.sin(i / 4.0)))
    return x, y


def render_frame(i: int, n: int, spec: VideoSpec, background: np.ndarray, patch: np.ndarray | None) -> np.ndarray:
    img = background.copy()
    if patch is not None:
        x, y = face_position(i, n, spec, patch)
        img[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    if spec.stamp:
        # 10 bars of 8x8 px: bit b of the frame number, white or black; survives compression.
        for b in range(10):
            img[0:8, b * 8 : b * 8 + 8] = 255 if (i >> b) & 1 else 0
    return img


def read_stamp(rgb: np.ndarray) -> int:
    return sum(1 << b for b in range(10) if rgb[2:6, b * 8 + 2 : b * 8 + 6].mean() > 127)


def make_video(path: str | Path, spec: VideoSpec | None = None) -> Path:
    spec = spec or VideoSpec()
    path = Path(path)
    rng = np.random.default_rng(spec.seed)
    w, h = spec.size
    k = (spec.rotation // 90) % 4
    shown = replace(spec, size=(h, w) if k % 2 else (w, h))  # what a player displays
    yy, xx = np.mgrid[0 : shown.size[1], 0 : shown.size[0]]
    background = np.stack([(xx * 255 // shown.size[0]), (yy * 255 // shown.size[1]), np.full_like(xx, 90)], -1).astype(np.uint8)
    background = np.clip(background + rng.integers(-12, 12, background.shape), 0, 255).astype(np.uint8)
    patch = face_patch(spec.face_height) if spec.face else None
    times = frame_times(spec)

    out = av.open(str(path), "w")
    try:
        vs = out.add_stream(spec.codec, rate=spec.fps)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        vs.codec_context.gop_size = spec.gop
        if spec.codec == "libx264":
            vs.codec_context.options = {"crf": "18", "preset": "veryfast"}
        tb = Fraction(1, 1000) if spec.vfr else Fraction(1, spec.fps)
        vs.codec_context.time_base = tb
        if spec.rotation:
            vs.set_display_rotation(spec.rotation)
        aus = None
        if spec.click_at is not None:
            aus = out.add_stream("aac", rate=AUDIO_SOURCE_RATE, layout="mono")
        for i, t in enumerate(times):
            upright = render_frame(i, len(times), shown, background, patch)
            stored = np.ascontiguousarray(np.rot90(upright, -k)) if k else upright
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = int(round(t / tb))
            frame.time_base = tb
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if aus is not None:
            total = int((spec.seconds - spec.audio_start) * AUDIO_SOURCE_RATE)
            offset = int(round(spec.audio_start * AUDIO_SOURCE_RATE))
            samples = (rng.standard_normal(total) * spec.audio_level).astype(np.float32)
            if spec.square:
                t = np.arange(total) / AUDIO_SOURCE_RATE
                samples = np.clip(samples + spec.square * np.sign(np.sin(2 * np.pi * 220 * t)), -1, 1).astype(np.float32)
            c = int(round((spec.click_at - spec.audio_start) * AUDIO_SOURCE_RATE))
            samples[c : c + 40] = spec.click_level
            chunk = 1024
            for s0 in range(0, total, chunk):
                block = samples[s0 : s0 + chunk]
                af = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                af.sample_rate = AUDIO_SOURCE_RATE
                af.pts = offset + s0
                af.time_base = Fraction(1, AUDIO_SOURCE_RATE)
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    finally:
        out.close()
    return path


def truncate(src: Path, dst: Path, keep: float = 0.4) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)
