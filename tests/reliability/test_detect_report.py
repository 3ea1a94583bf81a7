"""Reliability of `dfpanel detect` and its reports (issue #11): links that lead nowhere, report writes
that fail, an --out that cannot hold reports, text files FFmpeg takes for video, cut files, rotated
videos, and mutated containers through the probe/decode path."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
from detect_fakes import fake_extract, fake_runners
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.detect import run as run_mod
from dfpanel.detect.discovery import NotAVideo, discover_videos, probe_video
from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.errors import DfpanelError, VideoError
from dfpanel.extract.decode import VideoReader
from dfpanel.extract.faces import Detection, FaceDetector
from dfpanel.panel.combiner import Panel
from dfpanel.report.schema import validate_report
from dfpanel.report.write import atomic_write

README = "dfpanel\n=======\n\nA deepfake-video detector. Run `dfpanel detect VIDEO`.\n" * 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))


def copy_as(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def detect(args: list, weights: Path) -> int:
    return main(["detect", *map(str, args), "--weights", str(weights), "--frames", "16"])


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "RuntimeError" not in text


# ---- 1. links ---------------------------------------------------------------------------------------
def test_symlink_loop_in_folder_is_skipped_by_name_and_the_rest_analysed(clip, tmp_path, fake_weights, capsys):
    videos = tmp_path / "videos"
    copy_as(clip, videos / "talk.mp4")
    os.symlink("self.mp4", videos / "self.mp4")  # a link to itself
    os.symlink("pong", videos / "ping")
    os.symlink("ping", videos / "pong")  # two links to each other
    os.symlink("..", videos / "up")  # a folder link back up the tree
    out = tmp_path / "out"
    code = detect([videos, "--out", out], fake_weights)
    cap = capsys.readouterr()
    no_traceback(cap.err)
    assert code == 0, cap.err
    assert "talk.mp4" in cap.out
    assert "self.mp4: symlink loop; skipped" in cap.err and "ping: symlink loop" in cap.err
    validate_report(json.loads((out / "talk" / "report.json").read_text()))
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["video"] for r in rows] == ["talk.mp4"]


def test_dangling_video_link_is_named_as_a_failure(clip, tmp_path, fake_weights, capsys):
    videos = tmp_path / "videos"
    copy_as(clip, videos / "talk.mp4")
    os.symlink(tmp_path / "gone" / "moved.mp4", videos / "moved.mp4")
    out = tmp_path / "out"
    assert detect([videos, "--out", out], fake_weights) == 1
    cap = capsys.readouterr()
    no_traceback(cap.err)
    assert "moved.mp4" in cap.err and "broken link" in cap.err
    r = validate_report(json.loads((out / "moved" / "report.json").read_text()))
    assert r["error"]["kind"] == "not_found" and "does not exist" in r["error"]["message"]
    found = discover_videos([videos])
    assert [(u.path.name, u.error_kind) for u in found.failures] == [("moved.mp4", "not_found")]


# ---- 2. writing reports -----------------------------------------------------------------------------
def test_a_report_write_failure_fails_that_video_and_the_run_goes_on(clip, tmp_path, fake_weights, capsys, monkeypatch):
    videos = tmp_path / "videos"
    for name in ("a", "b", "c"):
        copy_as(clip, videos / f"{name}.mp4")
    real = run_mod.write_report

    def full_disk_for_b(report, folder, thumbnails=None):
        if Path(folder).name == "b":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(report, folder, thumbnails)

    monkeypatch.setattr(run_mod, "write_report", full_disk_for_b)
    out = tmp_path / "out"
    assert detect([videos, "--out", out], fake_weights) == 1
    cap = capsys.readouterr()
    no_traceback(cap.err)
    assert "b.mp4: could not write report: No space left on device" in cap.err
    assert (out / "a" / "report.json").is_file() and (out / "c" / "report.json").is_file()  # analysed after b
    rows = {r["video"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["b.mp4"]["status"] == "failed" and "No space left" in rows["b.mp4"]["reason"]
    assert rows["c.mp4"]["status"] == "analysed"


def test_atomic_write_never_leaves_a_torn_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text('{"old": "whole"}')

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, '{"new": ' + "1" * 100000 + "}")
    assert target.read_text() == '{"old": "whole"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left behind


def test_a_failed_report_write_keeps_the_old_report_whole(tmp_path, monkeypatch):
    from dfpanel.report.write import write_report

    det = PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=fake_extract)
    report = det.fail(tmp_path / "x.mp4", "corrupt", "unreadable container").report
    folder = tmp_path / "x"
    write_report(report, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)  # where a full disk shows up for a buffered write
    report["error"]["message"] = "changed " * 1000
    with pytest.raises(OSError, match="No space left"):
        write_report(report, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # whole, and no temporaries


def test_summary_write_failure_is_named_not_a_traceback(clip, tmp_path, fake_weights, capsys, monkeypatch):
    copy_as(clip, tmp_path / "videos" / "a.mp4")

    def enospc(rows, out):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_mod, "write_summary", enospc)
    assert detect([tmp_path / "videos", "--out", tmp_path / "out"], fake_weights) == 1
    cap = capsys.readouterr()
    no_traceback(cap.err)
    assert "could not write the summary" in cap.err and "No space left on device" in cap.err


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_cannot_hold_reports_is_a_one_line_error_before_analysis(clip, tmp_path, fake_weights, capsys,
                                                                           monkeypatch, where):
    video = copy_as(clip, tmp_path / "talk.mp4")
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "reports"
    analysed = []
    monkeypatch.setattr(PanelDetector, "analyse", lambda self, v: analysed.append(v))
    assert detect([video, "--out", out], fake_weights) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert str(out) in err and len(err.strip().splitlines()) == 1, err
    assert analysed == []


# ---- 3. text files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["README.txt", "release.nfo", "key.asc", "file_id.diz", "art.ans"])
def test_text_files_are_not_videos(clip, tmp_path, fake_weights, capsys, name):
    text = tmp_path / "videos" / name
    text.parent.mkdir()
    text.write_text(README)
    with pytest.raises(NotAVideo, match="not a video"):
        probe_video(text)
    with pytest.raises(VideoError, match="not a video"):
        VideoReader(text)
    copy_as(clip, tmp_path / "videos" / "talk.mp4")
    assert detect([tmp_path / "videos", "--out", tmp_path / "out"], fake_weights) == 0  # skipped in a folder
    capsys.readouterr()
    assert detect([text, "--out", tmp_path / "out2"], fake_weights) == 1  # named when given explicitly
    err = capsys.readouterr().err
    assert f"{name}: not a video" in err and "no face" not in err


# ---- 4. truncated files -----------------------------------------------------------------------------
def faststart(src: Path, dst: Path) -> Path:
    """Remux with the index (moov) first, as streaming sites serve MP4: a cut file keeps its index."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        m = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is None:
                continue
            p.stream = m[p.stream.index]
            o.mux(p)
    return dst


