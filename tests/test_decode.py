"""PyAV decoding: frame indices and timestamps, seek == full decode, rotation, VFR, audio alignment."""

from __future__ import annotations

import types

import numpy as np
import pytest
from video_factory import VideoSpec, frame_times, make_video, read_stamp, truncate

from dfpanel.errors import VideoError
from dfpanel.extract import decode
from dfpanel.extract.decode import VideoReader, plan_clips


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode")
    return {
        # 4 s, GOP 10, B-frames (x264 veryfast): seeking matters and pts order != decode order.
        "long": make_video(d / "long.mp4", VideoSpec(seconds=4.0, gop=10, click_at=1.0)),
        "late_audio": make_video(d / "late_audio.mp4", VideoSpec(seconds=1.2, click_at=0.9, audio_start=0.3)),
        "vfr": make_video(d / "vfr.mp4", VideoSpec(seconds=1.2, vfr=True)),
        "rot": make_video(d / "rot.mp4", VideoSpec(seconds=0.6, rotation=90)),
        "mkv": make_video(d / "clip.mkv", VideoSpec(seconds=1.2, gop=6, container_ext=".mkv")),
    }


def test_plan_clips_spreads_consecutive_clips_over_the_video():
    clips = plan_clips(300, 32, 8)
    assert len(clips) == 4
    for c in clips:
        assert c == list(range(c[0], c[0] + 8))
    starts = [c[0] for c in clips]
    assert starts == sorted(starts) and starts[0] > 0 and clips[-1][-1] < 299
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1  # evenly spread
    # A video shorter than the sample: as many whole clips as fit, none overlapping.
    short = plan_clips(20, 32, 8)
    assert len(short) == 2 and set(short[0]).isdisjoint(short[1])
    assert plan_clips(5, 32, 8) == [[0, 1, 2, 3, 4]]
    assert plan_clips(0, 32, 8) == []


def test_sampled_frames_have_their_index_and_pts_time(videos):
    with VideoReader(videos["long"]) as r:
        assert r.info.n_frames == 100 and r.info.fps == 25.0
        assert r.info.duration == pytest.approx(4.0, abs=1e-6)
        got = r.frames([90, 3, 4, 57])
        assert [f.index for f in got] == [3, 4, 57, 90]
        for f in got:
            assert read_stamp(f.rgb) == f.index  # the pixels are that frame's
            assert f.time == pytest.approx(f.index / 25.0, abs=1e-6)


def test_seek_decode_gives_the_same_pixels_as_full_decode(videos):
    with VideoReader(videos["long"]) as r:
        full = r.all_frames()
        assert [f.index for f in full] == list(range(100))
        rng = np.random.default_rng(1)
        for _ in range(4):
            idx = sorted(rng.choice(100, 10, replace=False).tolist())
            got = r.frames(idx)
            assert [g.index for g in got] == idx
            for g in got:
                np.testing.assert_array_equal(g.rgb, full[g.index].rgb)


def test_sparse_sample_decodes_far_fewer_frames_than_the_video(videos, monkeypatch):
    decoded = 0
    with VideoReader(videos["long"]) as r:
        original = r._decode_stream

        def counting():
            nonlocal decoded
            for frame in original():
                decoded += 1
                yield frame

        monkeypatch.setattr(r, "_decode_stream", counting)
        clips = plan_clips(r.info.n_frames, 8, 4)  # 2 clips of 4 frames
        got = r.frames([i for c in clips for i in c])
    assert len(got) == 8
    assert decoded < 40  # each clip costs at most a GOP (10) plus decoder lookahead, not 100 frames


def test_skipping_unreferenced_frames_on_the_way_changes_no_pixels(videos, monkeypatch):
    idx = [i for c in plan_clips(100, 16, 4) for i in c]
    results, decoded = {}, {}
    for skip in (False, True):
        with VideoReader(videos["long"]) as r:
            r.skip_nonref = skip
            original, n = r._decode_stream, [0]

            def counting(original=original, n=n):
                for frame in original():
                    n[0] += 1
                    yield frame

            monkeypatch.setattr(r, "_decode_stream", counting)
            results[skip] = r.frames(idx)
            decoded[skip] = n[0]
    assert [f.index for f in results[True]] == idx
    for a, b in zip(results[True], results[False]):
        np.testing.assert_array_equal(a.rgb, b.rgb)
    assert decoded[True] < decoded[False]  # B-frames before each target were never decoded


