"""Each synthetic manipulation changes what it should (and nothing else), and the mouth talks with the voice."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from dfpanel.synth.audio import make_speech, shift_audio
from dfpanel.synth.faces import EYE_DIST, FaceState, make_identity
from dfpanel.synth.manipulations import FakeTraces
from dfpanel.synth.render import Clip, Output, clip_scene, identity, render_clip
from dfpanel.synth.scene import Scene, layer_roi, warp_to_roi

SIZE = (320, 240)


@pytest.fixture(scope="module")
def world():
    scene = Scene(11, SIZE, 25.0, 12)
    person, donor = make_identity(21), make_identity(22)
    mouth = np.linspace(0, 1, 12).astype(np.float32)
    frames = []
    for i in range(12):
        state, affine = scene.state(i, mouth), scene.affine(i)
        comp = scene.compose(i, person, state, affine)
        frames.append((i, comp, scene.finish(i, comp), state, affine))
    return scene, person, donor, frames


def _fakes(world, names, seed=5, **kw):
    scene, person, donor, frames = world
    trace = FakeTraces(names, seed, scene, person, donor if "face_swap" in names else None, **kw)
    return trace, [(real, trace.frame(i, comp, real, state, affine)) for i, comp, real, state, affine in frames]


def _far_from_face(scene, affine, pad=12):
    """Boolean mask of frame pixels well away from the whole head canvas."""
    x1, y1, x2, y2 = layer_roi(affine, scene.w, scene.h, pad=pad)
    far = np.ones((scene.h, scene.w), bool)
    far[y1:y2, x1:x2] = False
    return far


def _face(scene, person, i, img):
    x1, y1, x2, y2 = scene.face_box(person, i).astype(int)
    return img[max(y1, 0):y2, max(x1, 0):x2].astype(np.float32)


@pytest.mark.parametrize("names", [("face_swap",), ("relight",), ("recompress",), ("temporal_jitter",)])
def test_visual_traces_change_the_face_and_leave_the_far_background_exactly(world, names):
    scene, person, _, frames = world
    _, pairs = _fakes(world, names)
    diffs = []
    for (i, _, _, _, affine), (real, fake) in zip(frames, pairs):
        far = _far_from_face(scene, affine)
        assert np.array_equal(real[far], fake[far])
        diffs.append(np.abs(_face(scene, person, i, fake) - _face(scene, person, i, real)).mean())
    assert np.mean(diffs) > 1.5, (names, diffs)


def _hf_energy(img):
    h, w = img.shape[:2]
    img = img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]  # inside the swapped inner face
    grey = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def test_face_swap_is_rendered_small_and_scaled_up(world):
    """The resampling trace: the same swap without the downscale keeps more fine detail."""
    scene, person, _, frames = world
    trace, pairs = _fakes(world, ("face_swap",))
    assert 0.45 <= trace.resample <= 0.7
    trace.resample = 1.0
    sharp = [trace.frame(i, comp, real, state, affine) for i, comp, real, state, affine in frames]
    hf_small = np.mean([_hf_energy(_face(scene, person, i, f)) for (i, *_), (_, f) in zip(frames, pairs)])
    hf_full = np.mean([_hf_energy(_face(scene, person, i, f)) for (i, *_), f in zip(frames, sharp)])
    assert hf_small < 0.85 * hf_full, (hf_small, hf_full)


def test_relight_colours_the_face_unlike_the_scene(world):
    scene, person, _, frames = world
    trace, pairs = _fakes(world, ("relight",))
    ratios = np.array([_face(scene, person, i, f).mean((0, 1)) / _face(scene, person, i, r).mean((0, 1))
                       for (i, *_), (r, f) in zip(frames, pairs)])
    # a tint: channels scaled differently, the same way in every frame
    assert np.ptp(ratios.mean(0)) > 0.03
    assert ratios.std(0).max() < 0.02


def _light_gradient(img, canvas_mask, affine):
    """Log-luminance gradient over a canvas mask placed by `affine` (per eye distance), as a 2-vector."""
    h, w = img.shape[:2]
    mask = warp_to_roi(canvas_mask, affine, (0, 0, w, h))
    ys, xs = np.nonzero(mask > 0.5)
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)[ys, xs]
    a = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, np.log(luma + 1.0), rcond=None)
    return coef[:2] * EYE_DIST * float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))


def test_faces_are_shaded_by_the_scenes_light_and_relight_shades_them_from_elsewhere():
    """A real face is brighter towards the scene's light (it was not before: each face kept its photo's
    light, in a random direction); a relit face is brighter away from it. Six people, six scenes."""
    towards_real, towards_fake, strength = [], [], []
    for k in range(6):
        scene, person = Scene(100 + k, SIZE, 25.0, 1), make_identity(200 + k)
        state, affine = scene.state(0, np.zeros(1, np.float32)), scene.affine(0)
        comp = scene.compose(0, person, state, affine)
        real = scene.finish(0, comp)
        fake = FakeTraces(("relight",), 7 + k, scene, person).frame(0, comp, real, state, affine)
        light = np.array([np.cos(scene.light_angle), np.sin(scene.light_angle)])
        g_real, g_fake = _light_gradient(real, person.inner, affine), _light_gradient(fake, person.inner, affine)
        towards_real.append(g_real @ light / np.linalg.norm(g_real))
        towards_fake.append(g_fake @ light / np.linalg.norm(g_fake))
        strength.append(np.linalg.norm(g_real))
    assert min(towards_real) > 0.8, towards_real  # cosine between the face's gradient and the light
    assert np.mean(towards_fake) < -0.3, towards_fake
    assert min(strength) > 0.1, strength  # a visible key light: >10% brighter per eye distance


def test_photos_lose_their_own_light_when_aligned():
    """The astronaut photo's face is lit from one side; aligned, its luminance plane is nearly flat."""
    from dfpanel.synth import faces

    base = faces._aligned_base(0)
    face = faces._ellipse_mask(faces.CANVAS_H, faces.CANVAS_W, *faces.FACE_ELLIPSE)
    photo = faces._load_photo("astronaut")
    raw = cv2.warpAffine(photo, faces._similarity(np.array(faces._BASES[0].landmarks)[:2], faces.CANVAS_EYES),
                         (faces.CANVAS_W, faces.CANVAS_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    on_canvas = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    before = np.linalg.norm(_light_gradient(raw, face, on_canvas))
    after = np.linalg.norm(_light_gradient(base.rgb, face, on_canvas))
    assert before > 0.1 and after < 0.2 * before, (before, after)


def _grid_score(grey, offset):
    """How much stronger column-to-column jumps are at x = offset (mod 8) than elsewhere."""
    d = np.abs(np.diff(grey, axis=1)).mean(0)  # d[k] = jump between columns k and k+1
    boundary = np.array([(k + 1) % 8 == offset % 8 for k in range(len(d))])
    return d[boundary].mean() / d[~boundary].mean()


def test_recompress_leaves_jpeg_blocks_on_a_grid_off_the_frames_grid(world):
    scene, person, _, frames = world
    trace, pairs = _fakes(world, ("recompress",), seed=8)
    gx, _ = trace.grid
    assert gx != 0
    fake_on, fake_aligned, real_on = [], [], []
    for (i, *_), (real, fake) in zip(frames, pairs):
        x1, y1, x2, y2 = scene.face_box(person, i).astype(int)
        x1 = (x1 // 8) * 8  # crop on the frame grid so column k of the crop is frame column x1 + k
        f = cv2.cvtColor(fake, cv2.COLOR_RGB2GRAY)[y1 + 10 : y2 - 10, x1 + 8 : x2 - 8].astype(np.float32)
        r = cv2.cvtColor(real, cv2.COLOR_RGB2GRAY)[y1 + 10 : y2 - 10, x1 + 8 : x2 - 8].astype(np.float32)
        fake_on.append(_grid_score(f, gx))
        fake_aligned.append(_grid_score(f, 0))
        real_on.append(_grid_score(r, gx))
    assert np.mean(fake_on) > 1.15 * np.mean(fake_aligned)
    assert np.mean(fake_on) > 1.15 * np.mean(real_on)


def test_temporal_jitter_flickers_from_frame_to_frame(world):
    scene, person, _, frames = world
    _, pairs = _fakes(world, ("temporal_jitter",))
    ratio = np.array([_face(scene, person, i, f).mean() / _face(scene, person, i, r).mean()
                      for (i, *_), (r, f) in zip(frames, pairs)])
    assert ratio.std() > 0.01
    # not a slow drift: consecutive frames jump about as much as frames far apart
    assert np.abs(np.diff(ratio)).mean() > 0.6 * ratio.std()


def test_blink_closes_the_eyes_and_mouth_opening_darkens_the_mouth():
    person = make_identity(3)
    open_eyes, _ = person.render(FaceState(mouth=0.0, blink=0.0))
    shut, _ = person.render(FaceState(mouth=0.0, blink=1.0))
    talking, _ = person.render(FaceState(mouth=1.0, blink=0.0))
    ex, ey = person.landmarks[0].astype(int)
    eye = (slice(ey - 4, ey + 4), slice(ex - 8, ex + 8))
    # the lid is skin: the eye's dark pupil/white contrast disappears
    assert shut[eye].mean(2).std() < 0.5 * open_eyes[eye].mean(2).std()
    mx, my = person.mouth_centre.astype(int)
    mouth = (slice(my, my + 10), slice(mx - 10, mx + 10))
    assert talking[mouth].mean() < open_eyes[mouth].mean() - 30


def _decode(path):
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        sr = c.streams.audio[0].codec_context.sample_rate
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
    return frames, audio, sr


def _mouth_opening(clip, frames):
    """Dark-pixel fraction just below the lips in each decoded frame (where the mouth was drawn)."""
    scene, person = clip_scene(clip), identity(clip.identity)
    out = []
    for i, frame in enumerate(frames):
        a = scene.affine(i)
        s = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
        cx, cy = a[:, :2] @ person.mouth_centre + a[:, 2]
        half = 0.3 * person.mouth_width * s
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        box = grey[int(cy) : int(cy + 0.35 * person.mouth_width * s) + 1, int(cx - half) : int(cx + half) + 1]
        out.append((box < 0.5 * np.median(grey[int(cy - 3 * half) : int(cy), int(cx - half) : int(cx + half)])).mean())
    return np.array(out)


def _rms_per_frame(audio, sr, fps, n):
    hop = sr / fps
    return np.array([np.sqrt(np.mean(audio[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n)])


def _video_packets(path):
    """The encoded video stream as muxed: codec extradata (SPS/PPS) and every packet's bytes, pts, dts, key flag."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        packets = [(bytes(p), p.pts, p.dts, p.time_base, p.is_keyframe) for p in c.demux(stream) if p.dts is not None]
    return extradata, packets


@pytest.fixture(scope="module")
def talking_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("talk")
    clip = Clip("talk", identity=31, scene=32, speech=33, seconds=4.0, size=SIZE, fps=25.0)
    outs = [
        Output("real.mp4", 0, "real", audio=True),
        Output("shift.mp4", 1, "audio_shift", ("audio_shift",), audio=True, trace_seed=1),
        Output("replace.mp4", 1, "audio_replace", ("audio_replace",), audio=True, trace_seed=2),
    ]
    render_clip(clip, outs, root)
    return clip, outs, root


@pytest.fixture(scope="module")
def talking(talking_files):
    clip, outs, root = talking_files
    return clip, {o.path: _decode(root / o.path) for o in outs}


def test_mouth_opening_follows_the_voice_and_not_a_shifted_voice(talking):
    clip, videos = talking
    frames, audio, sr = videos["real.mp4"]
    mouth = _mouth_opening(clip, frames)
    r_real = np.corrcoef(mouth, _rms_per_frame(audio, sr, clip.fps, len(frames)))[0, 1]
    _, shifted, _ = videos["shift.mp4"]
    r_shift = np.corrcoef(mouth, _rms_per_frame(shifted, sr, clip.fps, len(frames)))[0, 1]
    assert r_real > 0.6
    assert r_shift < r_real - 0.3


def test_audio_fakes_keep_the_video_and_change_only_the_sound(talking, talking_files):
    clip, videos = talking
    _, _, root = talking_files
    real_frames, real_audio, sr = videos["real.mp4"]
    real_extradata, real_packets = _video_packets(root / "real.mp4")
    assert len(real_packets) == clip.n_frames
    for name in ("shift.mp4", "replace.mp4"):
        frames, audio, _ = videos[name]
        assert np.array_equal(frames, real_frames), name
        # The very same encoded stream, not just the same decoded pixels: packets copied, not re-encoded.
        extradata, packets = _video_packets(root / name)
        assert extradata == real_extradata, name
        assert packets == real_packets, name
        assert not np.allclose(audio[: len(real_audio)], real_audio[: len(audio)], atol=1e-3), name


def _small_clip():
    return Clip("mix", identity=41, scene=42, speech=43, seconds=1.0, size=(160, 120), fps=25.0)


def test_video_only_and_audio_outputs_share_the_stream_and_visual_fakes_do_not(tmp_path, monkeypatch):
    from dfpanel.synth import render

    encoded, real_writer = [], render.VideoWriter

    def writer(path, *a, **k):
        encoded.append(path.name)
        return real_writer(path, *a, **k)

    monkeypatch.setattr(render, "VideoWriter", writer)
    clip = _small_clip()
    outs = [
        Output("silent.mp4", 0, "real"),  # first of its group: encoded, no audio track
        Output("shift.mp4", 1, "audio_shift", ("audio_shift",), audio=True, trace_seed=1),
        Output("swap.mp4", 1, "face_swap", ("face_swap",), source=44, trace_seed=3),
        Output("c40.mp4", 0, "real", crf=40, audio=True),  # other crf: its own stream
    ]
    assert render_clip(clip, outs, tmp_path) == [o.path for o in outs]
    assert encoded == ["silent.mp4", "swap.mp4", "c40.mp4"]  # shift.mp4 is a copy of silent.mp4's stream
    for o in outs:
        with av.open(str(tmp_path / o.path)) as c:
            assert len(c.streams.video) == 1 and len(c.streams.audio) == int(o.audio), o.path
            assert sum(1 for _ in c.decode(video=0)) == clip.n_frames, o.path
    silent = _video_packets(tmp_path / "silent.mp4")
    assert _video_packets(tmp_path / "shift.mp4") == silent
    assert _video_packets(tmp_path / "swap.mp4")[1] != silent[1]
    assert _video_packets(tmp_path / "c40.mp4")[1] != silent[1]
    assert not list(tmp_path.glob(".*"))  # no partial files left


def test_resumed_audio_fake_copies_the_real_file_on_disk_without_encoding(tmp_path, monkeypatch):
    from dfpanel.synth import render

    clip = _small_clip()
    outs = [
        Output("real.mp4", 0, "real", audio=True),
        Output("shift.mp4", 1, "audio_shift", ("audio_shift",), audio=True, trace_seed=1),
        Output("replace.mp4", 1, "audio_replace", ("audio_replace",), audio=True, trace_seed=2),
    ]
    render_clip(clip, outs, tmp_path)
    first = {o.path: (tmp_path / o.path).read_bytes() for o in outs}
    (tmp_path / "shift.mp4").unlink()
    (tmp_path / "replace.mp4").unlink()

    def no_encoding(*a, **k):
        raise AssertionError("the real video is on disk: nothing should be encoded")

    monkeypatch.setattr(render, "VideoWriter", no_encoding)
    assert render_clip(clip, outs, tmp_path) == ["shift.mp4", "replace.mp4"]
    assert {o.path: (tmp_path / o.path).read_bytes() for o in outs} == first  # as if never interrupted


def test_a_file_on_disk_from_other_settings_is_not_copied(tmp_path):
    from dfpanel.synth.video import encoded_like

    clip = _small_clip()
    real, shift = Output("real.mp4", 0, "real", audio=True), Output("shift.mp4", 1, "audio_shift", ("audio_shift",),
                                                                    audio=True, trace_seed=1)
    render_clip(clip, [Output("real.mp4", 0, "real", crf=30, audio=True)], tmp_path)  # not this plan's crf
    assert not encoded_like(tmp_path / "real.mp4", clip.size, clip.fps, 23, clip.n_frames)
    assert encoded_like(tmp_path / "real.mp4", clip.size, clip.fps, 30, clip.n_frames)
    assert render_clip(clip, [real, shift], tmp_path) == ["shift.mp4"]  # encoded anew at crf 23
    assert encoded_like(tmp_path / "shift.mp4", clip.size, clip.fps, 23, clip.n_frames)
    assert _video_packets(tmp_path / "shift.mp4") != _video_packets(tmp_path / "real.mp4")


def test_audio_shift_moves_the_voice_by_the_recorded_amount():
    speech = make_speech(4, 3.0, 150.0)
    for seconds in (0.3, -0.45):
        moved = shift_audio(speech.audio, seconds)
        env_a = np.abs(speech.audio)
        env_b = np.abs(moved)
        lags = np.arange(-12_000, 12_001, 80)
        scores = [np.dot(env_a[max(0, -k) : len(env_a) - max(0, k)], env_b[max(0, k) : len(env_b) - max(0, -k)]) for k in lags]
        assert abs(lags[int(np.argmax(scores))] / 16_000 - seconds) < 0.01


def test_speech_envelope_is_speech_like():
    speech = make_speech(9, 4.0, 120.0)
    mouth = speech.mouth_per_frame(25.0, 100)
    assert 0 <= mouth.min() and mouth.max() <= 1
    talking = mouth > 0.2
    onsets = np.sum(talking[1:] & ~talking[:-1])
    assert 8 <= onsets <= 30  # syllables at a few per second, with pauses
    assert 0.2 < talking.mean() < 0.9


def test_decoded_audio_shift_matches_what_the_sidecar_records(talking):
    from dfpanel.synth.render import describe

    clip, videos = talking
    _, real, sr = videos["real.mp4"]
    _, shifted, _ = videos["shift.mp4"]
    recorded = describe(clip, Output("shift.mp4", 1, "audio_shift", ("audio_shift",), audio=True, trace_seed=1))
    seconds = recorded["audio_shift"]["seconds"]
    assert 0.2 <= abs(seconds) <= 0.6
    n = min(len(real), len(shifted))
    env_a, env_b = np.abs(real[:n]), np.abs(shifted[:n])
    lags = np.arange(-int(0.7 * sr), int(0.7 * sr) + 1, sr // 200)
    scores = [np.dot(env_a[max(0, -k) : n - max(0, k)], env_b[max(0, k) : n - max(0, -k)]) for k in lags]
    assert abs(lags[int(np.argmax(scores))] / sr - seconds) < 0.02
