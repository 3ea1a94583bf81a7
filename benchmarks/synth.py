"""Benchmark `dfpanel synth`: seconds per video, against just encoding the same number of frames.

Baseline (measured in the same run): decode one of the synthesized real videos and encode its frames
again with the same PyAV/libx264 writer and crf -- what writing that content costs with no rendering.
Ours: `synthesize` for the `folder` layout (one real + one fake per clip, with audio) and the `ffpp`
layout (one real + five fakes per clip, rendered once, six encoders fed). CPU seconds are reported
next to wall seconds because the machine may be shared (x264 runs single-threaded here).

    .venv/bin/python benchmarks/synth.py                         # 320x240/2 s and 1280x720/10 s
    .venv/bin/python benchmarks/synth.py --videos 2 --no-large   # quick

Prints per-video seconds and CPU ratios against the baseline; writes benchmarks/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def transcode(src: Path, dst: Path, size: tuple[int, int], fps: float) -> tuple[float, float]:
    """Decode a synthesized video and encode its frames again with the same writer: (wall s, CPU s)."""
    import av

    from dfpanel.synth.video import VideoWriter

    t0, c0 = time.perf_counter(), time.process_time()
    writer = VideoWriter(dst, size, fps, 23)
    with av.open(str(src)) as container:
        for frame in container.decode(video=0):
            writer.write(frame.to_ndarray(format="rgb24"))
    writer.close()
    return time.perf_counter() - t0, time.process_time() - c0


def run(size: tuple[int, int], seconds: float, fps: float, layouts: dict[str, int], work: Path) -> dict:
    from dfpanel.synth import synthesize

    out = {"size": list(size), "seconds": seconds, "fps": fps}
    base = None
    for layout, n in layouts.items():
        t0, c0 = time.perf_counter(), time.process_time()
        sidecar = synthesize(layout, work / layout, videos=n, seconds=seconds, size=size, fps=fps, progress=False)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if base is None:  # baseline: re-encoding the first real video (decode + encode, no rendering)
            real = next(p for p, e in sidecar["videos"].items() if e["label"] == 0)
            base = min(transcode(work / layout / real, work / f"base{k}.mp4", size, fps) for k in range(2))
            out["baseline_transcode"] = {"wall_s_per_video": round(base[0], 3), "cpu_s_per_video": round(base[1], 3)}
        k = len(sidecar["videos"])
        out[layout] = {"videos": k, "wall_s_per_video": round(dt / k, 3), "cpu_s_per_video": round(dc / k, 3),
                       "cpu_ratio_vs_transcode": round(dc / k / base[1], 2)}
        shutil.rmtree(work / layout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3, help="real source videos per layout")
    ap.add_argument("--no-large", action="store_true", help="skip the 1280x720 / 10 s case")
    ap.add_argument("--fps", type=float, default=25.0)
    args = ap.parse_args()
    cases = [((320, 240), 2.0, {"folder": args.videos, "ffpp": args.videos})]
    if not args.no_large:
        cases.append(((1280, 720), 10.0, {"folder": 1}))
    results = {"machine": platform.machine(), "cpus": os.cpu_count(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size, seconds, layouts in cases:
            work = Path(tmp) / f"{size[0]}x{size[1]}"
            work.mkdir()
            r = run(size, seconds, args.fps, layouts, work)
            results["cases"].append(r)
            b = r["baseline_transcode"]
            print(f"{size[0]}x{size[1]} {seconds:g}s: baseline re-encode {b['cpu_s_per_video']:.2f} CPU s/video "
                  f"({b['wall_s_per_video']:.2f} wall)")
            for layout in layouts:
                x = r[layout]
                print(f"  {layout:7s} {x['videos']:3d} videos  {x['cpu_s_per_video']:.2f} CPU s/video "
                      f"({x['wall_s_per_video']:.2f} wall) = {x['cpu_ratio_vs_transcode']:.2f}x re-encode")
    out = Path(__file__).parent / "results" / "synth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
