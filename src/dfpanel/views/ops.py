"""Shared helpers that cut the specialists' views out of a face-track cache entry.

Every specialist's `view()` is built from these, so training and detection see identical inputs.
Conventions:
  - Boxes are [x0, y0, x1, y1] floats. `FrameRecord.box` is in source pixels; the stored crop starts at
    `crop_box[:2]`, so a box in crop pixels is `box - crop_box[:2]` (see `box_in_crop`).
  - Images come out as float32 tensors in [0, 1], channels first. ImageNet normalisation belongs to
    the backbone (it depends on the backbone's pretrained config), not to the view.
  - Nothing here downloads or caches anything; all are pure functions of their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch

from dfpanel.errors import DataError
from dfpanel.extract.compact import grid_window_origin

AUDIO_RATE = 16000
MIN_AUDIO_COVERAGE = 0.5  # a clip whose span the audio covers less than this counts as having none
BLOCK = 8  # the 8x8 block grid of JPEG / MPEG-family codecs

# --------------------------------------------------------------------------- boxes and crops


def box_in_crop(box: Sequence[float], crop_box: Sequence[int], scale: float = 1.0) -> np.ndarray:
    """A source-pixel box moved into the stored crop's pixel frame (`scale` crop px per source px)."""
    b = np.asarray(box, dtype=np.float64)
    return (b - np.array([crop_box[0], crop_box[1], crop_box[0], crop_box[1]], dtype=np.float64)) * scale


def points_in_crop(points, crop_box: Sequence[int], scale: float = 1.0) -> np.ndarray:
    """Source-pixel points (N, 2) moved into the stored crop's pixel frame."""
    return (np.asarray(points, dtype=np.float64) - np.asarray(crop_box[:2], dtype=np.float64)) * scale


