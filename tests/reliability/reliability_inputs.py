"""Builders for the reliability catalogue (issue #11): every bad input is made at test time with PyAV /
numpy / PIL (no binary fixtures), small. The good talking-face videos come from tests/video_factory.py
(skimage's astronaut, found by MTCNN). Also: running the CLI in a subprocess, snapshots of a folder,
and the names of half-written files. conftest.py builds the inputs once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from video_factory import VideoSpec, face_patch, make_video, truncate

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
TESTS = REPO / "tests"

# Names of files left behind by an interrupted write: none may survive a command.
HALF_WRITTEN = ("*.tmp", ".tmp-*", "*.partial", "*.part", "tmp-*")


def env_with_src() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def session_members(sid: int) -> list[int]:
    """Pids of live (non-zombie) processes in session `sid` (a command started with
    start_new_session=True: its pid is the session id, and every process it forks stays in it)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(d.name))
    return out


def run_cli(args: list[str], cwd: Path, timeout: float = 300, prelude: str = "") -> subprocess.CompletedProcess:
    """`dfpanel ARGS` in a fresh interpreter (so a crash shows as a Traceback on stderr, as a user sees it)."""
    code = f"import sys; {prelude} from dfpanel.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], check=False, cwd=cwd, env=env_with_src(), capture_output=True,
                          text=True, timeout=timeout)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def half_written(folder: Path) -> list[str]:
    found = []
    for pattern in HALF_WRITTEN:
        found += [str(p) for p in folder.rglob(pattern)]
    return found


# --------------------------------------------------------------------------- builders


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, n: int = 40_000) -> Path:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def text_file(path: Path) -> Path:
    path.write_text("This is not a video.\n" * 200, encoding="utf-8")
    return path


def image(path: Path) -> Path:
    from PIL import Image

    rgb = np.zeros((120, 160, 3), np.uint8)
    patch = face_patch(100)
    rgb[10 : 10 + patch.shape[0], 20 : 20 + patch.shape[1]] = patch[:, : 160 - 20]
    Image.fromarray(rgb).save(path)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    out = av.open(str(path), "w")
    try:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        samples = (np.random.default_rng(3).standard_normal(int(44100 * seconds)) * 0.05).astype(np.float32)
        for s0 in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, s0 : s0 + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, s0, Fraction(1, 44100)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    finally:
        out.close()
    return path


def three_faces(path: Path, seconds: float = 1.0, fps: int = 25) -> Path:
    """Three astronauts side by side on a gradient, each bobbing a little."""
    w, h = 480, 200
    patch = face_patch(110)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    out = av.open(str(path), "w")
    try:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.options = {"crf": "18", "preset": "veryfast"}
        for i in range(int(seconds * fps)):
            img = bg.copy()
            for k in range(3):
                x, y = 15 + k * 155, 45 + int(round(4 * np.sin(i / 4.0 + k)))
                img[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    finally:
        out.close()
    return path


def faststart(src: Path, dst: Path) -> Path:
    """Remux with the index (moov) at the front, as web uploads are: a cut file keeps its index."""
    inp = av.open(str(src))
    out = av.open(str(dst), "w", options={"movflags": "faststart"})
    try:
        streams = {}
        for s in inp.streams:
            streams[s.index] = out.add_stream_from_template(s)
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    finally:
        out.close()
        inp.close()
    return dst


GOOD_SPEC = VideoSpec(seconds=1.2, size=(320, 240), click_at=0.6)

# case -> (builder(folder) -> file, what kind it is). "bad" ones must fail one line naming the file;
# "odd" ones are valid videos that must be analysed (or refused with a reason) without a crash.
BUILDERS = {
    "zero_byte": lambda d: zero_bytes(d / "empty.mp4"),
    "truncated_30": lambda d: truncate(d / "_good.mp4", d / "cut30.mp4", keep=0.30),
    "truncated_5": lambda d: truncate(d / "_good.mp4", d / "cut05.mp4", keep=0.05),
    "truncated_intact_index": lambda d: truncate(faststart(d / "_good.mp4", d / "_fast.mp4"), d / "cutfast.mp4", keep=0.85),
    "random_bytes": lambda d: random_bytes(d / "noise.mp4"),
    "text_txt": lambda d: text_file(d / "notes.txt"),
    "text_as_mp4": lambda d: text_file(d / "notes.mp4"),
    "png": lambda d: image(d / "still.png"),
    "jpeg": lambda d: image(d / "still.jpg"),
    "audio_only": lambda d: audio_only(d / "voice.mp4"),
    "no_face": lambda d: make_video(d / "noface.mp4", VideoSpec(seconds=1.0, face=False, seed=2)),
    "three_faces": lambda d: three_faces(d / "three.mp4"),
    "one_frame": lambda d: make_video(d / "oneframe.mp4", VideoSpec(seconds=0.04, seed=3, sweep=0.1)),
    "short_0_2s": lambda d: make_video(d / "short.mp4", VideoSpec(seconds=0.2, seed=4, sweep=0.1)),
    "rotated": lambda d: make_video(d / "phone.mp4", VideoSpec(seconds=1.0, size=(320, 240), rotation=90, seed=5)),
    "vfr": lambda d: make_video(d / "vfr.mp4", VideoSpec(seconds=1.2, vfr=True, seed=6)),
    "4k": lambda d: make_video(d / "uhd.mp4", VideoSpec(seconds=0.16, size=(3840, 2160), face_height=700, gop=4, seed=8, sweep=0.1)),
    "unicode_path": lambda d: make_video(d / "vidéo 日本.mp4", VideoSpec(seconds=1.0, seed=9)),
}

# What each case is: "bad" must fail, naming the file; "video" must be analysed by detect.
KIND = {
    "zero_byte": "bad", "truncated_30": "bad", "truncated_5": "bad", "random_bytes": "bad",
    "text_as_mp4": "bad", "audio_only": "bad", "no_face": "bad",
    "truncated_intact_index": "truncated",
    "text_txt": "ignored", "png": "ignored", "jpeg": "ignored",
    "three_faces": "video", "one_frame": "video", "short_0_2s": "video", "rotated": "video", "vfr": "video",
    "4k": "video", "unicode_path": "video",
}

# One case of each kind runs by default; the rest of the matrix is slow.
DEFAULT_CASES = ("truncated_30", "text_txt", "png", "no_face", "rotated", "unicode_path", "truncated_intact_index")
