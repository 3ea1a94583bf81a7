"""Benchmark the compact cache against the full one (today's format until compact storage), same run.

Videos: synthetic H.264 in the FF++ layout at 1280x720 and the DFDC layout at 1920x1080 (dfpanel.synth),
indexed and extracted twice with one process: `--store full` (lossless PNG crops at native
resolution: the baseline) and `--store compact` (the default). Measured:
  - bytes per frame (whole entries: images + audio + meta), and per part;
  - extraction CPU seconds per video;
  - views: every specialist's view at 224 px from both caches; native pixels (CM, RR) must be
    bit-exact, the rest is reported as PSNR (dB, mean and 5th percentile);
  - the loader: samples/s on one core (one process, one torch/OpenCV thread) building training
    samples (the full presets' augmentation included) for BG, CM, RR (frames) and AV, TM (clips).

    .venv/bin/python benchmarks/cache.py                      # 2 FF++ originals (12 videos) + 2 DFDC videos, 4 s
    .venv/bin/python benchmarks/cache.py --seconds 2 --samples 100   # quicker

Figures are printed as ratios against the full cache and written to benchmarks/results/cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPECIALISTS = ("bg", "cm", "rr", "av", "tm")
NATIVE_KEYS = ("luma", "dct", "residuals", "spectrum")  # CM's and RR's inputs cut from native pixels


def dfpanel(*args: str) -> float:
    """Run the CLI in a child process; its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "dfpanel", *args], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_videos(work: Path, videos: int, seconds: float) -> Path:
    manifest = work / "all.jsonl"
    if manifest.is_file():
        return manifest
    parts = []
    for layout, size, extra in (("ffpp", "1280x720", []), ("dfdc", "1920x1080", ["--parts", "1", "--test-videos", "0"])):
        root = work / f"{layout}_{size}"
        dfpanel("synth", "--layout", layout, "--out", str(root), "--videos", str(videos), "--seconds", f"{seconds:g}",
                "--size", size, "--seed", "5", *extra)
        dfpanel("index", str(root), "--out", str(work / f"{layout}.jsonl"))
        parts.append((work / f"{layout}.jsonl").read_text())
    manifest.write_text("".join(parts))
    return manifest


def cache_bytes(root: Path) -> dict:
    parts = {"context": 0, "native": 0, "crops": 0, "audio": 0, "meta": 0}
    frames = 0
    for meta in root.glob("*/*/meta.json"):
        frames += len(json.loads(meta.read_text())["frames"])
        for p in meta.parent.rglob("*"):
            if not p.is_file():
                continue
            rel = p.relative_to(meta.parent).as_posix()
            key = rel.split("/")[0] if "/" in rel else ("audio" if rel.startswith("audio") else "meta")
            parts[key] = parts.get(key, 0) + p.stat().st_size
    total = sum(parts.values())
    return {"frames": frames, "bytes": total, "kb_per_frame": total / frames / 1024,
            "kb_per_frame_by_part": {k: round(v / frames / 1024, 2) for k, v in parts.items() if v}}


def psnr(a, b) -> float:
    m = float(((a.double() - b.double()) ** 2).mean())
    return 99.0 if m == 0 else 10 * np.log10(1.0 / m)


def build_model(name: str, size: int):
    from dfpanel.models.specialists.base import create_specialist

    return create_specialist(name, backbone="tiny", pretrained=False, image_size=size)


def compare_views(full: Path, compact: Path, size: int) -> dict:
    """Per specialist and view key: bit-exact (native pixels) or PSNR of every sample, full vs compact."""
    import torch

    from dfpanel.extract.cache import FaceTrackCache
    from dfpanel.views.samples import sample_groups

    out = {}
    cf, cc = FaceTrackCache(full), FaceTrackCache(compact)
    rows = {(r.dataset, r.id): r for r in cc.rows()}
    for name in SPECIALISTS:
        model = build_model(name, size)
        view = model.view_fn()
        clip_len = model.config.get("clip_len")
        stats: dict[str, list[float]] = {}
        exact: dict[str, bool] = {}
        for row in cf.rows():
            ef, ec = cf.entry(row), cc.entry(rows[(row.dataset, row.id)])
            for positions in sample_groups(ef, model.sample_kind, clip_len)[::3]:
                vf, vc = view(ef, positions), view(ec, positions)
                for key, t in vf.items():
                    if not torch.is_tensor(t) or not t.is_floating_point() or t.dim() < 2:
                        continue
                    if key in NATIVE_KEYS:
                        exact[key] = exact.get(key, True) and bool(torch.equal(t, vc[key]))
                    else:
                        stats.setdefault(key, []).append(psnr(t, vc[key]))
        out[name] = {"bit_exact": exact,
                     "psnr_db": {k: {"mean": round(float(np.mean(v)), 2), "p5": round(float(np.percentile(v, 5)), 2),
                                     "min": round(float(np.min(v)), 2)} for k, v in stats.items()}}
    return out


