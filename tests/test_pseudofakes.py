"""The pseudo-fake generators: each leaves its trace (measured), from its seed alone, without touching the
real entry, and the result reads through every specialist's view like a cache entry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from factories import memory_entry

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import normalise_audio
from dfpanel.pseudofakes.base import (
    create_pseudofake,
    list_pseudofakes,
    pseudofake_class,
)
from dfpanel.pseudofakes.masks import (
    MASK_PARAMS,
    draw_mask,
    face_geometry,
    frame_mask,
    render_mask,
)
from dfpanel.synth.audio import make_speech
from dfpanel.synth.manipulations import MANIPULATIONS
from dfpanel.views.ops import block_dct, luminance
from dfpanel.views.speech import clip_speech, entry_speech

BOX = (101.3, 61.7, 181.3, 151.7)  # memory_entry's default face box
SR = 16000
CLIP = [0, 1, 2, 3, 4, 5, 6, 7]
NAMES = ("audio_desync", "recompress", "self_blend", "temporal_blend")


def textured_frames(n: int, seed: int = 0, size=(320, 240), noise: float = 1.5) -> list[np.ndarray]:
    """A still scene: a colour gradient, a face-coloured ellipse with dark eyes and mouth, fine texture
    everywhere (the same in every frame) and a little sensor noise per frame."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([60 + 0.3 * xx, 80 + 0.2 * yy, 100 + 0.1 * (xx + yy)], -1)
    cx, cy = (BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2
    base[((xx - cx) / 38) ** 2 + ((yy - cy) / 46) ** 2 < 1] = (190, 150, 120)
    for px, py, r in ((cx - 16, cy - 13, 6), (cx + 16, cy - 13, 6), (cx, cy + 25, 8)):
        base[(xx - px) ** 2 + (yy - py) ** 2 < r * r] = (60, 40, 40)
    texture = cv2.GaussianBlur(rng.normal(0, 14, (h, w, 3)), (0, 0), 0.7)
    return [np.clip(base + texture + rng.normal(0, noise, (h, w, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def speech(seed: int = 0, seconds: float = 4.0, f0: float = 140.0) -> np.ndarray:
    return normalise_audio(make_speech(seed, seconds, f0, SR).audio)


def real(audio: np.ndarray | None = None, seed: int = 0):
    """8 frames at 1.00-1.28 s (inside make_speech's speech span), textured crops, optional audio."""
    entry, _ = memory_entry(frames=textured_frames(8, seed), t0=1.0, audio=audio)
    return entry


@pytest.fixture(scope="module")
def still():
    return real()


@pytest.fixture(scope="module")
def talking():
    return real(speech(0))


def grad(img: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def highpass_energy(rgb: np.ndarray, where: np.ndarray) -> float:
    lap = cv2.Laplacian(luminance(rgb).astype(np.float64), cv2.CV_64F)
    return float(np.mean(lap[where] ** 2))


# --------------------------------------------------------------------------- registry and masks


def test_the_four_generators_are_registered_with_traces_and_params():
    assert set(NAMES) <= set(list_pseudofakes())
    for name in NAMES:
        cls = pseudofake_class(name)
        assert cls.traces and set(cls.traces) <= set(MANIPULATIONS)
        assert cls.params and create_pseudofake(name).options == cls.params
        json.dumps(cls.params)  # plain values, as a YAML config gives them
    with pytest.raises(ConfigError, match="unknown option"):
        create_pseudofake("self_blend", no_such_option=1)


def test_face_mask_covers_the_inner_face_beyond_the_landmarks(still):
    frame = still.meta.frames[0]
    box, lm, _ = face_geometry(frame)
    hull_area = cv2.contourArea(cv2.convexHull(lm.astype(np.float32)))
    shape = still.crop(0).shape[:2]
    for seed in range(6):
        spec = draw_mask(np.random.default_rng(seed), MASK_PARAMS)
        mask = render_mask(shape, box, lm, spec)
        assert mask.dtype == np.float32 and mask.shape == shape and 0 <= mask.min() and mask.max() <= 1
        assert all(mask[int(round(y)), int(round(x))] > 0.5 for x, y in lm)  # eyes, nose, mouth inside
        assert (mask > 0.5).sum() > 1.8 * hull_area  # grown well past eyes-nose-mouth
        assert mask[:5].max() == 0 and mask[-5:].max() == 0  # nothing at the crop's edge (context)
    hard = render_mask(shape, box, lm, {**spec, "hard": True})
    assert set(np.unique(hard).tolist()) == {0.0, 1.0}
    bigger = render_mask(shape, box, lm, spec, scale=1.2)
    assert (bigger > 0.5).sum() > (mask > 0.5).sum()


# --------------------------------------------------------------------------- self_blend


def test_self_blend_changes_only_the_mask_and_leaves_a_boundary_on_its_edge(still):
    # colour jitter alone (no warp, contrast or frequency change), so the step at the boundary is all there is
    gen = create_pseudofake("self_blend", resample_p=0.0, relight_p=0.0, frequency_p=0.0, colour_shift=0.1,
                            max_shift=0.0, scale=(1.0, 1.0), contrast=0.0)
    for seed in range(3):
        pf = gen(still, [0], np.random.default_rng(seed))
        assert set(pf.masks) == {0}
        mask, before, after = pf.masks[0], still.crop(0), pf.entry.crop(0)
        assert np.array_equal(after[mask == 0], before[mask == 0])  # untouched outside the mask
        diff = after.astype(np.float64) - before.astype(np.float64)
        assert np.abs(diff[mask > 0.5]).mean() > 4
        # The difference's edges are the mask's edges: smoothed difference gradient follows |grad mask|.
        dgrad = sum(grad(cv2.GaussianBlur(diff[..., c], (0, 0), 2.0)) for c in range(3))
        mgrad = grad(cv2.GaussianBlur(mask.astype(np.float64), (0, 0), 2.0))
        assert np.corrcoef(dgrad.ravel(), mgrad.ravel())[0, 1] > 0.6
        # and nowhere else: the difference is flat inside the mask, away from its edge
        ring, core = mgrad > 0.5 * mgrad.max(), (mask > 0.5 * mask.max()) & (mgrad < 0.1 * mgrad.max())
        assert core.sum() > 100 and dgrad[ring].mean() > 3 * dgrad[core].mean()


def test_self_blend_resampling_drops_high_frequencies_inside_the_face(still):
    gen = create_pseudofake("self_blend", resample_p=1.0, resample_factor=(0.5, 0.6), frequency_p=0.0,
                            relight_p=0.0, blend_ratio=(1.0, 1.0))
    for seed in range(3):
        pf = gen(still, [0], np.random.default_rng(seed))
        inside = pf.masks[0] > 0.9
        assert pf.details["resample"] and inside.sum() > 300
        assert highpass_energy(pf.entry.crop(0), inside) < 0.6 * highpass_energy(still.crop(0), inside)


def test_self_blend_renoise_restores_the_fine_residual_the_resampling_took(still):
    # A resampled copy is smoother than the crop round it (a noise gap no re-noised generator leaves);
    # renoise puts the fine residual back to the crop's own level, from the draw's seed alone.
    from dfpanel.pseudofakes.blend import noise_sigma

    box, _, _ = face_geometry(still.meta.frames[0])
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)

    def inner(img):  # a cheek-to-cheek strip between the eyes and the mouth: skin texture, no feature edges
        return img[cy - 4 : cy + 12, cx - 12 : cx + 12].astype(np.float32) / 255.0

    opts = dict(resample_p=1.0, resample_factor=(0.5, 0.5), frequency_p=0.0, relight_p=0.0, blend_ratio=(1.0, 1.0),
                mask_blur=(0.02, 0.02), mask_hard_p=0.0, mask_morph=(0.06, 0.06))
    want, smooth_levels = noise_sigma(inner(still.crop(0))).mean(), []
    for seed in range(4):
        smooth = create_pseudofake("self_blend", renoise_p=0.0, **opts)(still, [0], np.random.default_rng(seed))
        renoised = create_pseudofake("self_blend", renoise_p=1.0, **opts)(still, [0], np.random.default_rng(seed))
        again = create_pseudofake("self_blend", renoise_p=1.0, **opts)(still, [0], np.random.default_rng(seed))
        assert "noise_seed" not in smooth.details and renoised.details["renoise"]
        smooth_levels.append(noise_sigma(inner(smooth.entry.crop(0))).mean())
        assert smooth_levels[-1] < want  # (nearest-neighbour resizing keeps some of it)
        assert abs(noise_sigma(inner(renoised.entry.crop(0))).mean() / want - 1) < 0.12
        assert np.array_equal(renoised.entry.crop(0), again.entry.crop(0))
    assert np.mean(smooth_levels) < 0.8 * want


def test_self_blend_on_a_clip_draws_once_for_every_frame(still):
    pf = create_pseudofake("self_blend")(still, CLIP[:4], np.random.default_rng(3))
    assert sorted(pf.masks) == CLIP[:4]
    # the frames share box and landmarks, so one draw gives one mask
    assert all(np.array_equal(pf.masks[0], pf.masks[p]) for p in CLIP[:4])


# --------------------------------------------------------------------------- recompress

IJG_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], float)  # fmt: skip


def quant_steps(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMA * scale + 50) / 100), 1, 255)


def on_quant_lattice(rgb: np.ndarray, mask: np.ndarray, grid, quality: int) -> float:
    """Share of nonzero-quantised AC coefficients of blocks wholly inside the mask (on `grid`) that lie
    within 0.15 steps of a multiple of the JPEG quantisation step."""
    gx, gy = grid
    h8, w8 = (mask.shape[0] - gy) // 8 * 8, (mask.shape[1] - gx) // 8 * 8
    y = torch.from_numpy(luminance(rgb)[gy : gy + h8, gx : gx + w8].astype(np.float32))
    coef = block_dct(y).numpy().reshape(64, -1)
    inside = (mask[gy : gy + h8, gx : gx + w8].reshape(h8 // 8, 8, w8 // 8, 8) >= 0.999).all(axis=(1, 3)).reshape(-1)
    c = coef[1:, inside] / quant_steps(quality)[1:, None]
    k = np.round(c)
    return float(np.mean(np.abs(c - k)[k != 0] < 0.15))


@pytest.mark.parametrize("shift_p", [1.0, 0.0])
def test_recompress_is_bit_exact_outside_and_quantised_inside(still, shift_p):
    gen = create_pseudofake("recompress", quality=(25, 25), double_p=0.0, grid_shift_p=shift_p)
    for seed in range(3):
        pf = gen(still, [0], np.random.default_rng(seed))
        mask, before, after = pf.masks[0], still.crop(0), pf.entry.crop(0)
        assert np.array_equal(after[mask == 0], before[mask == 0]) and (mask == 0).mean() > 0.3
        assert (mask > 0.5).mean() > 0.05 and not np.array_equal(after, before)
        grid = pf.details["grid"]["0"]
        source_grid = list(still.meta.grid_offset[0])
        assert (grid != source_grid) if shift_p else (grid == source_grid)
        assert on_quant_lattice(after, mask, grid, 25) > 0.9
        assert on_quant_lattice(before, mask, grid, 25) < 0.5


def test_recompress_can_compress_twice(still):
    pf = create_pseudofake("recompress", double_p=1.0)(still, [0], np.random.default_rng(0))
    assert len(pf.details["jpeg_quality"]) == 2 and all(15 <= q <= 75 for q in pf.details["jpeg_quality"])


# --------------------------------------------------------------------------- temporal_blend


def test_temporal_blend_flickers_colour_and_jitters_landmarks(still):
    pf = create_pseudofake("temporal_blend")(still, CLIP, np.random.default_rng(0))
    assert sorted(pf.masks) == CLIP

    def colour_steps(entry):
        means = np.array([entry.crop(p)[pf.masks[p] > 0.5].reshape(-1, 3).mean(axis=0) for p in CLIP])
        return np.abs(np.diff(means, axis=0)).mean()

    def landmark_accel(entry):
        lms = np.array([entry.meta.frames[p].landmarks for p in CLIP])
        return np.linalg.norm(np.diff(lms, n=2, axis=0), axis=-1).mean()

    assert colour_steps(pf.entry) > 3 * colour_steps(still) + 0.5
    assert landmark_accel(still) == 0 and landmark_accel(pf.entry) > 0.3
    # boxes and the base entry's meta are unchanged
    assert [f.box for f in pf.entry.meta.frames] == [f.box for f in still.meta.frames]
    assert still.meta.frames[0].landmarks != pf.entry.meta.frames[0].landmarks
    assert pf.entry.meta is not still.meta


# --------------------------------------------------------------------------- audio_desync


def test_audio_desync_rolls_the_track_and_keeps_speech_in_the_clip(talking):
    gen = create_pseudofake("audio_desync", replace_p=0.0)
    assert gen.applies(talking, CLIP)
    for seed in range(3):
        pf = gen(talking, CLIP, np.random.default_rng(seed))
        new, old = pf.entry.audio, talking.audio
        assert pf.masks is None and new.dtype == np.float32 and len(new) == len(old)
        assert np.array_equal(normalise_audio(new), new)
        k = pf.details["shift_samples"]
        assert 0.2 * SR <= abs(k) <= 1.0 * SR and np.array_equal(new, np.roll(old, k))
        assert clip_speech(pf.entry, CLIP)
        assert [f.crop_box for f in pf.entry.meta.frames] == [f.crop_box for f in talking.meta.frames]


def test_audio_desync_replaces_the_voice_by_the_donors(talking):
    other = real(speech(7, 3.0, 230.0), seed=1)
    asked = []

    def donor(rng):
        asked.append(rng)
        return other

    pf = create_pseudofake("audio_desync", replace_p=1.0)(talking, CLIP, np.random.default_rng(0), donor)
    assert asked and pf.details["mode"] == "replace" and pf.details["donor"] == "synthetic/v"
    new = pf.entry.audio
    assert len(new) == len(talking.audio) and np.array_equal(normalise_audio(new), new)
    # a stretch of the new track is the donor's voice (scaled), not the original's
    off = int(round(pf.details["donor_offset_s"] * SR))
    t0, t1 = entry_speech(other).span  # the donor's speech, its silence trimmed, looped from the offset
    voice = other.audio[int(t0 * SR) : int(np.ceil(t1 * SR))]
    looped = np.tile(voice, 1 + (off + len(new)) // len(voice))[off : off + len(new)]
    seg = new[:4000]
    corr_donor = np.corrcoef(new, looped)[0, 1]
    assert corr_donor > 0.99
    assert abs(np.corrcoef(seg, talking.audio[:4000])[0, 1]) < 0.5
    # loudness matched to the original's speech
    assert 0.5 < np.sqrt(np.mean(new ** 2)) / np.sqrt(np.mean(talking.audio ** 2)) < 2
    # no donor (or none to give): a shift instead
    none = create_pseudofake("audio_desync", replace_p=1.0)(talking, CLIP, np.random.default_rng(0), lambda rng: None)
    assert none.details["mode"] == "shift"


def test_audio_desync_does_not_apply_to_a_silent_clip(still):
    quiet = real(np.zeros(4 * SR, np.float32))
    gen = create_pseudofake("audio_desync")
    assert not gen.applies(still, CLIP) and not gen.applies(quiet, CLIP)
    with pytest.raises(ValueError, match="no speech"):
        gen(quiet, CLIP, np.random.default_rng(0))


# --------------------------------------------------------------------------- every generator


def sample(name: str):
    return CLIP if pseudofake_class(name).sample_kind == "clip" else [0]


def snapshot(pf) -> bytes:
    parts = [pf.entry.crop(p).tobytes() for p in range(8)]
    parts += [m.tobytes() for _, m in sorted((pf.masks or {}).items())]
    parts += [b"" if pf.entry.audio is None else pf.entry.audio.tobytes(), json.dumps(pf.details, sort_keys=True).encode(),
              json.dumps([f.landmarks for f in pf.entry.meta.frames]).encode()]
    return b"|".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes_other_seed_other_draws_and_the_real_untouched(talking, name):
    crops = [talking.crop(p).copy() for p in range(8)]
    audio, landmarks = talking.audio.copy(), [list(map(list, f.landmarks)) for f in talking.meta.frames]
    other = real(speech(3), seed=2)

    def donor(rng):
        return other

    gen = create_pseudofake(name)
    one = gen(talking, sample(name), np.random.default_rng(5), donor)
    two = gen(talking, sample(name), np.random.default_rng(5), donor)
    three = gen(talking, sample(name), np.random.default_rng(6), donor)
    assert snapshot(one) == snapshot(two)
    assert one.details != three.details and snapshot(one) != snapshot(three)
    json.dumps(one.details)
    assert all(np.array_equal(talking.crop(p), crops[p]) for p in range(8))
    assert np.array_equal(talking.audio, audio) and [f.landmarks for f in talking.meta.frames] == landmarks
    for pos, mask in (one.masks or {}).items():
        assert mask.dtype == np.float32 and mask.shape == talking.crop(pos).shape[:2]
        assert 0 <= mask.min() and mask.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_pseudofakes_go_through_every_specialist_view(talking, name):
    from dfpanel.models.specialists.base import specialist_view

    pf = create_pseudofake(name)(talking, sample(name), np.random.default_rng(1))
    for spec in ("bg", "rr", "cm", "tm", "av"):
        view = specialist_view(spec, backbone="tiny", image_size=64)
        positions = CLIP if spec in ("tm", "av") else sample(name)[:1]
        want, got = view(talking, positions), view(pf.entry, positions)
        assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in want.items()}
        assert all(torch.isfinite(v.float()).all() for v in got.values())


def test_frame_mask_reads_the_entry(still):
    spec = draw_mask(np.random.default_rng(0), MASK_PARAMS)
    box, lm, _ = face_geometry(still.meta.frames[2])
    assert np.array_equal(frame_mask(still, 2, spec), render_mask(still.crop(2).shape[:2], box, lm, spec))