class BoxDetector(FaceDetector):
    """Finds one face at a fixed place in every frame (no model: the test is about decoding)."""

    name = "box"

    def detect(self, frames):
        lm = np.array([[60, 55], [80, 55], [70, 65], [62, 75], [78, 75]], dtype=float)
        return [[Detection(np.array([45.0, 35, 95, 95]), lm, 0.99)] for _ in frames]


def test_a_cut_file_with_its_index_intact_says_what_it_covers(tmp_path):
    from dfpanel.extract.video import ExtractConfig, extract_video
    from dfpanel.report.html import render_html

    whole = faststart(make_video(tmp_path / "w.mp4", VideoSpec(seconds=2.0, size=(160, 120), face_height=60)),
                      tmp_path / "whole.mp4")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    assert probe_video(cut).duration == pytest.approx(2.0, abs=0.05)  # the header still claims it all

    def extract(path, video_id, timings, progress=None):
        return extract_video(path, ExtractConfig(frames=16, clip_len=4), video_id=video_id, dataset="detect",
                             detector=BoxDetector(), progress=progress)

    det = PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=extract)
    r = validate_report(det.analyse(cut).report)
    t = r["video"]["truncation"]
    assert r["status"] == "analysed"
    assert t["frames_expected"] == 50 and 0 < t["frames_found"] < 50
    assert t["seconds_claimed"] == pytest.approx(2.0, abs=0.05) and t["seconds_covered"] < 1.0
    assert r["video"]["duration"] == pytest.approx(t["seconds_covered"])
    said = [s for s in r["explanation"] if "truncated" in s]
    assert said and f"of 2.0 s ({t['frames_found']} of 50 frames)" in said[0]
    assert "Truncated file" in render_html(r)
    # the whole file: no truncation
    whole_report = validate_report(det.analyse(whole).report)
    assert whole_report["video"].get("truncation") is None
    assert not any("truncated" in s for s in whole_report["explanation"])


# ---- 5. rotation ------------------------------------------------------------------------------------
def test_rotated_video_reports_the_displayed_size(tmp_path):
    rotated = make_video(tmp_path / "phone.mp4", VideoSpec(seconds=0.4, size=(160, 120), rotation=90, face_height=50))
    info = probe_video(rotated)
    with VideoReader(rotated) as reader:
        assert (reader.info.width, reader.info.height) == (120, 160)
    assert (info.width, info.height) == (120, 160)
    upright = probe_video(make_video(tmp_path / "flat.mp4", VideoSpec(seconds=0.4, size=(160, 120), face_height=50)))
    assert (upright.width, upright.height) == (160, 120)


