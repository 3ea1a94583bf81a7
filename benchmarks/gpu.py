"""GPU figures, each against a baseline measured in the same run, for whatever CUDA GPU is present.

    python benchmarks/gpu.py                      # on a machine with a CUDA GPU (about 5-8 min on one)
    python benchmarks/gpu.py --only train,detect  # a subset of: extract, train, detect
    python benchmarks/gpu.py --smoke              # every step at tiny sizes on the CPU: tests the script

Without CUDA (and without --smoke) it says so and exits 0, measuring nothing. Steps:

  extract  `dfpanel synth` videos (folder layout, --videos pairs of --seconds at --size) extracted with
           --workers = the machine's cores, on the GPU (--device cuda: one batched detector serving every
           worker, dfpanel.extract.batched) against the CPU path (a detector per worker): videos/s and
           worker CPU seconds per video. Its cache feeds `train`.
  train    per specialist (bg, av, cm, rr, tm), its GPU preset (<spec>/ffpp: EfficientNet-B4, not
           pretrained, 224 px, the preset's batch size) with bf16 autocast (fp16 where bf16 is missing):
           samples/s through SpecialistModule + lightning.Trainer + CacheDataModule (`dfpanel train`'s
           pipeline) against a bare PyTorch loop over the same batches with the same autocast
           (benchmarks/train.py's `measure`; goal pipeline/bare >= 0.9), and the loader headroom: the
           DataLoader alone with cores - 1 workers against the bare model's samples/s (goal >= 1.5).
  detect   `dfpanel detect`'s pipeline on a 10 s 1280x720 video (benchmarks/detect.py's) with five
           random-init B4 specialists, warm (best of --repeats after a first run), on the GPU against
           the same on the CPU (all cores); goal <= 1 s on the GPU.
Writes benchmarks/results/gpu.json (--smoke: gpu_smoke.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECIALISTS = ("bg", "av", "cm", "rr", "tm")
STEPS = ("extract", "train", "detect")


def _bench(name: str):
    """A sibling benchmark as a module (its helpers are reused, not copied)."""
    spec = importlib.util.spec_from_file_location(f"dfpanel_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- extract -------------------------------------------------------------------------------------


def bench_extract(work: Path, args, device: str) -> tuple[dict, Path]:
    """Returns the figures and the CPU path's cache (training reads it)."""
    from dfpanel.extract.run import _WorkerPool, run_extraction
    from dfpanel.extract.video import ExtractConfig
    from dfpanel.index import index_dataset
    from dfpanel.index.manifest import write_manifest
    from dfpanel.synth import synthesize

    w, h = (int(v) for v in args.size.lower().split("x"))
    t = time.perf_counter()
    synthesize("folder", work / "data", videos=args.videos, seconds=args.seconds, size=(w, h), progress=False)
    records = index_dataset(work / "data")
    write_manifest(records, work / "manifest.jsonl")
    print(f"extract: {len(records)} synthetic videos of {args.seconds:g} s at {w}x{h} made in {time.perf_counter() - t:.1f} s")

    workers = max(2, args.workers or cores())
    runs = {}
    cpu_cfg = ExtractConfig(frames=args.frames, clip_len=8, device="cpu", detect_batch=0)
    _WorkerPool(cpu_cfg, workers).start().shutdown()  # the fork server's one-time start (imports torch), not timed
    for name, cfg in (("cpu", cpu_cfg),
                      ("gpu", ExtractConfig(frames=args.frames, clip_len=8, device=device, detect_batch=args.detect_batch))):
        t = time.perf_counter()
        s = run_extraction(work / "manifest.jsonl", work / f"cache_{name}", cfg, workers=workers, progress=False)
        secs = time.perf_counter() - t
        runs[name] = {"device": cfg.device, "detect_batch": cfg.detect_batch, "workers": workers, "seconds": round(secs, 3),
                      "ok": s["ok"], "failed": s["failed"], "videos_per_s": s["ok"] / secs,
                      "worker_cpu_s_per_video": s["video_cpu_seconds"] / max(s["ok"] + s["failed"], 1),
                      "detector": s.get("detector")}
        if s["failed"]:
            print(f"  warning: {s['failed']} failed: {[f['reason'] for f in s['failures']][:3]}", file=sys.stderr)
    cpu, gpu = runs["cpu"], runs["gpu"]
    figures = {**runs, "videos_per_s_vs_cpu": gpu["videos_per_s"] / cpu["videos_per_s"],
               "worker_cpu_s_per_video_vs_cpu": gpu["worker_cpu_s_per_video"] / cpu["worker_cpu_s_per_video"]}
    print(f"extract: {gpu['videos_per_s']:.2f} videos/s on {device} vs {cpu['videos_per_s']:.2f} on the CPU path "
          f"({figures['videos_per_s_vs_cpu']:.2f}x), {workers} workers; worker CPU per video "
          f"{gpu['worker_cpu_s_per_video']:.2f} s vs {cpu['worker_cpu_s_per_video']:.2f} s "
          f"({figures['worker_cpu_s_per_video_vs_cpu']:.2f}x)")
    return figures, work / "cache_cpu"