def square_box(box: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """Square box centred on `box`, side = scale x its longer side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = scale * max(x1 - x0, y1 - y0, 1.0) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def cut(image: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """image[y0:y0+height, x0:x0+width], reflect-padded where the window leaves the image.

    Pixels inside the image are copied untouched (no interpolation)."""
    h, w = image.shape[:2]
    pads = ((max(0, -y0), max(0, y0 + height - h)), (max(0, -x0), max(0, x0 + width - w)))
    inside = image[max(0, y0) : min(h, y0 + height), max(0, x0) : min(w, x0 + width)]
    if inside.size == 0:  # window entirely outside the crop: nothing to reflect
        return np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    if any(p for pair in pads for p in pair):
        extra = ((0, 0),) * (image.ndim - 2)
        # numpy's reflect handles pads wider than the image by reflecting repeatedly.
        inside = np.pad(inside, pads + extra, mode="reflect" if min(inside.shape[:2]) > 1 else "edge")
    return inside


MILD_SHRINK = 0.8  # compact layers: a shrink to no less than this is bilinear (see cut_resized)


def cut_resized(image: np.ndarray, box: Sequence[float], size: int, prefiltered: bool = False) -> np.ndarray:
    """The `box` region of `image` (reflect-padded outside) resized to size x size.

    `prefiltered`: the image is a compact cache layer, already area-downscaled to about the views'
    resolution; a mild shrink of it (to >= MILD_SHRINK) is then bilinear, 6x faster than INTER_AREA's
    non-integer path and as sharp. A full crop (native pixels) is always shrunk with INTER_AREA."""
    x0, y0 = int(math.floor(box[0])), int(math.floor(box[1]))
    x1, y1 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    region = cut(image, x0, y0, max(1, x1 - x0), max(1, y1 - y0))
    if region.shape[0] == size and region.shape[1] == size:
        return np.ascontiguousarray(region)
    shrinking = region.shape[0] > size or region.shape[1] > size
    if shrinking and prefiltered and size >= MILD_SHRINK * max(region.shape[:2]):
        shrinking = False
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def face_crop(entry, pos: int, size: int, scale: float = 1.3) -> torch.Tensor:
    """The face (square box, `scale` x the face box) resized to size x size, (3, S, S) in [0, 1]."""
    return to_tensor(cut_source_box(entry, pos, square_box(entry.meta.frames[pos].box, scale), size))


def cut_source_box(entry, pos: int, want: Sequence[float], size: int) -> np.ndarray:
    """The source-pixel box `want` of frame position `pos` resized to size x size, cut from the stored
    image that holds it (a compact entry's face layer when it covers the box, else the crop)."""
    image, (ox, oy), s = entry.region(pos, want)
    box = (np.asarray(want, dtype=np.float64) - [ox, oy, ox, oy]) * s
    return cut_resized(image, box, size, prefiltered=entry.meta.frames[pos].face_file is not None)


def context_crop(entry, pos: int, size: int, scale: float = 2.0) -> torch.Tensor:
    """The face's surroundings: a square box `scale` x the face box, resized to size x size."""
    return face_crop(entry, pos, size, scale)


def mouth_crop(entry, pos: int, size: int, scale: float = 1.8) -> torch.Tensor:
    """Square mouth crop located from the mouth-corner landmarks (indices 3, 4), (3, S, S)."""
    f = entry.meta.frames[pos]
    lm = np.asarray(f.landmarks, dtype=np.float64)
    left, right = lm[3], lm[4]
    centre = (left + right) / 2
    face_w = max(f.box[2] - f.box[0], 1.0)
    # Mouth width times scale, but never tinier than a third of the face (closed/occluded mouths).
    side = max(scale * float(np.linalg.norm(right - left)), 0.35 * face_w)
    box = [centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2]
    return to_tensor(cut_source_box(entry, pos, box, size))


def native_window(entry, pos: int, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """size x size native pixels centred on the face, origin snapped to the source 8x8 block grid.

    Returns the RGB window (uint8, never resampled; reflect-padded where the stored crop is smaller)
    and its origin in source pixels (both multiples of 8). A compact cache stores the same window of
    InputSpec.native_size (clipped to the crop box), so any size up to that cuts identical pixels."""
    f = entry.meta.frames[pos]
    if f.native_file is not None:
        stored = (entry.meta.input_spec or {}).get("native_size")
        if stored is not None and size > int(stored):
            raise DataError(f"{entry.folder}: the cache keeps {stored} px of native pixels round each face, the view "
                            f"asks for {size}; re-extract with --native-size {size} (or more), or use a smaller cm_size/rr_size")
    sx, sy = grid_window_origin(f.box, size)
    image, (ox, oy) = entry.native(pos)
    window = cut(image, sx - ox, sy - oy, size, size)
    return np.ascontiguousarray(window), (sx, sy)


def landmarks_in_box(entry, positions: Sequence[int]) -> torch.Tensor:
    """Landmark trajectories (T, 10), each frame's 5 (x, y) in units of the clip's mean face box:
    (0, 0) its top-left, (1, 1) its bottom-right. A shared reference keeps head motion and jitter."""
    frames = [entry.meta.frames[p] for p in positions]
    boxes = np.array([fr.box for fr in frames], dtype=np.float64)
    ref = boxes.mean(axis=0)
    wh = np.maximum(ref[2:] - ref[:2], 1.0)
    lms = np.array([fr.landmarks for fr in frames], dtype=np.float64)  # (T, 5, 2)
    return torch.from_numpy(((lms - ref[:2]) / wh).reshape(len(frames), -1)).float()


def fit_clip(positions: Sequence[int], clip_len: int) -> list[int]:
    """Exactly clip_len positions: the first clip_len, or the last one repeated for a short clip."""
    pos = list(positions)[:clip_len]
    if not pos:
        raise ValueError("a clip needs at least one frame position")
    return pos + [pos[-1]] * (clip_len - len(pos))


# --------------------------------------------------------------------------- luminance, DCT, SRM, spectra


def luminance(rgb: np.ndarray | torch.Tensor):
    """BT.601 luma (what JPEG/MPEG code) of HxWx3 RGB, same value range as the input."""
    if isinstance(rgb, torch.Tensor):
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    rgb = rgb.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@lru_cache(maxsize=4)
def dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """Orthonormal DCT-II matrix D: D @ x is scipy.fft.dct(x, norm="ortho")."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return torch.from_numpy(d).float()


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II (orthonormal) of every 8x8 block of (..., H, W), H and W multiples of 8.

    Returns (..., 64, H/8, W/8): channel u*8+v holds coefficient (row frequency u, column frequency v)."""
    *lead, h, w = x.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"block_dct needs sides that are multiples of {BLOCK}, got {h}x{w}")
    d = dct_matrix(BLOCK).to(x.dtype)
    blocks = x.reshape(*lead, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(-3, -2)  # (..., bh, bw, 8, 8)
    coef = d @ blocks @ d.T
    return coef.reshape(*lead, h // BLOCK, w // BLOCK, BLOCK * BLOCK).movedim(-1, -3)


# Three classic SRM high-pass kernels (Fridrich & Kodovsky 2012; as used by Zhou et al. 2018),
# normalised so each residual is in pixel units.
SRM_KERNELS = np.stack(
    [
        np.array(
            [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
            dtype=np.float32,
        )
        / 12.0,
        np.pad(np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=np.float32) / 4.0, 1),
        np.pad(np.array([[0, 0, 0], [1, -2, 1], [0, 0, 0]], dtype=np.float32) / 2.0, 1),
    ]
)


def srm_residuals(gray: torch.Tensor, clip: float = 3.0) -> torch.Tensor:
    """SRM residuals of a (H, W) image in 0..255 units -> (3, H, W), truncated at +-clip, scaled to [-1, 1].

    Reflect-padded correlation with each kernel: OpenCV's filter2D (BORDER_REFLECT_101 is torch's
    "reflect"), 3.4x faster than torch's conv2d in a loader worker; equal to it within 1e-5."""
    a = np.ascontiguousarray(gray.detach().cpu().numpy(), dtype=np.float32)
    out = np.stack([cv2.filter2D(a, -1, k, borderType=cv2.BORDER_REFLECT_101) for k in SRM_KERNELS])
    return torch.from_numpy(out).to(gray.dtype).clamp_(-clip, clip) / clip


@lru_cache(maxsize=8)
def _hann_2d(h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.outer(torch.hann_window(h, periodic=False, dtype=dtype), torch.hann_window(w, periodic=False, dtype=dtype))


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred log-magnitude 2-D spectrum of (H, W), Hann-windowed against edge leakage, standardised."""
    h, w = x.shape[-2:]
    win = _hann_2d(h, w, x.dtype)
    mag = torch.fft.fftshift(torch.fft.fft2((x - x.mean()) * win).abs(), dim=(-2, -1))
    s = torch.log1p(mag)
    return (s - s.mean()) / (s.std() + 1e-6)


# --------------------------------------------------------------------------- audio


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = AUDIO_RATE, n_fft: int = 512, n_mels: int = 80, fmin: float = 20.0, fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, area-normalised (Slaney), as float32."""
    fmax = fmax or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return torch.from_numpy(fb).float()


def log_mel(
    audio: np.ndarray,
    first_sample: float,
    hop: int,
    n_columns: int,
    n_mels: int = 80,
    n_fft: int = 512,
    win_length: int = 400,
    sample_rate: int = AUDIO_RATE,
) -> torch.Tensor:
    """Log-mel spectrogram (n_mels, n_columns) whose column j covers samples
    [first_sample + j*hop, first_sample + (j+1)*hop) (its analysis window is centred there).

    `first_sample` may be fractional or outside the audio; samples outside are silence."""
    start = int(round(first_sample + hop / 2 - n_fft / 2))
    length = n_fft + (n_columns - 1) * hop
    seg = np.zeros(length, dtype=np.float32)
    lo, hi = max(0, start), min(len(audio), start + length)
    if hi > lo:
        seg[lo - start : hi - start] = audio[lo:hi]
    spec = torch.stft(
        torch.from_numpy(seg),
        n_fft=n_fft,
        hop_length=hop,
        win_length=win_length,
        window=torch.hann_window(win_length),
        center=False,
        return_complex=True,
    )
    power = spec.abs().pow(2)[:, :n_columns]
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ power
    return torch.log(mel + 1e-6)


def clip_log_mel(entry, positions: Sequence[int], n_mels: int = 80, per_frame: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel (1, n_mels, T*per_frame) covering exactly the time span of the clip's T frames
    ([t_first, t_last + frame duration)), per_frame columns per frame; and the audio mask (scalar).

    Without audio, or where the audio track covers under half the clip's span: zeros and mask 0 (the
    model must abstain from audio evidence, not invent it)."""
    n_cols = len(positions) * per_frame
    if entry.meta.audio is None or entry.audio is None or len(entry.audio) == 0:
        return torch.zeros(1, n_mels, n_cols), torch.tensor(0.0)
    times = [entry.meta.frames[p].time for p in positions]
    distinct = sorted(set(times))
    if len(distinct) > 1:
        frame_dur = (distinct[-1] - distinct[0]) / (len(distinct) - 1)
    else:
        frame_dur = 1.0 / max(entry.meta.fps, 1e-3)
    sr = entry.meta.audio.sample_rate
    hop = max(1, int(round(frame_dur * sr / per_frame)))
    first = (times[0] - entry.meta.audio.start_time) * sr
    # A clip the audio track does not cover (tracks often end early) is a clip without audio:
    # silence there says nothing about the voice, so it must not count as evidence.
    covered = min(len(entry.audio), first + n_cols * hop) - max(0.0, first)
    if covered < MIN_AUDIO_COVERAGE * n_cols * hop:
        return torch.zeros(1, n_mels, n_cols), torch.tensor(0.0)
    mel = log_mel(entry.audio, first, hop, n_cols, n_mels=n_mels, sample_rate=sr)
    return mel[None], torch.tensor(1.0)
