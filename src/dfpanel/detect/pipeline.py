"""Detection of one video: probe -> extract face track (decode + faces) -> each specialist's view ->
its logits -> per-video aggregate -> panel verdict -> report dict.

Extraction is the same `extract_video` `dfpanel extract` uses, held in memory instead of a cache.
A video that cannot be analysed (corrupt, no face) gives a "failed" report with the reason; it is an
outcome, never an exception out of `analyse`.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dfpanel import __version__
from dfpanel.detect.discovery import NotAVideo, VideoInfo, probe_video
from dfpanel.errors import NoFaceError, VideoError
from dfpanel.extract.spec import DEFAULT_SPEC, InputSpec
from dfpanel.inference.aggregate import (
    abstain_reason,
    evidence_mask,
    gate_counts,
    sigmoid,
    video_logit,
)
from dfpanel.inference.batches import GroupViews, predict_batches, sample_gates
from dfpanel.inference.runners import SpecialistRunner
from dfpanel.panel.combiner import Panel
from dfpanel.report.explain import explain
from dfpanel.report.schema import REPORT_KIND, REPORT_VERSION, validate_report
from dfpanel.report.training import training_data
from dfpanel.views.samples import sample_groups

log = logging.getLogger(__name__)

# extract(path, video_id, timings, progress=None) -> list[(TrackMeta, crops, audio|None)], main track
# first; it may add its own step timings (e.g. "decode", "faces") to `timings`, and may call
# progress(done, total) as it goes (default_extract: per clip decoded and searched for faces)
ExtractFn = Callable[..., list]
# progress(stage, fraction): the step `analyse` starts, in words ("extracting faces", "scoring BG"), and
# how far it is (0..1); called from the analysing thread
ProgressFn = Callable[[str, float], None]


@dataclass
class DetectConfig:
    # Frames sampled per video; None: each specialist's own, from its weights' input spec (the
    # default for a weights folder is decided in dfpanel.detect.build.frames_per_video). Frames per
    # video is sampling density: it changes how many views a video gives, never what a view holds.
    frames: int | None = None
    # Everything else that shapes what a specialist sees comes from its weights' InputSpec. This
    # override exists for experiments and tests only: it breaks the training/detection parity.
    clip_len: int | None = None
    device: str = "cpu"
    backend: str = "torch"
    batch_size: int = 32
    moments: int = 3  # most suspicious moments marked on the timeline
    thumbnails: int = 6


@dataclass
class VideoOutcome:
    path: Path
    report: dict
    thumbnails: list[dict] = field(default_factory=list)  # {"time", "position", "png": bytes}

    @property
    def ok(self) -> bool:
        return self.report["status"] == "analysed"

    @property
    def reason(self) -> str | None:
        err = self.report.get("error")
        return err["message"] if err else None


def default_extract(spec: InputSpec, device: str = "cpu") -> ExtractFn:
    """`extract_video` with exactly `spec` (the weights' input spec), the detector timed so decode
    and face finding report separately."""
    from dfpanel.extract.video import ExtractConfig, extract_video, get_detector

    ecfg = ExtractConfig(spec, device=device)

    def run(path: Path, video_id: str, timings: dict, progress: Callable[[int, int], None] | None = None) -> list:
        detector = _TimedDetector(get_detector(ecfg))
        t = time.perf_counter()
        try:
            return extract_video(path, ecfg, video_id=video_id, dataset="detect", detector=detector, progress=progress)
        finally:
            elapsed = time.perf_counter() - t
            timings["faces"] = timings.get("faces", 0.0) + detector.seconds
            # decode + tracking + crops
            timings["decode"] = timings.get("decode", 0.0) + elapsed - detector.seconds

    return run


def extraction_specs(runners: Sequence[SpecialistRunner], frames: int | None = None,
                     clip_len: int | None = None) -> tuple[list[InputSpec], list[int]]:
    """The distinct input specs to extract a video with (the first runner's first) and, per runner,
    the index of its spec. `frames` (and `clip_len`, for experiments) override the weights' values."""
    changes = {k: v for k, v in (("frames", frames), ("clip_len", clip_len)) if v is not None}
    specs: list[InputSpec] = []
    which: list[int] = []
    for spec in [r.input_spec for r in runners] or [DEFAULT_SPEC]:
        spec = spec.replace(**changes) if changes else spec
        if spec not in specs:
            specs.append(spec)
        which.append(specs.index(spec))
    return specs, which[: len(runners)]


class _TimedDetector:
    def __init__(self, inner):
        self.inner, self.seconds, self.frames = inner, 0.0, 0
        self.name = getattr(inner, "name", type(inner).__name__)

    def detect(self, frames):
        t = time.perf_counter()
        self.frames += len(frames)
        try:
            return self.inner.detect(frames)
        finally:
            self.seconds += time.perf_counter() - t

    def __getattr__(self, item):
        return getattr(self.inner, item)


class PanelDetector:
    """Holds the loaded specialists and panel; `analyse(path)` runs one video."""

    def __init__(self, runners: Sequence[SpecialistRunner], panel: Panel, cfg: DetectConfig | None = None,
                 extract: ExtractFn | None = None, extract_for: Callable[[InputSpec], ExtractFn] | None = None):
        """Each runner is scored on a face track extracted with its weights' InputSpec: one
        extraction per distinct spec (the first runner's spec gives the report's faces, timeline and
        thumbnails). `extract` replaces extraction by one function for every runner (stand-ins in
        tests); `extract_for(spec)` makes the extraction of one spec (default: default_extract)."""
        self.runners = list(runners)
        self.panel = panel
        self.cfg = cfg or DetectConfig()
        self.specs, self._spec_of = extraction_specs(self.runners, self.cfg.frames, self.cfg.clip_len)
        if extract is not None:
            self.specs, self._spec_of = self.specs[:1], [0] * len(self.runners)
            self._extracts = [extract]
        else:
            make = extract_for or (lambda spec: default_extract(spec, self.cfg.device))
            self._extracts = [make(spec) for spec in self.specs]
        for spec in self.specs[1:]:
            log.info("detect: a second extraction for specialists trained on other input settings (%s)",
                     spec.describe_difference(self.specs[0]))

    # ---- one video -------------------------------------------------------------------------------
    def analyse(self, video: str | Path | VideoInfo, progress: ProgressFn | None = None) -> VideoOutcome:
        """`progress`, when given, hears each step as it starts (the web service shows it live)."""
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        path = Path(video.path if isinstance(video, VideoInfo) else video)
        info: VideoInfo | None = video if isinstance(video, VideoInfo) else None
        say = progress or (lambda stage, fraction: None)
        try:
            if info is None:
                say("reading the file", 0.01)
                t = time.perf_counter()
                info = probe_video(path)
                timings["probe"] = time.perf_counter() - t
            say("extracting faces", 0.03)
            t = time.perf_counter()
            tracks = self._extract_first(path, timings, say)
            if not tracks:
                raise NoFaceError(f"{path.name}: no face found")
            # Specialists trained on other input settings get their own extraction of the video.
            entries, missing = self._other_entries(path, timings)
            timings["extract"] = time.perf_counter() - t
        except NotAVideo as exc:
            return self._failed(path, info, "corrupt" if exc.corrupt else "not_video", str(exc), timings, t_start)
        except NoFaceError as exc:
            return self._failed(path, info, "no_face", _strip_name(str(exc), path), timings, t_start)
        except VideoError as exc:
            return self._failed(path, info, "corrupt", _strip_name(str(exc), path), timings, t_start)

        from dfpanel.extract.cache import entry_from_track

        entry = entry_from_track(*tracks[0])
        meta = entry.meta
        entries[0] = entry
        specialists = []
        for i, (r, k) in enumerate(zip(self.runners, self._spec_of)):
            # extraction is most of a video's time on the CPU; the specialists share what is left
            say(f"scoring {r.name.upper()}", 0.6 + 0.35 * i / max(1, len(self.runners)))
            if entries.get(k) is None:
                specialists.append(self._abstain(r, missing.get(k, "no face found")))
            else:
                specialists.append(self._score(r, entries[k], timings))

        say("combining the verdict", 0.95)
        t = time.perf_counter()
        logits = {s["name"]: s["logit"] for s in specialists}
        prob = self.panel.probability(logits)
        verdict = self.panel.verdict(prob)
        contrib = self.panel.contributions(logits)
        for s in specialists:
            s["contribution"] = contrib.get(s["name"])
        timeline = self._timeline(entry, specialists, [entries.get(k) for k in self._spec_of])
        timings["combine"] = time.perf_counter() - t

        video = (info.as_dict() if info else {"path": str(path), "name": path.name})
        video["has_audio"] = entry.has_audio
        cut = _truncation(meta.extra)
        if cut:  # the report covers what the file holds, not what its header claims
            video["truncation"] = cut
            if cut["seconds_covered"] is not None:
                video["duration"] = cut["seconds_covered"]
        detected = [f for f in meta.frames if f.detected]
        report = self._base(video, timings)
        report.update(
            status="analysed",
            verdict=verdict,
            strongest=_strongest(specialists, verdict),
            panel=self._panel_dict(prob),
            specialists=specialists,
            faces={
                "tracks": int(meta.extra.get("n_tracks", len(tracks))),
                "frames": len(meta.frames),
                "detected_frames": len(detected),
                "mean_score": float(np.mean([f.score for f in detected])) if detected else None,
                "detector": meta.detector or None,
            },
            timeline=timeline,
        )
        t = time.perf_counter()
        thumbs = self._thumbnails(entry, timeline)
        timings["thumbnails"] = time.perf_counter() - t
        report["explanation"] = explain(report)
        timings["total"] = time.perf_counter() - t_start
        return VideoOutcome(path=path, report=validate_report(report), thumbnails=thumbs)

    def training_data(self) -> dict:
        """What the loaded specialists learned from (report.json's `training_data`)."""
        return training_data({r.name: r.weights_info for r in self.runners})

    def fail(self, path: str | Path, kind: str, message: str) -> VideoOutcome:
        """The outcome of a file that never reached analysis (e.g. it failed discovery)."""
        return self._failed(Path(path), None, kind, message, {}, time.perf_counter())

    # ---- pieces ----------------------------------------------------------------------------------
    def _extract_first(self, path: Path, timings: dict, say: ProgressFn) -> list:
        """The first spec's extraction, telling `say` how far it is."""
        def clip_done(done: int, total: int) -> None:
            say(f"extracting faces (clip {done} of {total})", 0.03 + 0.57 * done / max(1, total))

        return self._extracts[0](path, _video_id(path), timings, progress=clip_done)

    def _other_entries(self, path: Path, timings: dict) -> tuple[dict, dict]:
        """Entries of the second and further specs (index -> entry), and why one has none."""
        from dfpanel.extract.cache import entry_from_track

        entries: dict[int, object] = {}
        missing: dict[int, str] = {}
        for k in range(1, len(self.specs)):
            try:
                tracks = self._extracts[k](path, _video_id(path), timings)
            except NoFaceError:
                tracks = []
            if not tracks:
                diff = self.specs[k].describe_difference(self.specs[0], sampling=False)
                missing[k] = f"no face found with its weights' extraction settings ({diff})"
                continue
            entries[k] = entry_from_track(*tracks[0])
        return entries, missing

    @staticmethod
    def _abstain(r: SpecialistRunner, reason: str) -> dict:
        return {
            "name": r.name, "title": r.title, "color": r.color, "status": "abstained", "probability": None, "logit": None,
            "reason": reason, "sample_kind": r.sample_kind, "contribution": None, "weights_id": r.weights_id,
            "samples": [], "gated": 0, "gated_reasons": {},
        }

    def _score(self, r: SpecialistRunner, entry, timings: dict) -> dict:
        out = self._abstain(r, None)
        if r.needs_audio and not entry.has_audio:
            out["reason"] = "no audio track"
            return out
        # The same samples the cache datasets give this specialist in training, eval and panel fit.
        groups = sample_groups(entry, r.sample_kind, r.clip_len)
        if not groups:
            L = r.clip_len
            out["reason"] = f"no {L} consecutive frames were sampled (video too short, or --frames below {L})"
            return out
        # Samples that hold no evidence for this specialist (its gate, e.g. AV's silent clips) are not
        # scored and are left out of its video score; all gated: it abstains, with the commonest reason.
        gates = sample_gates(r.gate, entry, groups)
        keep = evidence_mask(gates)
        out["gated"], out["gated_reasons"] = int((~keep).sum()), gate_counts(gates)
        if not keep.any():
            out["reason"] = abstain_reason(gates)
            return out
        all_groups, groups = groups, [g for g, k in zip(groups, keep) if k]
        models_before = timings.get("models", 0.0)
        logits = [float(z) for batch_logits, _ in predict_batches(GroupViews(entry, groups, r.view), r.predict,
                                                                   batch_size=self.cfg.batch_size, timings=timings)
                  for z in batch_logits]
        timings[f"model_{r.name}"] = timings.get(f"model_{r.name}", 0.0) + timings.get("models", 0.0) - models_before
        frames = entry.meta.frames
        step = 1.0 / entry.meta.fps if entry.meta.fps else 0.04
        for g, z in zip(groups, logits):
            if not math.isfinite(z):
                out["reason"] = "the model produced a non-finite score"
                out["samples"] = []
                return out
            ts = [frames[p].time for p in g]
            out["samples"].append({
                "time": float(np.mean(ts)), "start": float(ts[0]), "end": float(ts[-1] + step),
                "position": int(g[0]), "frame": int(frames[g[0]].index),
                "logit": z, "prob": float(sigmoid(z)),
            })
        every = np.full(len(all_groups), np.nan)  # gated samples were not scored: the gates leave them out
        every[keep] = logits
        out["logit"] = video_logit(every, self.panel.aggregate, gates)
        out["probability"] = float(sigmoid(out["logit"]))
        out["status"] = "scored"
        out["_groups"] = groups  # dropped before the report is returned (used by the timeline)
        return out

    def _timeline(self, entry, specialists: list[dict], entries: list | None = None) -> dict:
        """Panel probability at each analysed frame of `entry` (the first spec's track): every
        specialist's sample covering that frame, combined by the panel; the top moments are peaks in
        different clips. A specialist scored on another extraction covers the frames of `entry`
        whose time falls within its sample's span."""
        n = len(entry)
        times = [float(f.time) for f in entry.meta.frames]
        per_pos: list[dict[str, float]] = [{} for _ in range(n)]
        for k, s in enumerate(specialists):
            groups = s.pop("_groups", None)
            if not groups:
                continue
            own = entries is None or entries[k] is entry
            for g, sample in zip(groups, s["samples"]):
                covered = g if own else [p for p in range(n) if sample["start"] <= times[p] < sample["end"]]
                for p in covered:
                    per_pos[p][s["name"]] = sample["logit"]
        probs = [self.panel.probability(d) if d else None for d in per_pos]
        moments, used_clips = [], set()
        order = sorted((i for i in range(n) if probs[i] is not None), key=lambda i: -probs[i])
        for i in order:
            clip = entry.meta.frames[i].clip
            if clip in used_clips:
                continue
            used_clips.add(clip)
            moments.append({"time": times[i], "probability": probs[i], "position": i})
            if len(moments) == self.cfg.moments:
                break
        return {"times": times, "panel": probs, "moments": sorted(moments, key=lambda m: m["time"])}

    def _thumbnails(self, entry, timeline: dict) -> list[dict]:
        """Face thumbnails: the suspicious moments first, then frames spread over the video."""
        n = len(entry)
        want = [m["position"] for m in timeline["moments"]]
        for p in np.linspace(0, n - 1, num=min(n, self.cfg.thumbnails)).round().astype(int):
            if len(want) >= self.cfg.thumbnails:
                break
            if int(p) not in want:
                want.append(int(p))
        out = []
        for p in sorted(want):
            out.append({"position": p, "time": float(entry.meta.frames[p].time),
                        "moment": p in {m["position"] for m in timeline["moments"]},
                        "png": face_thumbnail(entry, p)})
        return out

    def _panel_dict(self, prob: float | None) -> dict:
        p = self.panel
        return {"probability": prob, "threshold": p.threshold, "margin": p.margin, "fitted": p.fitted,
                "threshold_method": p.threshold_method, "aggregate": p.aggregate,
                "one_sided": p.one_sided_names([r.name for r in self.runners])}

    def _base(self, video: dict, timings: dict) -> dict:
        return {
            "kind": REPORT_KIND,
            "version": REPORT_VERSION,
            "dfpanel_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "video": video,
            "status": "failed",
            "error": None,
            "verdict": None,
            "strongest": None,
            "panel": self._panel_dict(None),
            "specialists": [],
            "faces": {"tracks": 0, "frames": 0, "detected_frames": 0, "mean_score": None, "detector": None},
            "timeline": {"times": [], "panel": [], "moments": []},
            "timings": timings,
            # what each specialist learned from and the extraction settings its views were cut with
            "weights": {r.name: dict(r.weights_info, sha256=r.weights_id, input_spec=r.input_spec.to_dict()) for r in self.runners},
            "training_data": self.training_data(),
            "backend": self.cfg.backend,
            "device": self.cfg.device,
            "explanation": [],
        }

    def _failed(self, path: Path, info: VideoInfo | None, kind: str, message: str, timings: dict, t0: float) -> VideoOutcome:
        video = info.as_dict() if info else {"path": str(path), "name": path.name}
        report = self._base(video, timings)
        report["error"] = {"kind": kind, "message": message}
        report["explanation"] = explain(report)
        timings["total"] = time.perf_counter() - t0
        return VideoOutcome(path=path, report=validate_report(report))


def face_thumbnail(entry, position: int, height: int = 112) -> bytes:
    """PNG of the face box (with a little margin) cut from the stored image that holds it."""
    from PIL import Image

    f = entry.meta.frames[position]
    bx0, by0, bx1, by1 = f.box
    m = 0.15 * max(bx1 - bx0, by1 - by0)
    want = [bx0 - m, by0 - m, bx1 + m, by1 + m]
    crop, (x0, y0), s = entry.region(position, want)  # a compact entry's face layer, else the crop
    h, w = crop.shape[:2]
    l, t = max(0, int((want[0] - x0) * s)), max(0, int((want[1] - y0) * s))
    r, b = min(w, int((want[2] - x0) * s)), min(h, int((want[3] - y0) * s))
    face = crop[t:b, l:r] if r > l and b > t else crop
    im = Image.fromarray(np.ascontiguousarray(face))
    im = im.resize((max(1, round(im.width * height / max(im.height, 1))), height), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _truncation(extra: dict) -> dict | None:
    """report.video.truncation from the extraction's record (None when the file is whole)."""
    if not extra.get("truncated"):
        return None
    cov = extra.get("coverage") or {}
    keys = ("frames_found", "frames_expected", "frames_decoded", "frames_sampled", "seconds_covered", "seconds_claimed")
    return {k: cov.get(k) for k in keys}


def _video_id(path: Path) -> str:
    from dfpanel.index.manifest import safe_id

    return safe_id(path.stem)


def _strip_name(message: str, path: Path) -> str:
    """Errors from extraction start with the file's path (the report names the file already) and may
    end with advice for `dfpanel extract` (manifests), which does not apply to detection."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    head, sep, advice = message.partition("; ")
    return head if sep and "manifest" in advice else message


def _strongest(specialists: list[dict], verdict: str | None) -> str | None:
    scored = [s for s in specialists if s["status"] == "scored"]
    if not scored:
        return None

    def push(s: dict) -> float:
        return s["contribution"] if s["contribution"] is not None else s["logit"]

    if verdict == "fake":
        return max(scored, key=push)["name"]
    if verdict == "real":
        return min(scored, key=push)["name"]
    return max(scored, key=lambda s: abs(push(s)))["name"]
