"""Face detection behind a small interface, and tracking of detections into face tracks.

A `FaceDetector` turns RGB frames into `Detection`s (box, 5 landmarks, score); detectors register by
name so another one can be plugged in (`@register_detector("name")`). A detector may also `refine`:
re-locate a face near a known box (MTCNN runs only its last stage, O-Net), which is how extraction
follows a face through a clip cheaply; such frames count as detected (their landmarks are measured).
`track_faces` links the detections of the sampled frames into tracks, fills frames that were not
run through the detector by interpolation (inside a clip of consecutive frames a face moves
smoothly; FrameRecord.detected=False there), and smooths boxes so crops do not jitter. Landmarks are
left as detected (the TM specialist looks at their jitter).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dfpanel.errors import ConfigError


@dataclass
class Detection:
    box: np.ndarray  # [x0, y0, x1, y1] float, frame pixels
    landmarks: np.ndarray  # 5 x 2: left eye, right eye, nose, mouth left, mouth right
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector(ABC):
    """Constructed as `cls(device=..., min_face_size=..., max_side=...)` (accept **kwargs for the rest)."""

    name: str = ""

    @abstractmethod
    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """RGB uint8 H x W x 3 frames -> per frame, its detections (best first)."""

    def refine(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list[Detection] | None:
        """Optional: re-locate a face near a known box in each frame (a face tracked from the
        previous frame). None when the detector cannot; extraction then interpolates instead."""
        return None


DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        DETECTORS[name] = cls
        return cls

    return deco


def create_detector(name: str, **kwargs) -> FaceDetector:
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name](**kwargs)


class MTCNNNets:
    """MTCNN's three networks on one device (facenet-pytorch; weights ship in the wheel). `detect`
    runs the whole cascade on a batch of equal-sized frames; `onet` runs its last stage on 48x48 face
    crops. `MTCNNDetector` does the work around them (downscaling, batching, mapping boxes back);
    batched extraction (`dfpanel.extract.batched`) shares one of these on the GPU between workers."""

    def __init__(self, device: str = "cpu", thresholds: Sequence[float] = (0.6, 0.7, 0.7)):
        import torch
        from facenet_pytorch import MTCNN

        self.device = torch.device(device)
        self.thresholds = list(thresholds)
        self._nets: dict[int, MTCNN] = {}
        self._MTCNN = MTCNN

    def _net(self, min_size: int):
        # MTCNN holds min_face_size as state; one instance per effective size (nets are tiny).
        if min_size not in self._nets:
            self._nets[min_size] = self._MTCNN(
                keep_all=True, min_face_size=min_size, thresholds=self.thresholds, post_process=False, device=self.device
            )
        return self._nets[min_size]

    def detect(self, batch: np.ndarray, min_size: int):
        """B x H x W x 3 uint8 RGB -> per frame (boxes, probs, landmarks) as facenet-pytorch gives them."""
        return self._net(min_size).detect(batch, landmarks=True)

    def onet(self, crops, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """N x 3 x 48 x 48 normalised crops (a tensor) -> O-Net's box regression, landmarks, face probability."""
        import torch

        with torch.no_grad():
            reg, points, prob = self._net(min_size).onet(crops.to(self.device))
        return reg.cpu().numpy(), points.cpu().numpy(), prob.cpu().numpy()


