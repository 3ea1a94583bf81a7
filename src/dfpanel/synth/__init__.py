"""Synthetic deepfake datasets written in the exact on-disk layouts of the real ones.

    from dfpanel.synth import synthesize, LAYOUTS
    sidecar = synthesize("ffpp", "data/ffpp_synth", videos=6)

Each layout (ffpp, celebdf, dfdc, fakeavceleb, folder) is laid out as its real release (see
`layouts.py`), with real H.264 MP4 files (AAC audio for dfdc, fakeavceleb and folder). People are real
face photos shipped in scikit-image and matplotlib, varied into many identities; they move, blink and
talk (the mouth follows the speech envelope). Fakes carry real traces in pixels or audio
(`manipulations.py`). `DIR/dfpanel_synth.json` records every video's label, fake type, manipulations
and identities. Everything follows from the seed; re-running into the same folder with the same
parameters only writes what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from dfpanel.atomic import atomic_write
from dfpanel.errors import DataError, DfpanelError
from dfpanel.synth.layouts import COMPRESSION_CRF, LAYOUTS, MIN_VIDEOS, PLANNERS, Plan
from dfpanel.synth.manipulations import MANIPULATIONS

__all__ = ["synthesize", "plan", "LAYOUTS", "MANIPULATIONS", "SIDECAR", "COMPRESSION_CRF"]

SIDECAR = "dfpanel_synth.json"
# 2: FF++ pairs inside 72/14/14 splits, Celeb-DF test list ~8%, DFDC test set. 3: faces lit by the
# scene (other pixels in every video). A folder written by another version is refused (its files and
# index files would not match this plan).
SIDECAR_VERSION = 3


def _traces(layout: str, traces) -> tuple[str, ...] | None:
    """--traces checked and de-duplicated (order kept); None when not given."""
    if traces is None:
        return None
    traces = tuple(dict.fromkeys(str(t).strip() for t in traces if str(t).strip()))
    if layout != "folder":
        raise DfpanelError(f"--traces is for --layout folder only (one fake per trace under fake/<trace>/); "
                           f"{layout} has its own fakes")
    bad = [t for t in traces if t not in MANIPULATIONS]
    if bad or not traces:
        raise DfpanelError(f"--traces {', '.join(bad) or '(none)'}: unknown trace; choose from {', '.join(MANIPULATIONS)}")
    return traces


def _check(layout, videos, seconds, size, fps, compressions, parts, test_videos) -> None:
    if layout not in LAYOUTS:
        raise DfpanelError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if videos < MIN_VIDEOS[layout]:
        raise DfpanelError(f"--videos {videos} is too few for {layout}; it needs at least {MIN_VIDEOS[layout]}")
    if not 0 < seconds <= 600:
        raise DfpanelError(f"--seconds {seconds} is out of range; give a duration between 0 and 600 seconds")
    w, h = size
    # Below 120 lines the face gets smaller than the 40 px a face detector is usually asked to find.
    if w < 128 or h < 120 or w > 7680 or h > 4320 or w % 2 or h % 2:
        raise DfpanelError(f"--size {w}x{h} is not usable; give even width and height from 128x120 to 7680x4320, e.g. 320x240")
    if not 1 <= fps <= 120:
        raise DfpanelError(f"--fps {fps} is out of range; give a frame rate between 1 and 120")
    bad = [c for c in compressions if c not in COMPRESSION_CRF]
    if bad or not compressions:
        raise DfpanelError(f"--compression {', '.join(bad) or '(none)'} is not one of {', '.join(COMPRESSION_CRF)}")
    if parts < 1:
        raise DfpanelError(f"--parts {parts} must be at least 1")
    if test_videos < 0:
        raise DfpanelError(f"--test-videos {test_videos} must be 0 (no test set) or more")


def plan(layout: str, *, videos: int = 4, seconds: float = 2.0, size: tuple[int, int] = (320, 240),
         fps: float = 25.0, seed: int = 0, compressions: tuple[str, ...] = ("c23",), parts: int = 2,
         test_videos: int | None = None, traces: tuple[str, ...] | None = None) -> Plan:
    """What `synthesize` would write, without writing it."""
    compressions = tuple(dict.fromkeys(compressions))
    size = (int(size[0]), int(size[1]))
    test_videos = _test_videos(videos, test_videos)
    _check(layout, videos, seconds, size, fps, compressions, parts, test_videos)
    traces = _traces(layout, traces)
    extra = {"traces": traces} if traces else {}
    return PLANNERS[layout](videos, float(seconds), size, float(fps), seed, compressions, parts, test_videos, **extra)


def _test_videos(videos: int, test_videos: int | None) -> int:
    """dfdc's public test set: as many real videos as one train part unless told."""
    return videos if test_videos is None else int(test_videos)