# -- train ---------------------------------------------------------------------------------------


def bench_train(cache: Path, work: Path, args, precision: str) -> dict:
    from dfpanel.train.config import load_stage_config

    measure = _bench("train").measure
    loader_workers = 0 if args.smoke else max(1, cores() - 1)
    out = {}
    for spec in args.specialists:
        preset = f"{spec}/tiny_ffpp" if args.smoke else f"{spec}/ffpp"
        cfg = load_stage_config(preset, [
            f"data.cache={cache}", "data.dataset=null", "data.max_videos=null", "model.pretrained=false",
            f"model.image_size={64 if args.smoke else 224}", f"data.num_workers={loader_workers}",
            f"trainer.max_steps={args.steps + args.warmup}", "trainer.max_epochs=1000", "trainer.limit_val_batches=0",
            f"trainer.precision={precision}", "trainer.checkpoint_every_n_steps=0", "trainer.early_stopping_patience=0",
            "trainer.num_sanity_val_steps=0", "optim.schedule=constant", "optim.grad_clip=null", "optim.pos_weight=null",
        ])
        drawn = max(args.warmup, 2 * loader_workers) + args.steps
        cfg.data.samples_per_epoch = max(drawn, args.steps + args.warmup) * cfg.data.batch_size
        t = time.perf_counter()
        fig = measure(cfg, work / f"train_{spec}", args.steps, args.warmup)
        fig.update(backbone=cfg.model.backbone, image_size=cfg.model.image_size, batch_size=cfg.data.batch_size,
                   loader_workers=loader_workers, seconds=round(time.perf_counter() - t, 1))
        out[spec] = fig
        print(f"train {spec}: pipeline {fig['pipeline_samples_per_s']:.1f} samples/s = {fig['pipeline_vs_bare']:.2f}x bare "
              f"({fig['bare_samples_per_s']:.1f}, {fig['precision']}), lightning alone {fig['lightning_vs_bare']:.2f}x; "
              f"loader ({loader_workers} workers) {fig['loader_vs_bare']:.2f}x the model")
    return out


# -- detect --------------------------------------------------------------------------------------