@register_detector("mtcnn")
class MTCNNDetector(FaceDetector):
    """facenet-pytorch's MTCNN. Frames larger than `max_side` are downscaled for detection and boxes
    mapped back; equal-sized frames go through in batches of `batch_size`. `nets` (default: its own
    `MTCNNNets` on `device`) may be shared: batched extraction hands each worker a stand-in that sends
    the downscaled frames and face crops to one detector on the GPU."""

    nets_class = MTCNNNets  # what `nets=` takes; batched extraction shares one (dfpanel.extract.batched)

    def __init__(
        self,
        device: str = "cpu",
        min_face_size: int = 40,
        max_side: int = 640,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        batch_size: int = 16,
        nets: MTCNNNets | None = None,
    ):
        import torch

        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = list(thresholds)
        self.batch_size = batch_size
        self.nets = nets if nets is not None else MTCNNNets(device, thresholds)
        self.calls = 0  # frames run through the network (tests and benchmarks read it)

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        import cv2

        out: list[list[Detection]] = [[] for _ in frames]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            by_shape.setdefault(f.shape, []).append(i)
        for shape, idx in by_shape.items():
            h, w = shape[:2]
            scale = min(1.0, self.max_side / max(h, w))
            min_size = max(12, int(round(self.min_face_size * scale)))
            for b0 in range(0, len(idx), self.batch_size):
                chunk = idx[b0 : b0 + self.batch_size]
                imgs = [frames[i] for i in chunk]
                if scale < 1.0:
                    size = (max(1, round(w * scale)), max(1, round(h * scale)))
                    imgs = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in imgs]
                boxes, probs, points = self.nets.detect(np.stack(imgs), min_size)
                self.calls += len(chunk)
                for i, b, p, lm in zip(chunk, boxes, probs, points):
                    out[i] = _to_detections(b, p, lm, 1.0 / scale)
        return out


    def refine(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list[Detection]:
        """MTCNN's last stage (O-Net) on the square around each given box: the refined box, the
        5 landmarks and a face probability, for ~1/100 of a full detection's cost. Mirrors
        facenet-pytorch's third stage (rerec, pad, 48x48 area resize, bbreg)."""
        import torch
        import torch.nn.functional as F

        if not frames:
            return []
        squares, crops = [], []
        for img, box in zip(frames, boxes):
            h, w = img.shape[:2]
            x0, y0, x1, y1 = (float(v) for v in box)
            side = max(x1 - x0, y1 - y0, 1.0)
            x0, y0 = x0 + (x1 - x0) / 2 - side / 2, y0 + (y1 - y0) / 2 - side / 2
            x1, y1 = x0 + side, y0 + side
            squares.append((x0, y0, x1, y1))
            # facenet-pytorch's pad(): truncate, keep 1-based x >= 1, crop [x-1, ex).
            cx0, cy0 = max(int(x0), 1) - 1, max(int(y0), 1) - 1
            cx1, cy1 = min(int(x1), w), min(int(y1), h)
            if cx1 <= cx0 or cy1 <= cy0:
                cx0, cy0, cx1, cy1 = 0, 0, 1, 1
            crop = torch.as_tensor(np.ascontiguousarray(img[cy0:cy1, cx0:cx1]), device=self.device)
            crops.append(F.interpolate(crop.permute(2, 0, 1)[None].float(), size=(48, 48), mode="area"))
        reg, points, prob = self.nets.onet((torch.cat(crops) - 127.5) * 0.0078125, max(12, int(self.min_face_size)))
        self.refines = getattr(self, "refines", 0) + len(frames)
        out = []
        for k, (x0, y0, x1, y1) in enumerate(squares):
            bw, bh = x1 - x0 + 1, y1 - y0 + 1
            lm = np.stack([bw * points[k, :5] + x0 - 1, bh * points[k, 5:] + y0 - 1], axis=1)
            box = np.array([x0 + reg[k, 0] * bw, y0 + reg[k, 1] * bh, x1 + reg[k, 2] * bw, y1 + reg[k, 3] * bh])
            out.append(Detection(box.astype(np.float64), lm.astype(np.float64), float(prob[k, 1])))
        return out


def _to_detections(boxes, probs, points, inv_scale: float) -> list[Detection]:
    """MTCNN's per-image results (None, or object arrays under numpy 2) -> Detections, best first."""
    if boxes is None or len(boxes) == 0:
        return []
    boxes = np.asarray(np.stack(list(boxes)), dtype=np.float64).reshape(-1, 4) * inv_scale
    probs = np.asarray([float(p) for p in probs], dtype=np.float64)
    points = np.asarray(np.stack(list(points)), dtype=np.float64).reshape(-1, 5, 2) * inv_scale
    dets = [Detection(boxes[k], points[k], float(probs[k])) for k in range(len(boxes))]
    return sorted(dets, key=lambda d: -d.score)


# -- geometry ------------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def context_box(box: Sequence[float], width: int, height: int, scale: float = 2.0, side: float | None = None) -> list[int]:
    """Square box `scale` x the face box's longer side (or `side` pixels), centred on the face box,
    integral, clipped to the frame. Away from the borders its size is round(side) exactly, so crops
    of one clip given the same `side` have the same size."""
    x0, y0, x1, y1 = (float(v) for v in box)
    s = int(round(side if side is not None else scale * max(x1 - x0, y1 - y0, 1.0)))
    s = max(s, 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bx0, by0 = math.floor(cx - s / 2 + 0.5), math.floor(cy - s / 2 + 0.5)
    bx1, by1 = bx0 + s, by0 + s
    bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(width, bx1), min(height, by1)
    if bx1 <= bx0 or by1 <= by0:  # a box entirely off-frame: keep a 1-pixel crop at the border
        bx0, by0 = min(max(bx0, 0), width - 1), min(max(by0, 0), height - 1)
        bx1, by1 = bx0 + 1, by0 + 1
    return [bx0, by0, bx1, by1]


# -- tracking ------------------------------------------------------------------------------------


@dataclass
class TrackPoint:
    pos: int  # position in the sampled frame list
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    detected: bool


@dataclass
class FaceTrack:
    points: list[TrackPoint] = field(default_factory=list)  # sorted by pos
    n_detections: int = 0
    mean_area: float = 0.0

    @property
    def weight(self) -> float:
        """Largest x longest: how much of the video this face fills."""
        return self.mean_area * self.n_detections


def _link_cost(prev: Detection, det: Detection, same_clip: bool) -> float | None:
    """Cost of linking det to a track whose last detection is prev; None when implausible."""
    o = iou(prev.box, det.box)
    size = math.sqrt(max(prev.area, 1.0))
    dist = np.linalg.norm(prev.landmarks.mean(0) - det.landmarks.mean(0)) / size
    ratio = math.sqrt(max(det.area, 1.0)) / size
    # Consecutive frames: the face barely moves. Across clips (seconds apart) it may be anywhere,
    # so only its size must agree; the assignment then pairs the nearest faces.
    if same_clip:
        ok = o >= 0.3 or dist < 0.5
    else:
        ok = 0.5 < ratio < 2.0
    return (1.0 - o) + dist if ok else None


def track_faces(
    clip_of: Sequence[int], detections: dict[int, list[Detection]], min_detections: int = 2, smooth: bool = True
) -> list[FaceTrack]:
    """Link detections into tracks and fill every sampled position of the clips a track appears in.

    clip_of[pos] is the clip of sampled frame `pos` (positions of a clip are consecutive frames);
    detections maps the positions that went through the detector to their detections. Returns
    tracks with at least `min_detections` detections (fewer only if fewer positions were run),
    largest x longest first.
    """
    from scipy.optimize import linear_sum_assignment

    linked: list[list[tuple[int, Detection]]] = []
    for pos in sorted(detections):
        dets = detections[pos]
        if not dets:
            continue
        live = [t for t in linked if t[-1][0] < pos]
        cost = np.full((len(live), len(dets)), 1e6)
        for a, t in enumerate(live):
            last_pos, last = t[-1]
            for b, d in enumerate(dets):
                c = _link_cost(last, d, clip_of[last_pos] == clip_of[pos])
                if c is not None:
                    cost[a, b] = c
        taken: set[int] = set()
        if live:
            rows, cols = linear_sum_assignment(cost)
            for a, b in zip(rows, cols):
                if cost[a, b] < 1e6:
                    live[a].append((pos, dets[b]))
                    taken.add(b)
        for b, d in enumerate(dets):
            if b not in taken:
                linked.append([(pos, d)])

    n_run = sum(1 for p in detections)
    need = min(min_detections, max(1, n_run))
    tracks = [_fill(t, clip_of, smooth) for t in linked if len(t) >= need]
    return sorted(tracks, key=lambda t: -t.weight)


def _fill(dets: list[tuple[int, Detection]], clip_of: Sequence[int], smooth: bool) -> FaceTrack:
    """Every position of each clip the track was detected in: detections where present, linear
    interpolation between them, the nearest detection held beyond the first/last."""
    by_clip: dict[int, list[tuple[int, Detection]]] = {}
    for pos, d in dets:
        by_clip.setdefault(clip_of[pos], []).append((pos, d))
    points: list[TrackPoint] = []
    for clip, cdets in sorted(by_clip.items()):
        positions = [p for p, c in enumerate(clip_of) if c == clip]
        known = np.array([p for p, _ in cdets], dtype=float)
        boxes = np.stack([d.box for _, d in cdets])
        lms = np.stack([d.landmarks.reshape(-1) for _, d in cdets])
        at = {p: d for p, d in cdets}
        clip_points = []
        for p in positions:
            if p in at:
                d = at[p]
                clip_points.append(TrackPoint(p, d.box.copy(), d.landmarks.copy(), d.score, True))
                continue
            box = np.array([np.interp(p, known, boxes[:, k]) for k in range(4)])
            lm = np.array([np.interp(p, known, lms[:, k]) for k in range(10)]).reshape(5, 2)
            nearest = cdets[int(np.argmin(np.abs(known - p)))][1]
            clip_points.append(TrackPoint(p, box, lm, nearest.score, False))
        if smooth and len(clip_points) >= 3:
            raw = np.stack([q.box for q in clip_points])
            padded = np.concatenate([raw[:1], raw, raw[-1:]])
            sm = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4.0  # 1-2-1 filter over time
            for q, b in zip(clip_points, sm):
                q.box = b
        points.extend(clip_points)
    areas = [d.area for _, d in dets]
    return FaceTrack(points=points, n_detections=len(dets), mean_area=float(np.mean(areas)))