def _params(layout, videos, seconds, size, fps, compressions, parts, test_videos, traces=None) -> dict:
    params = {"videos": videos, "seconds": float(seconds), "size": [int(size[0]), int(size[1])], "fps": float(fps)}
    if layout == "ffpp":
        params["compressions"] = list(dict.fromkeys(compressions))
    if layout == "dfdc":
        params["parts"] = parts
        params["test_videos"] = test_videos
    if traces:  # absent without --traces, so folders written before the option still resume
        params["traces"] = list(traces)
    return params


def _sidecar(layout: str, seed: int, params: dict, the_plan: Plan) -> dict:
    from dfpanel.synth.render import describe

    entries = {}
    for clip, outs in the_plan.clips:
        for o in outs:
            entries[o.path] = {
                "label": o.label,
                "fake_type": o.fake_type,
                "manipulations": list(o.manipulations),
                "identity": o.identity_name,
                "source_identity": o.source_name,
                "has_audio": o.audio,
                "split": o.split,
                "crf": o.crf,
                "details": describe(clip, o),
            }
    return {"version": SIDECAR_VERSION, "layout": layout, "seed": seed, "params": params, "videos": entries}


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def synthesize(layout: str, out: str | Path, *, videos: int = 4, seconds: float = 2.0,
               size: tuple[int, int] = (320, 240), fps: float = 25.0, seed: int = 0,
               compressions: tuple[str, ...] = ("c23",), parts: int = 2, test_videos: int | None = None,
               traces: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """Write a synthetic dataset in `layout`'s on-disk layout under `out`; returns the sidecar dict.

    `test_videos` (dfdc only): real videos in the public test set test/labels.csv, each with one fake;
    None = `videos`, 0 = no test set. `traces` (folder only): one fake per real per listed trace, each
    carrying that trace alone, under fake/<trace>/ (None: one mixed-recipe fake per real). Re-running into a folder made with the same parameters (and the
    same version of this generator) skips videos already there (resumable); any other folder is
    refused rather than mixed.
    """
    from dfpanel.synth.render import render_clip

    the_plan = plan(layout, videos=videos, seconds=seconds, size=size, fps=fps, seed=seed,
                    compressions=compressions, parts=parts, test_videos=test_videos, traces=traces)
    root = Path(out)
    params = _params(layout, videos, seconds, size, fps, compressions, parts, _test_videos(videos, test_videos),
                     _traces(layout, traces))
    sidecar_path = root / SIDECAR
    if sidecar_path.is_file():
        try:
            old = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{sidecar_path}: unreadable synth sidecar; delete the folder or choose another --out") from None
        if (old.get("version"), old.get("layout"), old.get("seed"), old.get("params")) != (
                SIDECAR_VERSION, layout, seed, params):
            raise DataError(
                f"{sidecar_path}: this folder holds a {old.get('layout')} synth set made with other parameters or by "
                f"another dfpanel synth "
                f"(version {old.get('version')}, seed {old.get('seed')}, {old.get('params')}); "
                f"choose another --out or delete it"
            )
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".dfpanel_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DfpanelError(f"{root}: cannot write there ({exc.strerror}); choose a writable --out folder") from None

    sidecar = _sidecar(layout, seed, params, the_plan)
    # Written first (the plan is fixed by the seed) so an interrupted run is recognised on resume.
    _write_text(sidecar_path, json.dumps(sidecar, indent=1) + "\n")
    for rel, text in the_plan.files.items():
        _write_text(root / rel, text)

    total = len(the_plan.outputs)
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn(f"synth {layout}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       transient=False)
    else:
        bar = None
    with bar if bar is not None else _NoBar():
        task = bar.add_task("videos", total=total) if bar is not None else None
        for clip, outs in the_plan.clips:
            render_clip(clip, outs, root)
            if bar is not None:
                bar.advance(task, len(outs))
    return sidecar


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
