"""Face detection (MTCNN behind FaceDetector), the detector registry, tracking and context crops."""

from __future__ import annotations

import numpy as np
import pytest
from video_factory import VideoSpec, face_patch, face_position, render_frame

from dfpanel.errors import ConfigError
from dfpanel.extract.faces import (
    DETECTORS,
    Detection,
    FaceDetector,
    context_box,
    create_detector,
    iou,
    register_detector,
    track_faces,
)


@pytest.fixture(scope="module")
def mtcnn():
    import torch

    torch.set_num_threads(1)
    return create_detector("mtcnn", min_face_size=40)


def _frame(i: int = 5, size=(320, 240)):
    spec = VideoSpec(size=size)
    patch = face_patch(spec.face_height)
    bg = np.full((size[1], size[0], 3), 120, np.uint8)
    return render_frame(i, 30, spec, bg, patch), face_position(i, 30, spec, patch), patch.shape


def test_mtcnn_finds_the_pasted_face_with_landmarks(mtcnn):
    frame, (x, y), (ph, pw, _) = _frame()
    blank = np.zeros_like(frame)
    dets = mtcnn.detect([frame, blank])
    assert dets[1] == []
    assert len(dets[0]) == 1
    d = dets[0][0]
    assert d.score > 0.95 and d.box.shape == (4,) and d.landmarks.shape == (5, 2)
    # The face box lies inside the pasted patch, and covers a good part of it.
    assert x - 5 <= d.box[0] < d.box[2] <= x + pw + 5 and y - 5 <= d.box[1] < d.box[3] <= y + ph + 5
    assert d.area > 0.15 * ph * pw
    eyes, nose, mouth = d.landmarks[:2], d.landmarks[2], d.landmarks[3:]
    assert eyes[0, 0] < eyes[1, 0]  # left eye (image left) first
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
    assert mtcnn.calls == 2


def test_large_frames_are_downscaled_for_detection_and_boxes_mapped_back(mtcnn):
    import cv2

    frame, _, _ = _frame()
    big = cv2.resize(frame, (1280, 960), interpolation=cv2.INTER_CUBIC)  # 4x, > max_side 640
    small_det = mtcnn.detect([frame])[0][0]
    big_det = mtcnn.detect([big])[0][0]
    # min_face_size is in source pixels: 40 px in the big frame is 20 px after the 2x downscale,
    # and the box comes back in big-frame pixels.
    np.testing.assert_allclose(big_det.box, small_det.box * 4, atol=10)
    np.testing.assert_allclose(big_det.landmarks, small_det.landmarks * 4, atol=10)


def test_refine_relocates_a_face_from_a_nearby_box(mtcnn):
    frame, _, _ = _frame(5)
    (truth,) = mtcnn.detect([frame])[0]
    w = truth.box[2] - truth.box[0]
    (moved,) = mtcnn.refine([frame], [truth.box + [0.15 * w, -0.1 * w, 0.15 * w, -0.1 * w]])
    assert moved.score > 0.95
    np.testing.assert_allclose(moved.landmarks, truth.landmarks, atol=0.06 * w)
    assert iou(moved.box, truth.box) > 0.8
    (nothing,) = mtcnn.refine([np.full_like(frame, 128)], [truth.box])
    assert nothing.score < 0.5
    assert mtcnn.refine([], []) == [] and FaceDetector.refine(mtcnn, [], []) is None


def test_frames_of_different_sizes_in_one_call(mtcnn):
    a, _, _ = _frame(3)
    b, _, _ = _frame(3, size=(400, 300))
    dets = mtcnn.detect([a, b, a])
    assert all(len(d) == 1 for d in dets)
    np.testing.assert_allclose(dets[0][0].box, dets[2][0].box)


def test_registry_plugs_in_a_detector_and_rejects_unknown_names():
    @register_detector("fixed-test")
    class Fixed(FaceDetector):
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def detect(self, frames):
            return [[Detection(np.array([1.0, 2, 3, 4]), np.zeros((5, 2)), 1.0)] for _ in frames]

    try:
        det = create_detector("fixed-test", device="cpu")
        assert type(det) is Fixed and det.name == "fixed-test" and det.kwargs == {"device": "cpu"}
    finally:
        DETECTORS.pop("fixed-test")
    with pytest.raises(ConfigError, match="unknown face detector 'nope'.*mtcnn"):
        create_detector("nope")


