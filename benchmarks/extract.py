"""Benchmark `dfpanel extract` against a naive extractor, measured in the same run.

Videos: synthetic 10 s 1280x720 H.264 (dfpanel.synth, `folder` layout), indexed into a manifest.
Baseline (naive): decode every frame with OpenCV, run MTCNN on every full-size frame, write a JPEG
of the 2x face box per frame. Ours: run_extraction at --frames per video, with 1 worker (per-core
comparison) and with --workers N (scaling). Every run uses one torch thread per process.

    .venv/bin/python benchmarks/extract.py --videos 2
    .venv/bin/python benchmarks/extract.py --videos 4 --seconds 4 --size 640x360   # quicker

Figures are printed as ratios against the baseline and written to benchmarks/results/extract.json.
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


def naive_extract(path: Path, out: Path, detector, limit: int = 0) -> tuple[int, float, float]:
    """Decode every frame (OpenCV), detect on every frame, write a JPEG per face. Returns
    (frames processed, wall seconds, CPU seconds)."""
    import cv2

    from dfpanel.extract.faces import context_box

    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok or (limit and n >= limit):
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        dets = detector.detect([rgb])[0]
        if dets:
            x0, y0, x1, y1 = context_box(dets[0].box, rgb.shape[1], rgb.shape[0])
            cv2.imwrite(str(out / f"{n:06d}.jpg"), bgr[y0:y1, x0:x1])
        n += 1
    cap.release()
    return n, time.perf_counter() - t0, time.process_time() - c0


def count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2, help="synthetic videos (real + fake pairs are made; at least 1)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=32, help="frames sampled per video by extract")
    ap.add_argument("--workers", type=int, default=2, help="worker count for the scaling run")
    ap.add_argument("--baseline-limit", type=int, default=0,
                    help="naive baseline: process only the first K frames of each video and extrapolate (0 = all)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep videos here (reused across runs)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "extract.json")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from dfpanel.extract.faces import create_detector
    from dfpanel.extract.run import ExtractConfig, run_extraction
    from dfpanel.index import index_dataset
    from dfpanel.index.manifest import write_manifest
    from dfpanel.synth import synthesize

    w, h = (int(v) for v in args.size.lower().split("x"))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dfpanel-bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    # The folder layout writes a real and a fake video per identity; ask for enough, keep --videos.
    n_synth = max(1, (args.videos + 1) // 2)
    data = work / f"folder_{w}x{h}_{args.seconds:g}s_{n_synth}"
    t = time.perf_counter()
    synthesize("folder", data, videos=n_synth, seconds=args.seconds, size=(w, h), progress=False)
    records = sorted(index_dataset(data), key=lambda r: r.id)[: args.videos]
    manifest = work / "manifest.jsonl"
    write_manifest(records, manifest)
    print(f"{len(records)} videos of {args.seconds:g} s at {w}x{h} ready in {time.perf_counter() - t:.1f} s ({data})")
    total_frames = sum(count_frames(r.abspath) for r in records)

    # Baseline: naive, one process, one thread.
    detector = create_detector("mtcnn", min_face_size=40, max_side=10**6)  # naive: full-size frames
    detector.detect([__import__("numpy").zeros((h, w, 3), "uint8")])  # warm up
    base_s = base_cpu = 0.0
    base_frames = 0
    for r in records:
        n, s, c = naive_extract(r.abspath, work / "naive" / r.id, detector, args.baseline_limit)
        full = count_frames(r.abspath)
        base_s += s * (full / n if n else 1.0)  # extrapolated when --baseline-limit cuts it short
        base_cpu += c * (full / n if n else 1.0)
        base_frames += full
    baseline = {"seconds": base_s, "cpu_seconds": base_cpu, "videos_per_s": len(records) / base_s,
                "videos_per_cpu_s": len(records) / base_cpu, "frames_per_s": base_frames / base_s,
                "extrapolated_from_frames": args.baseline_limit or None}
    print(f"baseline (naive, every frame): {base_s:.1f} s wall, {base_cpu:.1f} s CPU, "
          f"{baseline['videos_per_s']:.3f} videos/s, {baseline['frames_per_s']:.1f} frames/s"
          + (f" (extrapolated from the first {args.baseline_limit} frames of each video)" if args.baseline_limit else ""))

    cfg = ExtractConfig(frames=args.frames, clip_len=8)
    runs = {}
    pool_start = None
    if args.workers > 1:
        # One-time cost of a run with workers: the fork server imports torch once. Measured apart,
        # so the scaling figure compares steady work (a real run pays this once, not per video).
        from dfpanel.extract.run import _WorkerPool

        t = time.perf_counter()
        _WorkerPool(cfg, args.workers).start().shutdown()
        pool_start = time.perf_counter() - t
        print(f"worker pool first start (fork server importing torch): {pool_start:.1f} s, once per run")
    for workers in sorted({1, args.workers}):
        cache = work / f"cache_w{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        t, c = time.perf_counter(), time.process_time()
        summary = run_extraction(manifest, cache, cfg, workers=workers, progress=False)
        secs, cpu = time.perf_counter() - t, time.process_time() - c
        if summary["failed"]:
            print(f"warning: {summary['failed']} failed: {summary['failures']}", file=sys.stderr)
        runs[workers] = {"seconds": secs, "videos_per_s": summary["ok"] / secs, "frames_per_s": summary["frames"] / secs,
                         "ok": summary["ok"], "frames": summary["frames"],
                         "cpu_per_video_s": summary["video_cpu_seconds"] / max(summary["ok"] + summary["failed"], 1),
                         "stage_seconds_per_video": {k: v / max(summary["ok"], 1) for k, v in summary["stage_seconds"].items()}}
        if workers == 1:  # in-process: its CPU time is the whole cost
            runs[1].update(cpu_seconds=cpu, videos_per_cpu_s=summary["ok"] / cpu)
        print(f"extract --workers {workers}: {secs:.1f} s, {runs[workers]['videos_per_s']:.3f} videos/s, "
              f"{runs[workers]['frames_per_s']:.1f} output frames/s, "
              f"{runs[workers]['cpu_per_video_s']:.2f} CPU s per video inside the workers")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in runs[workers]["stage_seconds_per_video"].items())
        print(f"  per video (s): {stages}")

    one = runs[1]
    result = {
        "videos": len(records),
        "seconds_per_video": args.seconds,
        "size": [w, h],
        "source_frames": total_frames,
        "frames_per_video": args.frames,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "baseline": baseline,
        "pool_first_start_s": pool_start,
        "extract": {str(k): v for k, v in runs.items()},
        "ratios": {
            "videos_per_s_vs_baseline_per_core": one["videos_per_s"] / baseline["videos_per_s"],
            "videos_per_cpu_s_vs_baseline": one["videos_per_cpu_s"] / baseline["videos_per_cpu_s"],
            f"speedup_{args.workers}_workers_vs_1": runs[args.workers]["videos_per_s"] / one["videos_per_s"],
            # Work per video is what caps scaling when cores are free: equal CPU per video with N
            # workers means no per-worker overhead, so N free cores give ~N x.
            f"cpu_per_video_{args.workers}_workers_vs_1": runs[args.workers]["cpu_per_video_s"] / one["cpu_per_video_s"],
        },
    }
    print(f"ratio: extract (1 worker) is {result['ratios']['videos_per_s_vs_baseline_per_core']:.1f}x the baseline's videos/s "
          f"(wall), {result['ratios']['videos_per_cpu_s_vs_baseline']:.1f}x per CPU second")
    if args.workers != 1:
        print(f"ratio: {args.workers} workers are {result['ratios'][f'speedup_{args.workers}_workers_vs_1']:.2f}x 1 worker "
              f"wall (load average {result['load_avg_1m']:.1f} on {os.cpu_count()} cores); CPU per video "
              f"{result['ratios'][f'cpu_per_video_{args.workers}_workers_vs_1']:.2f}x that of 1 worker")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
