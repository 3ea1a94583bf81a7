"""Compact per-frame storage: what the views read and no more (InputSpec.store = "compact").

A full context crop of a 1080p face is ~600-800 px square; kept lossless that is ~200 KB per frame.
The views read two things from it:
  - the face, its context and the mouth, resized to the specialist's image size (224 px for the
    full presets): a copy scaled so the face box side is at most `face_px` holds every pixel they use,
    and a high-quality lossy codec (WebP) there is visually lossless;
  - CM and RR read native pixels round the face on the source 8x8 grid (`native_window`): those must be
    bit-exact, so `native_size` x `native_size` of them are stored beside it, lossless (WebP lossless).

Files of one frame n in an entry: `context/n.webp` (FrameRecord.file; `scale` = stored px per source
px) and `native/n.webp` (FrameRecord.native_file; `native_box` = its source-pixel box: the window
clipped to the crop box, so the views' reflect padding at the crop's edge comes out the same).

Both `dfpanel extract` (written to the cache) and detection (held in memory) turn a track's crops into
these bytes with `pack_track`, and both read them back with `decode_image`: what training and
detection see is equal by construction, codec included.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import cv2
import numpy as np

from dfpanel.errors import DataError

BLOCK = 8  # the 8x8 block grid of JPEG / MPEG-family codecs
COMPACT_VERSION = 2  # TrackMeta.version of an entry stored compact (1: full PNG crops)
WEBP_LOSSLESS_METHOD = 1  # libwebp effort: higher methods (up to 6: 60x slower) gained under 1% here


def grid_window_origin(box: Sequence[float], size: int) -> tuple[int, int]:
    """Source-pixel origin of the size x size window centred on `box`, snapped to the 8x8 block grid
    (both multiples of 8): the window `native_window` cuts, and the one the cache stores."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return BLOCK * int(round((cx - size / 2) / BLOCK)), BLOCK * int(round((cy - size / 2) / BLOCK))


def encode_lossless(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # quality sets libwebp's lossless effort too: 50 is ~1.5x faster than 100 for the same size here.
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="WEBP", lossless=True, method=WEBP_LOSSLESS_METHOD, quality=50)
    return buf.getvalue()


def encode_lossy(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".webp", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV without WebP
        raise DataError("this OpenCV cannot encode WebP; install opencv-python-headless from PyPI")
    return buf.tobytes()


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """RGB uint8 HxWx3 of a stored PNG/WebP/JPEG. The one decoder of stored frames: cache and memory."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise DataError(f"{name}: unreadable image; delete the entry and re-extract")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)  # a SIMD copy: ~5x faster than arr[..., ::-1].copy()


def context_scale(face_side: float, face_px: int) -> float:
    """Stored px per source px for a clip whose (median) face side is `face_side`: never enlarged."""
    return 1.0 if face_side <= face_px else round(face_px / face_side, 6)


def pack_track(meta, crops: Sequence[np.ndarray], spec) -> tuple[object, dict[str, bytes]]:
    """(meta with each frame's `file`, `scale`, `native_box`, `native_file` set, {rel path: bytes}) of a
    track's full-resolution crops (as `extract_video` returns them), stored as `spec` says (compact).

    One scale per clip (the clip's median face side), like the crop side, so a clip's frames stay
    alike for TM and AV."""
    by_clip: dict[int, list[float]] = {}
    for f in meta.frames:
        by_clip.setdefault(f.clip, []).append(max(f.box[2] - f.box[0], f.box[3] - f.box[1], 1.0))
    scales = {c: context_scale(float(np.median(v)), spec.face_px) for c, v in by_clip.items()}
    files: dict[str, bytes] = {}
    frames = []
    for n, (f, crop) in enumerate(zip(meta.frames, crops)):
        s = scales[f.clip]
        h, w = crop.shape[:2]
        small = crop if s == 1.0 else cv2.resize(
            crop, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        ctx_file = f"context/{n:06d}.webp"
        files[ctx_file] = encode_lossy(small, spec.context_quality)
        cx0, cy0, cx1, cy1 = f.crop_box
        sx, sy = grid_window_origin(f.box, spec.native_size)
        nb = [max(sx, cx0), max(sy, cy0), min(sx + spec.native_size, cx1), min(sy + spec.native_size, cy1)]
        native_file = None
        if nb[2] > nb[0] and nb[3] > nb[1]:
            native_file = f"native/{n:06d}.webp"
            files[native_file] = encode_lossless(crop[nb[1] - cy0:nb[3] - cy0, nb[0] - cx0:nb[2] - cx0])
        else:  # the face box outside its own crop: not produced by extract_video
            nb = None
        frames.append(dataclasses.replace(f, file=ctx_file, scale=s, native_box=nb, native_file=native_file))
    return dataclasses.replace(meta, frames=frames, version=COMPACT_VERSION), files