def _det(x, y, s=40.0, score=0.99):
    box = np.array([x, y, x + s, y + s], dtype=float)
    lm = np.array([[x + 0.3 * s, y + 0.4 * s], [x + 0.7 * s, y + 0.4 * s], [x + 0.5 * s, y + 0.6 * s],
                   [x + 0.35 * s, y + 0.8 * s], [x + 0.65 * s, y + 0.8 * s]])
    return Detection(box, lm, score)


def test_tracking_links_interpolates_and_ranks_largest_times_longest():
    clip_of = [0] * 8 + [1] * 8
    dets = {}
    for p in (0, 4, 7, 8, 12, 15):
        # Face A moves right 2 px/frame; face B is small and still; a one-off false positive at 12.
        dets[p] = [_det(10 + 2 * p, 50), _det(200, 20, s=20)]
    dets[12].append(_det(300, 200, s=25))
    tracks = track_faces(clip_of, dets, smooth=False)
    assert len(tracks) == 2  # the single false positive does not make a track
    main, other = tracks
    assert main.points[0].box[2] - main.points[0].box[0] == 40  # the big face first
    assert [p.pos for p in main.points] == list(range(16))
    for p in main.points:  # linear motion: interpolation is exact
        np.testing.assert_allclose(p.box[:2], [10 + 2 * p.pos, 50], atol=1e-9)
        np.testing.assert_allclose(p.landmarks[0], [10 + 2 * p.pos + 12, 50 + 16], atol=1e-9)
    assert [p.detected for p in main.points[:8]] == [True, False, False, False, True, False, False, True]
    assert all(p.box[0] == 200 for p in other.points)


def test_track_covers_only_clips_it_was_detected_in_and_holds_beyond_the_last_detection():
    clip_of = [0] * 4 + [1] * 4
    dets = {0: [_det(10, 10)], 2: [_det(14, 10)], 3: [], 4: [], 7: []}
    (track,) = track_faces(clip_of, dets, smooth=False)
    assert [p.pos for p in track.points] == [0, 1, 2, 3]
    assert track.points[1].box[0] == pytest.approx(12)
    assert track.points[3].box[0] == pytest.approx(14) and not track.points[3].detected


def test_smoothing_removes_box_jitter_but_keeps_landmarks():
    clip_of = [0] * 8
    rng = np.random.default_rng(0)
    dets = {p: [_det(50 + rng.normal(0, 2), 50)] for p in range(8)}
    raw = track_faces(clip_of, dets, smooth=False)[0]
    sm = track_faces(clip_of, dets, smooth=True)[0]
    jitter = lambda t: np.abs(np.diff([p.box[0] for p in t.points])).mean()  # noqa: E731
    assert jitter(sm) < 0.7 * jitter(raw)
    for a, b in zip(raw.points, sm.points):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_context_box_is_square_twice_the_face_integral_and_clipped():
    assert context_box([100, 100, 140, 160], 640, 480) == [60, 70, 180, 190]  # side 2*60, centred
    x0, y0, x1, y1 = context_box([0, 5, 50, 45], 320, 240)  # near the corner: clipped
    assert (x0, y0) == (0, 0) and x1 == 75 and y1 == 75
    assert context_box([300, 200, 330, 236], 320, 240)[2:] == [320, 240]
    # A fixed side gives equal crop sizes whatever the sub-pixel box position.
    boxes = [context_box([100 + f, 80 + f, 150 + f, 130 + f], 640, 480, side=101) for f in np.linspace(0, 1, 7)]
    assert {(b[2] - b[0], b[3] - b[1]) for b in boxes} == {(101, 101)}
    assert all(isinstance(v, int) for b in boxes for v in b)


def test_iou():
    a = np.array([0, 0, 10, 10.0])
    assert iou(a, a) == 1.0
    assert iou(a, np.array([5, 0, 15, 10.0])) == pytest.approx(50 / 150)
    assert iou(a, np.array([20, 20, 30, 30.0])) == 0.0