def test_vfr_times_come_from_pts_not_frame_counts(videos):
    spec = VideoSpec(seconds=1.2, vfr=True)
    expected = frame_times(spec)
    with VideoReader(videos["vfr"]) as r:
        assert r.info.n_frames == len(expected)
        got = r.frames([1, 2, 3, 10, 11])
    for f in got:
        assert read_stamp(f.rgb) == f.index
        assert f.time == pytest.approx(expected[f.index], abs=1e-3)
    # Alternating 0.6/1.4 frame durations: consecutive gaps differ, which index/fps would hide.
    assert got[1].time - got[0].time != pytest.approx(got[2].time - got[1].time, abs=1e-3)


def test_display_matrix_rotation_is_applied(videos):
    with VideoReader(videos["rot"]) as r:
        assert r.info.rotation == 90
        assert (r.info.width, r.info.height) == (240, 320)
        f = r.frames([5])[0]
    assert f.rgb.shape == (320, 240, 3)
    # Stored turned clockwise, shown upright: the stamp is back in the top-left corner.
    assert read_stamp(f.rgb) == 5
    with VideoReader(videos["rot"]) as r:
        r.rotation = 0  # what ignoring the display matrix would give
        assert read_stamp(r.frames([5])[0].rgb) != 5


def test_rotate_tag_is_used_when_there_is_no_display_matrix():
    frame = types.SimpleNamespace(rotation=0)
    stream = types.SimpleNamespace(metadata={"rotate": "90"})  # clockwise, old-style tag
    assert decode._rotation_of(frame, stream) == 270
    assert decode._rotation_of(types.SimpleNamespace(rotation=-90), types.SimpleNamespace(metadata={})) == 270


def test_mkv_container_decodes_by_index(videos):
    with VideoReader(videos["mkv"]) as r:
        got = r.frames([0, 13, 29])
    assert [read_stamp(f.rgb) for f in got] == [0, 13, 29]


def test_audio_is_16k_mono_and_aligned_with_the_frames(videos):
    for name, click in (("long", 1.0), ("late_audio", 0.9)):
        with VideoReader(videos[name]) as r:
            samples, start = r.audio()
        assert samples.dtype == np.float32 and samples.ndim == 1
        click_time = start + int(np.argmax(samples > 0.5)) / decode.AUDIO_RATE
        assert click_time == pytest.approx(click, abs=1 / 25)  # within one frame
    with VideoReader(videos["late_audio"]) as r:
        assert r.audio()[1] == pytest.approx(0.3, abs=0.03)  # starts late, on the frames' clock
    with VideoReader(videos["vfr"]) as r:
        assert not r.info.has_audio and r.audio() is None


def test_unreadable_files_raise_video_error(tmp_path, videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    cut = truncate(videos["long"], tmp_path / "cut.mp4", keep=0.5)  # moov atom at the end is lost
    for path, words in ((empty, "empty"), (text, "cannot open"), (cut, "cannot open"), (tmp_path / "nope.mp4", "no such")):
        with pytest.raises(VideoError, match=words) as info:
            VideoReader(path)
        assert path.name in str(info.value) and "\n" not in str(info.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as out:
        st = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in list(st.encode(frame)) + list(st.encode()):
            out.mux(p)
    with pytest.raises(VideoError, match="voice.m4a: has no video stream"):
        VideoReader(path)


def test_truncated_tail_of_a_streamable_file_keeps_the_frames_before_it(videos, tmp_path):
    cut = truncate(videos["mkv"], tmp_path / "cut.mkv", keep=0.6)
    with VideoReader(cut) as r:
        n = r.info.n_frames
        got = r.frames(range(n))
    assert 5 < n < 30
    assert [read_stamp(f.rgb) for f in got[:5]] == [0, 1, 2, 3, 4]
