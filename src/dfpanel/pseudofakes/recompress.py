"""`recompress`: the face region of a real crop JPEG-compressed on its own 8x8 grid and pasted back (CM).

What a face swap leaves in the codec domain: the pasted face went through a compression of its own, on
a grid that is usually not the frame's. Here the region under a hard-ish face mask is JPEG-encoded at a
quality drawn from `quality`, on the source 8x8 grid or (with `grid_shift_p`) one shifted off it by
1-7 px per axis, optionally twice (`double_p`: double compression at two qualities on that grid), and
pasted back through the mask. Pixels where the mask is 0 stay bit-exact (CM reads native pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dfpanel.extract.cache import EditedEntry, FaceTrackEntry, edit_layers
from dfpanel.pseudofakes.base import (
    DonorFn,
    PseudoFake,
    PseudoFakeGenerator,
    register_pseudofake,
)
from dfpanel.pseudofakes.blend import paste, unique_positions
from dfpanel.pseudofakes.masks import MASK_PARAMS, draw_mask, face_geometry, render_mask
from dfpanel.views.ops import BLOCK, cut


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 through a JPEG encode/decode at `quality` (grid at the image's origin)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def recompress_region(crop: np.ndarray, mask: np.ndarray, grid: tuple[int, int], qualities: Sequence[int]) -> np.ndarray:
    """The crop with the bounding box of mask > 0 (widened to whole blocks of the grid whose origin is
    `grid` in crop pixels) JPEG-compressed at each quality in turn on that grid; pixels elsewhere as given."""
    ys, xs = np.nonzero(mask > 0)
    out = crop.copy()
    if xs.size == 0:
        return out
    gx, gy = grid
    x0 = gx + BLOCK * int(np.floor((xs.min() - gx) / BLOCK))
    y0 = gy + BLOCK * int(np.floor((ys.min() - gy) / BLOCK))
    x1 = gx + BLOCK * int(np.ceil((xs.max() + 1 - gx) / BLOCK))
    y1 = gy + BLOCK * int(np.ceil((ys.max() + 1 - gy) / BLOCK))
    region = np.ascontiguousarray(cut(crop, x0, y0, x1 - x0, y1 - y0))  # reflect-padded past the crop's edge
    for q in qualities:
        region = jpeg(region, q)
    h, w = crop.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out[cy0:cy1, cx0:cx1] = region[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


@register_pseudofake
class Recompress(PseudoFakeGenerator):
    name = "recompress"
    traces = ("recompress",)
    sample_kind = "frame"
    params = {
        "quality": (15, 75),  # JPEG quality, drawn uniformly (integers, both ends included)
        "grid_shift_p": 0.7,  # chance the JPEG grid is shifted 1-7 px off the source grid
        "double_p": 0.3,  # chance of a second compression at another quality
        **MASK_PARAMS,
        "mask_blur": (0.0, 0.03),  # hard-ish: a narrow soft edge
        "mask_hard_p": 0.5,
    }

    def make(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
             donor: DonorFn | None = None) -> PseudoFake:
        o = self.options
        spec = draw_mask(rng, o)
        lo, hi = (int(v) for v in o["quality"])
        qualities = [int(rng.integers(lo, hi + 1))]
        if rng.random() < float(o["double_p"]):
            qualities.append(int(rng.integers(lo, hi + 1)))
        if rng.random() < float(o["grid_shift_p"]):
            shift = [0, 0]
            while shift == [0, 0]:
                shift = [int(v) for v in rng.integers(0, BLOCK, 2)]
        else:
            shift = [0, 0]
        edits, masks, grids = {}, {}, {}

        def recompress(layer, pos):
            crop, fr = layer.image, layer.frame
            box, lm, _ = face_geometry(fr)
            mask = render_mask(crop.shape[:2], box, lm, spec)
            # Where the source 8x8 grid falls inside this image (meaningful at native scale: the
            # native pixels of a compact entry, what CM reads).
            gx, gy = (8 - fr.crop_box[0] % 8) % 8, (8 - fr.crop_box[1] % 8) % 8
            grid = ((gx + shift[0]) % BLOCK, (gy + shift[1]) % BLOCK)
            if layer.name == "context":  # the mask and the grid are reported in crop pixels
                masks[pos] = mask
                grids[pos] = list(grid)
            return paste(crop, recompress_region(crop, mask, grid, qualities), mask)

        for pos in unique_positions(positions):  # the context crop, and native pixels when stored apart
            edits[pos] = edit_layers(entry, pos, lambda layer, pos=pos: recompress(layer, pos))
        details = {"mask": spec, "jpeg_quality": qualities, "grid_shift": shift,
                   "grid": {str(p): g for p, g in grids.items()}}
        return PseudoFake(EditedEntry.from_layers(entry, edits), masks, details)
