"""The view helpers: block DCT, native grid-snapped windows, audio/frame alignment, crops, filters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from factories import memory_entry

from dfpanel.views import ops as views


def test_block_dct_matches_scipy_dct_ii_ortho():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(2, 16, 24)).astype(np.float32) * 50
    img[0, :8, :8] = 7.0  # a flat block: only its DC term, 8 * value
    coef = views.block_dct(torch.from_numpy(img)).numpy()
    assert coef.shape == (2, 64, 2, 3)
    for b in range(2):
        for by in range(2):
            for bx in range(3):
                block = img[b, by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8].astype(np.float64)
                want = scipy.fft.dctn(block, type=2, norm="ortho")
                np.testing.assert_allclose(coef[b, :, by, bx].reshape(8, 8), want, atol=2e-3)
    assert coef[0, 0, 0, 0] == pytest.approx(56.0, abs=1e-4)
    assert np.abs(coef[0, 1:, 0, 0]).max() < 1e-4


def test_block_dct_rejects_sides_off_the_grid():
    with pytest.raises(ValueError, match="multiples of 8"):
        views.block_dct(torch.zeros(12, 16))


def _native_luma(frame, sx, sy, size):
    return (views.luminance(frame[sy : sy + size, sx : sx + size]) - 128.0) / 128.0


def test_cm_view_is_cut_on_the_source_grid_with_native_pixels():
    from dfpanel.models.specialists.cm import CMSpecialist

    entry, frames = memory_entry(box=(101.3, 63.7, 181.3, 151.7))
    f = entry.meta.frames[3]
    assert f.crop_box[0] % 8 and f.crop_box[1] % 8  # the stored crop starts off the grid
    window, (sx, sy) = views.native_window(entry, 3, 64)
    assert sx % 8 == 0 and sy % 8 == 0
    assert abs((sx + 32) - (f.box[0] + f.box[2]) / 2) <= 4 and abs((sy + 32) - (f.box[1] + f.box[3]) / 2) <= 4
    np.testing.assert_array_equal(window, frames[3][sy : sy + 64, sx : sx + 64])  # untouched pixels

    cfg = {"image_size": 64, "cm_size": 64, "face_scale": 1.3}
    inputs = CMSpecialist.build_view(entry, [3], cfg)
    np.testing.assert_allclose(inputs["luma"][0].numpy(), _native_luma(frames[3], sx, sy, 64), atol=1e-6)
    np.testing.assert_allclose(inputs["dct"].numpy(), views.block_dct(inputs["luma"][0]).numpy(), atol=1e-6)


def test_cm_window_larger_than_the_crop_is_reflect_padded_around_native_pixels():
    entry, frames = memory_entry(box=(101.3, 61.7, 141.3, 101.7))  # crop about 80 x 80
    f = entry.meta.frames[0]
    window, (sx, sy) = views.native_window(entry, 0, 128)
    assert window.shape == (128, 128, 3) and sx % 8 == 0 and sy % 8 == 0
    cx0, cy0, cx1, cy1 = f.crop_box
    inner = window[cy0 - sy : cy1 - sy, cx0 - sx : cx1 - sx]
    np.testing.assert_array_equal(inner, frames[0][cy0:cy1, cx0:cx1])
    # reflect (not edge, not zeros): the row above the crop mirrors the crop's second row
    np.testing.assert_array_equal(window[cy0 - sy - 1, cx0 - sx : cx1 - sx], frames[0][cy0 + 1, cx0:cx1])


@pytest.mark.parametrize("fps,click_frame,t0,audio_start", [(25.0, 5, 2.0, 0.5), (30.0, 2, 0.4, -0.1), (24.0, 7, 1.0, 0.0)])
def test_mel_click_lands_in_the_columns_of_its_frame(fps, click_frame, t0, audio_start):
    audio = np.zeros(int(16000 * 4), dtype=np.float32)
    click_time = t0 + click_frame / fps + 0.5 / fps  # middle of the frame's duration
    at = int(round((click_time - audio_start) * 16000))
    audio[at : at + 80] = np.random.default_rng(0).uniform(-0.9, 0.9, 80)
    entry, _ = memory_entry(n_frames=8, fps=fps, t0=t0, audio=audio, audio_start=audio_start)
    mel, mask = views.clip_log_mel(entry, list(range(8)), n_mels=80, per_frame=4)
    assert mel.shape == (1, 80, 32) and float(mask) == 1.0
    energy = mel[0].exp().sum(dim=0)
    assert int(energy.argmax()) // 4 == click_frame


def test_no_audio_gives_zeros_and_mask_zero():
    entry, _ = memory_entry(audio=None)
    mel, mask = views.clip_log_mel(entry, [0, 1, 2, 3], n_mels=80, per_frame=4)
    assert mel.shape == (1, 80, 16) and float(mask) == 0.0 and not mel.any()


def test_clip_beyond_the_end_of_the_audio_track_counts_as_no_audio():
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)  # 1 s of sound
    entry, _ = memory_entry(n_frames=40, fps=25.0, audio=audio)  # 1.6 s of video
    inside, mask_inside = views.clip_log_mel(entry, list(range(8)), n_mels=80, per_frame=4)
    beyond, mask_beyond = views.clip_log_mel(entry, list(range(30, 38)), n_mels=80, per_frame=4)
    assert float(mask_inside) == 1.0 and inside.abs().sum() > 0
    assert float(mask_beyond) == 0.0 and not beyond.any()


def test_mel_filterbank_puts_a_tone_in_the_right_band():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel = views.log_mel(tone, 4000, 160, 10, n_mels=80)
    band = int(mel.mean(dim=1).argmax())
    edges = views.mel_to_hz(np.linspace(views.hz_to_mel(20), views.hz_to_mel(8000), 82))
    assert edges[band] < 1000 < edges[band + 2]


def test_mouth_crop_is_centred_on_the_mouth_landmarks():
    frame = np.full((240, 320, 3), 90, dtype=np.uint8)
    yy, xx = np.mgrid[:240, :320]
    mouth = (140.0, 131.0)  # centre of the two mouth corners below
    frame[(xx - mouth[0]) ** 2 + (yy - mouth[1]) ** 2 < 36] = (255, 0, 0)
    lms = [[120, 95], [160, 95], [140, 110], [128, 131], [152, 131]]
    entry, _ = memory_entry(n_frames=1, frames=[frame], box=(100.0, 70.0, 180.0, 160.0), landmarks=lms)
    crop = views.mouth_crop(entry, 0, 32).numpy()  # (3, 32, 32)
    assert crop[0, 15:17, 15:17].min() > 0.9 and crop[1, 15:17, 15:17].max() < 0.1
    assert crop[0, 0, 0] < 0.5 and crop[0, -1, -1] < 0.5


def test_face_crop_and_context_crop_cover_the_face_and_its_surroundings():
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[70:160, 100:180] = (0, 200, 0)  # the face box painted green
    entry, _ = memory_entry(n_frames=1, frames=[frame], box=(100.0, 70.0, 180.0, 160.0))
    face = views.face_crop(entry, 0, 64, scale=1.0).numpy()
    context = views.context_crop(entry, 0, 64).numpy()
    # the square crop of the 80x90 box is 90x90: all but 1/9 of it is face
    assert 0.85 < (face[1] > 0.5).mean() < 0.95
    # the 2x crop (180x180) holds the 80x90 face in its middle: 22% of it
    assert 0.17 < (context[1] > 0.5).mean() < 0.27
    assert context[1, 32, 32] > 0.75 and context[1, 1, 1] < 0.1


def test_landmarks_are_normalised_to_the_clip_face_box():
    box = (100.0, 70.0, 180.0, 160.0)
    lms = [[100, 70], [180, 160], [140, 115], [120, 140], [160, 140]]
    entry, _ = memory_entry(n_frames=3, box=box, landmarks=lms)
    traj = views.landmarks_in_box(entry, [0, 1, 2]).numpy()
    assert traj.shape == (3, 10)
    np.testing.assert_allclose(traj[0, :4], [0, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(traj[0, 4:6], [0.5, 0.5], atol=1e-6)


def test_srm_residuals_vanish_on_smooth_ramps_but_not_on_noise():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = 3.0 * xx + 2.0 * yy + 10
    res = views.srm_residuals(ramp)
    assert res.shape == (3, 32, 32)
    assert res[:, 3:-3, 3:-3].abs().max() < 1e-4
    noise = views.srm_residuals(torch.from_numpy(np.random.default_rng(0).normal(128, 20, (32, 32)).astype(np.float32)))
    assert noise.abs().mean() > 0.1


def test_srm_residuals_are_a_reflect_padded_correlation_with_the_kernels():
    """The OpenCV path equals torch's reflect-pad + conv2d (what RR's weights were first trained on),
    borders included, on odd shapes too."""
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    kernels = torch.from_numpy(views.SRM_KERNELS)[:, None]
    for shape in ((33, 47), (64, 64), (8, 9)):
        gray = torch.from_numpy(rng.normal(128, 40, shape).astype(np.float32))
        ref = F.conv2d(F.pad(gray[None, None], (2, 2, 2, 2), mode="reflect"), kernels)[0].clamp_(-3, 3) / 3
        got = views.srm_residuals(gray)
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert torch.allclose(got, ref, atol=1e-5)


def test_log_spectrum_peaks_at_the_period_of_a_periodic_pattern():
    x = torch.arange(64.0)
    img = 100 + 50 * torch.cos(2 * np.pi * x / 4)[None, :].expand(64, 64)
    spec = views.log_spectrum(img)
    row = spec[32]
    peak = int(row.argmax())
    assert abs(peak - 32) == 16  # period 4 px on 64 px: frequency bin 16 either side of DC


def test_cut_reflects_outside_and_copies_inside():
    img = np.arange(30, dtype=np.uint8).reshape(5, 6)
    out = views.cut(img, -2, 1, 5, 3)
    np.testing.assert_array_equal(out[:, 2:], img[1:4, 0:3])
    np.testing.assert_array_equal(out[:, 0], img[1:4, 2])  # reflect about column 0


def test_fit_clip_pads_short_clips_with_the_last_frame():
    assert views.fit_clip([4, 5, 6], 5) == [4, 5, 6, 6, 6]
    assert views.fit_clip(range(10), 4) == [0, 1, 2, 3]
