"""Compact per-frame storage: what the views read and no more (InputSpec.store = "compact").

A full context crop of a 1080p face is ~600-800 px square; kept lossless that is ~200 KB per frame.
The views read three things from it:
  - the face and the mouth, resized to the specialist's image size (224 px for the full presets,
    face_scale 1.3): a copy of `face_span` x the face box scaled so the face is at most `face_px`
    holds every pixel they use, and a high-quality lossy codec (WebP) there is visually lossless;
  - BG's context (2x the face box at the same 224 px: the face at half that): the whole crop box with
    the face at most `context_px`;
  - CM and RR read native pixels round the face on the source 8x8 grid (`native_window`): those must be
    bit-exact, so `native_size` x `native_size` of them are stored beside it, lossless (WebP lossless).
A view cuts its box from the face layer when the face layer covers it (`covers`), else from the
context layer (views/ops.py, FaceTrackEntry.region); TM and AV decode only the face layer.

Files of one frame n in an entry: `context/n.webp` (FrameRecord.file, `scale` = stored px per source
px), `face/n.webp` (`face_file`, `face_box` its source box, `face_scale`) and `native/n.webp`
(`native_file`, `native_box`: the window clipped to the crop box, so the views' reflect padding at the
crop's edge comes out the same).

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


def face_region(box: Sequence[float], crop_box: Sequence[int], span: float) -> list[int] | None:
    """The source box the face layer keeps: a square `span` x the face box's longer side, centred on
    it, clipped to the crop box (None when nothing is left)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = span * max(box[2] - box[0], box[3] - box[1], 1.0) / 2
    x0, y0 = max(int(np.floor(cx - half)), crop_box[0]), max(int(np.floor(cy - half)), crop_box[1])
    x1, y1 = min(int(np.ceil(cx + half)), crop_box[2]), min(int(np.ceil(cy + half)), crop_box[3])
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def covers(layer_box: Sequence[float], crop_box: Sequence[float], want: Sequence[float]) -> bool:
    """Does a layer holding `layer_box` (source pixels, inside the crop box) give every pixel a view
    cutting `want` gets from the whole crop? Where the layer ends at the crop's edge, beyond is
    reflected from the same pixels either way."""
    return all((
        want[0] >= layer_box[0] or layer_box[0] <= crop_box[0],
        want[1] >= layer_box[1] or layer_box[1] <= crop_box[1],
        want[2] <= layer_box[2] or layer_box[2] >= crop_box[2],
        want[3] <= layer_box[3] or layer_box[3] >= crop_box[3],
    ))


def scaled_size(w: int, h: int, s: float) -> tuple[int, int]:
    """(w, h) of an image of w x h source pixels stored at `s` px per source px."""
    return (w, h) if s == 1.0 else (max(1, round(w * s)), max(1, round(h * s)))


def _shrink(image: np.ndarray, s: float) -> np.ndarray:
    if s == 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, scaled_size(w, h, s), interpolation=cv2.INTER_AREA)


def pack_track(meta, crops: Sequence[np.ndarray], spec) -> tuple[object, dict[str, bytes]]:
    """(meta with each frame's layers set, {rel path: bytes}) of a track's full-resolution crops (as
    `extract_video` returns them), stored as `spec` says (compact). Three layers per frame:
      - context (`file`, `scale`): the whole crop box, the face at most `context_px`: BG's context view;
      - face (`face_file`, `face_box`, `face_scale`): `face_span` x the face box, the face at most
        `face_px`: every view of the face and the mouth (TM and AV decode only this);
      - native (`native_file`, `native_box`): `native_size` native pixels on the 8x8 grid, lossless.
    One scale per clip (the clip's median face side), like the crop side, so a clip's frames stay
    alike for TM and AV."""
    by_clip: dict[int, list[float]] = {}
    for f in meta.frames:
        by_clip.setdefault(f.clip, []).append(max(f.box[2] - f.box[0], f.box[3] - f.box[1], 1.0))
    sides = {c: float(np.median(v)) for c, v in by_clip.items()}
    files: dict[str, bytes] = {}
    frames = []
    for n, (f, crop) in enumerate(zip(meta.frames, crops)):
        s_ctx, s_face = context_scale(sides[f.clip], spec.context_px), context_scale(sides[f.clip], spec.face_px)
        cx0, cy0, cx1, cy1 = f.crop_box
        layers = {"file": f"context/{n:06d}.webp", "scale": s_ctx}
        files[layers["file"]] = encode_lossy(_shrink(crop, s_ctx), spec.context_quality)
        fb = face_region(f.box, f.crop_box, spec.face_span)
        if fb is not None:
            layers.update(face_file=f"face/{n:06d}.webp", face_box=fb, face_scale=s_face)
            files[layers["face_file"]] = encode_lossy(_shrink(crop[fb[1] - cy0:fb[3] - cy0, fb[0] - cx0:fb[2] - cx0], s_face),
                                                      spec.context_quality)
        sx, sy = grid_window_origin(f.box, spec.native_size)
        nb = [max(sx, cx0), max(sy, cy0), min(sx + spec.native_size, cx1), min(sy + spec.native_size, cy1)]
        if nb[2] > nb[0] and nb[3] > nb[1]:  # (empty only for a face box outside its own crop)
            layers.update(native_file=f"native/{n:06d}.webp", native_box=nb)
            files[layers["native_file"]] = encode_lossless(crop[nb[1] - cy0:nb[3] - cy0, nb[0] - cx0:nb[2] - cx0])
        frames.append(dataclasses.replace(f, **layers))
    return dataclasses.replace(meta, frames=frames, version=COMPACT_VERSION), files