# ---- 6. fuzzing the probe/decode path ---------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CLEAN = (VideoError, NotAVideo, DfpanelError)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """Real containers to mutate: MP4 with audio (index at the end and at the start), MKV, WebM."""
    d = tmp_path_factory.mktemp("seeds")
    spec = VideoSpec(seconds=0.5, size=(96, 72), face_height=40, click_at=0.2, gop=4)
    mp4 = make_video(d / "a.mp4", spec)
    out = {"mp4": mp4.read_bytes(), "faststart": faststart(mp4, d / "fs.mp4").read_bytes(),
           "mkv": make_video(d / "b.mkv", VideoSpec(seconds=0.4, size=(96, 72), face_height=40, container_ext=".mkv")).read_bytes()}
    return out


def mp4_boxes(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the top-level boxes of an MP4."""
    boxes, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        if size < 8 or i + size > len(data):
            break
        boxes.append((i, size))
        i += size
    return boxes


@st.composite
def mutated(draw, seeds_names=("mp4", "faststart", "mkv")):
    name = draw(st.sampled_from(seeds_names))
    how = draw(st.sampled_from(["flip", "cut", "splice", "zero"]))
    return name, how, draw(st.integers(0, 2**32 - 1))


def mutate(data: bytes, how: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    if how == "flip":
        for _ in range(int(rng.integers(1, 16))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif how == "cut":
        b = b[: int(rng.integers(1, len(b)))]
    elif how == "zero":
        i = int(rng.integers(0, len(b)))
        n = min(int(rng.integers(1, 512)), len(b) - i)
        b[i:i + n] = bytes(n)
    else:  # splice: duplicate, drop or swap MP4 boxes (or arbitrary spans in other containers)
        boxes = mp4_boxes(data) or [(0, len(data))]
        off, size = boxes[int(rng.integers(0, len(boxes)))]
        chunk = data[off:off + size]
        op = int(rng.integers(0, 3))
        if op == 0:
            b = bytearray(data[:off + size] + chunk + data[off + size:])  # box twice
        elif op == 1:
            b = bytearray(data[:off] + data[off + size:])  # box missing
        else:
            at = int(rng.integers(0, len(data)))
            b = bytearray(data[:at] + chunk + data[at:])  # a box in the middle of another
    return bytes(b)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    def fire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def exercise(path: Path) -> None:
    """Probe, open, sample frames and read audio: each either works or raises a clean, one-line error
    naming the file."""
    try:
        probe_video(path)
    except NotAVideo as exc:
        assert "\n" not in str(exc) and str(exc)
    try:
        with VideoReader(path) as reader:
            info = reader.info
            assert info.n_frames > 0 and info.width > 0 and info.height > 0
            frames = reader.frames(range(0, info.n_frames, 3))
            assert all(f.rgb.ndim == 3 and f.rgb.shape[2] == 3 for f in frames)
            audio = reader.audio()
            assert audio is None or (audio[0].dtype == np.float32 and np.isfinite(audio[0]).all())
    except CLEAN as exc:
        msg = str(exc)
        assert "\n" not in msg and path.name in msg, msg


def fuzz_once(tmp_path: Path, seeds: dict, case) -> None:
    name, how, seed = case
    path = tmp_path / f"fuzz{'.mkv' if name == 'mkv' else '.mp4'}"
    path.write_bytes(mutate(seeds[name], how, seed))
    with time_limit(20):
        exercise(path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_fuzz_mutated_containers_fail_cleanly(tmp_path, seeds, case):
    fuzz_once(tmp_path, seeds, case)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_fuzz_mutated_containers_fail_cleanly_many(tmp_path, seeds, case):
    fuzz_once(tmp_path, seeds, case)


# What the fuzzing found, kept as fixed cases.
def test_unknown_codec_id_is_a_clean_error(tmp_path):
    """An MKV whose CodecID is damaged has a stream without a codec context: it was AttributeError."""
    mkv = make_video(tmp_path / "a.mkv", VideoSpec(seconds=0.4, size=(96, 72), face_height=40, container_ext=".mkv"))
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(mkv.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))
    with pytest.raises(NotAVideo, match="codec cannot be decoded") as probe_err:
        probe_video(bad)
    assert probe_err.value.corrupt
    with pytest.raises(VideoError, match="bad.mkv: the video stream's codec cannot be decoded"):
        VideoReader(bad)


def test_damaged_keyframe_table_still_decodes(tmp_path):
    """An MP4 whose stss (keyframe table) names no frame at or before 0: seeking raised
    av.error.PermissionError out of VideoReader; now it seeks to any frame and decodes on."""
    spec = VideoSpec(seconds=0.5, size=(96, 72), face_height=40, gop=4)
    mp4 = faststart(make_video(tmp_path / "a.mp4", spec), tmp_path / "fs.mp4")
    b = bytearray(mp4.read_bytes())
    i = b.find(b"stss")
    assert b[i + 12:i + 16] == b"\x00\x00\x00\x01"
    b[i + 15] = 5  # the first keyframe is said to be frame 5
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(b))
    with VideoReader(bad) as reader:
        assert reader.info.n_frames == 12
        assert len(reader.frames(range(12))) > 0