def bench_detect(work: Path, args, device: str) -> dict:
    import torch

    from dfpanel.detect.pipeline import DetectConfig, PanelDetector
    from dfpanel.inference.runners import load_runners
    from dfpanel.panel.combiner import load_panel

    det = _bench("detect")
    seconds, size = (2.0, (320, 240)) if args.smoke else (10.0, (1280, 720))
    video = det.make_video(work / "clip.mp4", seconds, size)
    det.save_tiny_weights(work / "weights", 64 if args.smoke else 224, 8, backbone="tiny" if args.smoke else "efficientnet_b4")
    torch.set_num_threads(cores())
    out = {}
    for key, where in (("gpu", device), ("cpu", "cpu")):  # (smoke: "gpu" is the CPU too)
        runners = load_runners(work / "weights", device=where)
        detector = PanelDetector(runners, load_panel(work / "weights"), DetectConfig(frames=32, clip_len=8, device=where))
        runs = [det.run_once(detector, video, work / f"report_{key}_{k}") for k in range(1 + args.repeats)]
        warm = min(runs[1:], key=lambda r: r["total"])
        out[key] = {
            "device": where, "warm_s": round(warm["total"], 3), "cold_s": round(runs[0]["total"], 3),
            "steps_s": {k: round(warm.get(k, 0.0), 3) for k in det.STEPS}}
        del runners, detector
    gpu_s, cpu_s = out["gpu"]["warm_s"], out["cpu"]["warm_s"]
    out.update(video={"seconds": seconds, "size": list(size)}, speedup_vs_cpu=round(cpu_s / gpu_s, 2), goal_s=1.0,
               meets_goal=gpu_s <= 1.0)
    print(f"detect: {seconds:g} s {size[0]}x{size[1]} video, five {'tiny' if args.smoke else 'B4'} specialists, warm: "
          f"{gpu_s:.2f} s on {device} vs {cpu_s:.2f} s on the CPU ({out['speedup_vs_cpu']:.1f}x); goal <= 1 s: "
          f"{'met' if out['meets_goal'] else 'NOT met'}")
    return out


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="every step at tiny sizes on the CPU (tests the script)")
    ap.add_argument("--only", default=",".join(STEPS), help="steps to run, comma-separated: extract,train,detect")
    ap.add_argument("--specialists", default=",".join(SPECIALISTS))
    ap.add_argument("--videos", type=int, default=None, help="synthetic real/fake pairs (default 6; smoke 3)")
    ap.add_argument("--seconds", type=float, default=None, help="their length (default 4; smoke 1)")
    ap.add_argument("--size", default=None, help="their size (default 1280x720; smoke 320x240)")
    ap.add_argument("--frames", type=int, default=None, help="frames extracted per video (default 32; smoke 16)")
    ap.add_argument("--workers", type=int, default=0, help="extraction workers (default: the machine's cores)")
    ap.add_argument("--detect-batch", type=int, default=None, help="GPU extraction's detector batch (default 64; smoke 8)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 30; smoke 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5; smoke 1)")
    ap.add_argument("--repeats", type=int, default=None, help="warm detect runs (default 3; smoke 1)")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/gpu.json; smoke gpu_smoke.json)")
    args = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("benchmarks/gpu.py: no CUDA GPU found (torch.cuda.is_available() is False); nothing measured. "
              "`--smoke` runs every step at tiny sizes on the CPU to test the script.")
        return 0
    smoke = {"videos": 3, "seconds": 1.0, "size": "320x240", "frames": 16, "detect_batch": 8, "steps": 2, "warmup": 1, "repeats": 1}
    full = {"videos": 6, "seconds": 4.0, "size": "1280x720", "frames": 32, "detect_batch": 64, "steps": 30, "warmup": 5, "repeats": 3}
    for key, value in (smoke if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.specialists = [s.strip() for s in args.specialists.split(",") if s.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only + args.specialists if s not in STEPS + SPECIALISTS]
    if unknown:
        ap.error(f"unknown step or specialist: {', '.join(unknown)}")
    out = Path(args.out or HERE / "results" / ("gpu_smoke.json" if args.smoke else "gpu.json"))

    device = "cuda" if cuda and not args.smoke else "cpu"
    if device == "cuda":
        torch.zeros(1, device="cuda")  # the CUDA context, before anything is timed
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    else:
        precision = "32"
    report = {
        "benchmark": "gpu", "smoke": args.smoke, "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "torch": torch.__version__, "python": platform.python_version(), "cpus": cores(), "precision": precision,
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "goals": {"train pipeline_vs_bare": ">= 0.9", "train loader_vs_bare": ">= 1.5", "detect gpu warm_s": "<= 1.0"},
    }
    with tempfile.TemporaryDirectory(prefix="dfpanel-bench-gpu-") as tmp:
        work = Path(tmp)
        cache = None
        if "extract" in only or "train" in only:  # training reads the extracted cache
            report["extract"], cache = bench_extract(work, args, device)
        if "train" in only:
            report["train"] = bench_train(cache, work, args, precision)
        if "detect" in only:
            report["detect"] = bench_detect(work, args, device)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
