"""Training throughput: the dfpanel pipeline (Lightning Trainer + CacheDataModule) against a bare
PyTorch/timm training loop over the same batches, measured in the same run.

    python benchmarks/train.py                                   # CPU-sized defaults (tiny backbone)
    python benchmarks/train.py --steps 6 --videos 8 --frames 4   # quick
    python benchmarks/train.py --backbone efficientnet_b4 --image-size 224 --batch-size 32 --num-workers 8  # GPU

Figures (samples/s, after `--warmup` steps):
  bare       plain loop: forward, BCE(logit) + aux BCE, backward, AdamW step, on batches held in memory
             (run first and last; the faster run counts)
  lightning  the same batches through SpecialistModule + lightning.Trainer (framework overhead only)
  pipeline   SpecialistModule + Trainer + CacheDataModule reading the cache (what `dfpanel train` runs)
  loader     the train DataLoader alone (PNG decode, augmentation, view), no model
Ratios: lightning/bare and pipeline/bare (goal >= 0.9), loader/bare (>= 1 means the model, not the
loader, sets the pace). Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_cache(root: Path, videos: int, frames: int, size: int, clip_len: int) -> Path:
    """Synthetic cache: `videos` per split, half real half fake, `frames` crops of size x size each."""
    from dfpanel.extract.cache import (
        CacheIndexRow,
        EntryWriter,
        FrameRecord,
        TrackMeta,
        append_index_row,
    )

    rng = np.random.default_rng(0)
    (root / "index.jsonl").parent.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        for i in range(videos):
            label, vid = i % 2, f"{split}_{i}"
            w = EntryWriter(root, "ffpp", vid)
            recs = []
            for pos in range(frames):
                img = np.clip(rng.normal(80 + 60 * label, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                q = size // 4
                recs.append(FrameRecord(index=pos, time=pos / 25, clip=pos // clip_len, box=[q, q, 3 * q, 3 * q],
                                        crop_box=[0, 0, size, size], file=w.add_crop(pos, img), score=1.0,
                                        landmarks=[[1.4 * q, 1.6 * q], [2.6 * q, 1.6 * q], [2 * q, 2 * q],
                                                   [1.6 * q, 2.5 * q], [2.4 * q, 2.5 * q]]))
            w.commit(TrackMeta(video_id=vid, dataset="ffpp", source="", source_size=[size, size], fps=25.0,
                               duration=frames / 25, codec="h264", rotation=0, clip_len=clip_len, frames=recs, audio=None))
            append_index_row(root, CacheIndexRow(id=vid, dataset="ffpp", dir=f"ffpp/{vid}", label=label,
                                                 fake_type="real" if label == 0 else "Deepfakes", split=split,
                                                 group=vid, has_audio=False, chunk=None, n_frames=frames,
                                                 n_clips=frames // clip_len))
    return root


class StepTimer:
    """Wall time of optimizer steps after `warmup` (a Lightning callback)."""

    def __init__(self, warmup: int):
        from lightning.pytorch.callbacks import Callback

        timer = self

        class _CB(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == warmup and timer.start is None:
                    timer.start = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                _sync()
                timer.end = time.perf_counter()

        self.start: float | None = None
        self.end: float | None = None
        self.callback = _CB()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


AUTOCAST = {"bf16-mixed": "bfloat16", "16-mixed": "float16"}  # Lightning precision -> autocast dtype


def bare_loop(model, batches, device, lr, aux_weight, warmup, precision: str = "32-true") -> float:
    """Plain PyTorch training steps; `precision` as Lightning names it: autocast around forward and
    loss as Lightning's mixed-precision plugin does (a GradScaler for float16)."""
    import torch
    import torch.nn.functional as F

    model.train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    dtype = getattr(torch, AUTOCAST[precision]) if precision in AUTOCAST else None
    scaler = torch.amp.GradScaler(device) if dtype is torch.float16 else None
    start = None
    for i, (inputs, labels, _) in enumerate(batches):
        if i == warmup:
            _sync()
            start = time.perf_counter()
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        labels = labels.to(device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            out = model(inputs)
            loss = F.binary_cross_entropy_with_logits(out.logit.float(), labels) + aux_weight * F.binary_cross_entropy_with_logits(out.aux_logit.float(), labels)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
    _sync()
    return time.perf_counter() - start


def measure(cfg, workdir: Path, steps: int, warmup: int) -> dict:
    """bare, lightning, pipeline and loader samples/s for the stage config `cfg` (its cache, batch
    size, loader workers and precision), measured in this order: loader (its batches are what bare
    and lightning train on), bare, lightning, pipeline, bare again (the faster bare run counts, so
    warm caches never favour the pipeline). The loader is timed after 2 batches per worker (they
    start together, so their first batches arrive at once)."""
    import torch
    from torch.utils.data import DataLoader

    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.train.datamodule import CacheDataModule
    from dfpanel.train.module import SpecialistModule
    from dfpanel.train.run import build_trainer, resolve_precision, view_of

    device = "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    precision = resolve_precision(str(cfg.trainer.precision), device == "cuda")
    batch_size, total = cfg.data.batch_size, steps + warmup
    make = lambda: create_specialist(cfg.specialist, **cfg.model.kwargs())  # noqa: E731
    torch.manual_seed(0)
    model = make()
    dm = CacheDataModule(cfg, view_of(model), model.sample_kind)

    # loader alone; its batches are also what bare and lightning train on
    loader_warmup = max(warmup, 2 * cfg.data.num_workers)
    batches, t0 = [], None
    for i, batch in enumerate(dm.train_dataloader()):
        if i == loader_warmup:
            t0 = time.perf_counter()
        if len(batches) < total:
            batches.append(batch)
        if i + 1 == loader_warmup + steps:
            break
    else:
        raise SystemExit(f"the loader gave fewer than {loader_warmup + steps} batches; raise data.samples_per_epoch")
    loader_s = time.perf_counter() - t0
    timed_samples = steps * batch_size

    bare_s = bare_loop(model, batches, device, cfg.optim.lr, cfg.optim.aux_weight, warmup, precision)

    def lightning_run(datamodule_or_loader, name: str) -> float:
        torch.manual_seed(0)
        module = SpecialistModule(cfg.specialist, cfg.model.kwargs(), vars(cfg.optim).copy(), model=make())
        timer = StepTimer(warmup)
        trainer = build_trainer(cfg, workdir / name, [timer.callback], progress=False)
        if isinstance(datamodule_or_loader, CacheDataModule):
            trainer.fit(module, datamodule=datamodule_or_loader)
        else:
            trainer.fit(module, train_dataloaders=datamodule_or_loader)
        return timer.end - timer.start

    lightning_s = lightning_run(DataLoader(batches, batch_size=None, shuffle=False), "lightning")
    pipeline_s = lightning_run(dm, "pipeline")
    torch.manual_seed(0)
    bare_s = min(bare_s, bare_loop(make(), batches, device, cfg.optim.lr, cfg.optim.aux_weight, warmup, precision))

    rate = lambda s: timed_samples / s  # noqa: E731
    return {
        "device": device,
        "precision": precision,
        "bare_samples_per_s": rate(bare_s),
        "lightning_samples_per_s": rate(lightning_s),
        "pipeline_samples_per_s": rate(pipeline_s),
        "loader_samples_per_s": rate(loader_s),
        "lightning_vs_bare": bare_s / lightning_s,
        "pipeline_vs_bare": bare_s / pipeline_s,
        "loader_vs_bare": bare_s / loader_s,
        "model_steps_per_s": steps / bare_s,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specialist", default="rr")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--videos", type=int, default=16, help="videos per split")
    ap.add_argument("--frames", type=int, default=8, help="frames per video")
    ap.add_argument("--crop", type=int, default=96, help="cached crop size (px)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args(argv)

    import lightning as L
    import torch

    from dfpanel.train.config import load_stage_config

    total = args.steps + args.warmup
    drawn = max(args.warmup, 2 * args.num_workers) + args.steps  # batches the loader is timed over (measure)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = make_cache(tmp / "cache", args.videos, args.frames, args.crop, clip_len=4)
        cfg = load_stage_config(f"{args.specialist}/tiny_ffpp", [
            f"data.cache={cache}", f"model.backbone={args.backbone}", f"model.image_size={args.image_size}",
            "model.clip_len=4", f"data.batch_size={args.batch_size}", f"data.num_workers={args.num_workers}",
            "data.max_videos=null", "data.frames_per_video=null", f"data.samples_per_epoch={max(total, drawn) * args.batch_size}",
            f"trainer.max_steps={total}", "trainer.max_epochs=1000", "trainer.limit_val_batches=0",
            "trainer.precision=auto", "optim.schedule=constant", "optim.grad_clip=null", "optim.pos_weight=null",
            "trainer.checkpoint_every_n_steps=0",
        ])
        figures = measure(cfg, tmp, args.steps, args.warmup)
    device = figures.pop("device")
    figures.pop("precision")

    report = {
        "benchmark": "train",
        "args": vars(args),
        "device": device,
        "torch": torch.__version__,
        "lightning": L.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "figures": figures,
        "goal": "pipeline_vs_bare >= 0.9",
    }
    print(f"{'':10s} {'samples/s':>10s} {'x bare':>8s}")
    for name in ("bare", "lightning", "pipeline", "loader"):
        print(f"{name:10s} {figures[name + '_samples_per_s']:10.2f} {figures[name + '_samples_per_s'] / figures['bare_samples_per_s']:8.2f}")
    print(f"model steps/s {figures['model_steps_per_s']:.2f}; goal pipeline/bare >= 0.9: "
          f"{'met' if figures['pipeline_vs_bare'] >= 0.9 else 'NOT met'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