def loader_rate(cache: Path, name: str, size: int, samples: int, seed: int = 0) -> float:
    """Samples/s of one process building training samples (augmentation of the full preset included)."""
    from dfpanel.extract.cache import FaceTrackCache
    from dfpanel.train.augment import CropAugmenter
    from dfpanel.train.config import load_stage_config
    from dfpanel.views.samples import specialist_dataset

    model = build_model(name, size)
    cfg = load_stage_config(f"{name}/ffpp")
    augment = CropAugmenter(cfg.augment.transforms)
    ds = specialist_dataset(model, cache, FaceTrackCache(cache).rows(), augment=augment or None)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(ds), samples + 5)
    for i in order[:5]:  # warm-up: imports, the entry LRU
        ds[int(i)]
    t = time.perf_counter()
    for i in order[5:]:
        ds[int(i)]
    return samples / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2, help="real videos per layout (FF++: each with 5 fakes)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224, help="specialists' image size")
    ap.add_argument("--samples", type=int, default=300, help="samples per loader measurement")
    ap.add_argument("--workdir", type=Path, default=None, help="keep videos and caches here (re-runs reuse them)")
    ap.add_argument("--out-json", type=Path, default=Path(__file__).parent / "results" / "cache.json")
    args = ap.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dfpanel-bench-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    manifest = make_videos(work, args.videos, args.seconds)
    n_videos = sum(1 for line in manifest.read_text().splitlines() if line.strip())
    print(f"{n_videos} videos (FF++ 1280x720 + DFDC 1920x1080, {args.seconds:g} s) ready in {time.perf_counter() - t:.0f} s")

    result: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "videos": n_videos,
                    "seconds": args.seconds, "frames_per_video": args.frames, "image_size": args.size}
    caches = {}
    for store in ("full", "compact"):
        root = work / f"cache_{store}"
        record = work / f"extract_{store}.json"  # the CPU time of the extraction that made this cache
        if not (root / "index.jsonl").is_file():
            cpu = dfpanel("extract", str(manifest), "--out", str(root), "--frames", str(args.frames), "--store", store,
                          "--workers", "1", "--no-progress")
            record.write_text(json.dumps({"cpu_s": cpu}))
        cpu = json.loads(record.read_text())["cpu_s"] if record.is_file() else None
        caches[store] = root
        size = cache_bytes(root)
        result[store] = {**size, "extract_cpu_s_per_video": None if cpu is None else round(cpu / n_videos, 2)}
        print(f"{store:8s} {size['kb_per_frame']:7.1f} KB/frame {size['kb_per_frame_by_part']}"
              + ("" if cpu is None else f", extraction {cpu / n_videos:.2f} CPU-s/video"))
    result["bytes_ratio"] = result["full"]["kb_per_frame"] / result["compact"]["kb_per_frame"]
    print(f"compact cache: {result['bytes_ratio']:.1f}x smaller per frame")

    result["views"] = compare_views(caches["full"], caches["compact"], args.size)
    for name, v in result["views"].items():
        exact = ", ".join(f"{k} {'bit-exact' if ok else 'DIFFERENT'}" for k, ok in v["bit_exact"].items())
        psnrs = ", ".join(f"{k} {p['mean']:.1f} dB (5th pct {p['p5']:.1f})" for k, p in v["psnr_db"].items())
        print(f"  {name}: {exact}{'; ' if exact and psnrs else ''}{psnrs}")

    import gc

    gc.freeze()  # as a training DataLoader worker does (datamodule.freeze_inherited_objects)
    result["loader"] = {}
    for name in SPECIALISTS:
        rates = {store: loader_rate(caches[store], name, args.size, args.samples) for store in ("full", "compact")}
        unit = "clips" if name in ("av", "tm") else "frame samples"
        result["loader"][name] = {"unit": unit, **{k: round(v, 1) for k, v in rates.items()},
                                  "ratio": round(rates["compact"] / rates["full"], 2)}
        print(f"loader {name}: {rates['compact']:.0f} {unit}/s per core (full cache: {rates['full']:.0f}; "
              f"{rates['compact'] / rates['full']:.1f}x)")
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out_json}")
    return result


if __name__ == "__main__":
    main()
