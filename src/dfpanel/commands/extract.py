"""`dfpanel extract MANIFEST --out CACHE` (videos -> face-track cache); `dfpanel cache ...` is in cache.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("extract")
    def extract(
        manifest: Path = typer.Argument(..., help="Manifest from `dfpanel index` (JSON lines)."),
        out: Path = typer.Option(..., "--out", "-o", help="Cache folder to write (created; re-runs resume)."),
        frames: int = typer.Option(32, "--frames", help="Frames sampled per video."),
        clip_len: int = typer.Option(8, "--clip-len", help="Consecutive frames per clip; clips spread evenly."),
        workers: int = typer.Option(1, "--workers", "-j", help="Worker processes decoding videos (and detecting faces, "
                                    "unless --detect-batch shares one detector between them)."),
        shard: str = typer.Option(
            "1/1", "--shard",
            help="Take share i of n (1-based), by a stable hash of the id. `auto` (or auto/N) reads i, and n, "
                 "from a SLURM array task or a Kubernetes Indexed Job (docs/extract.md).",
        ),
        detector: str = typer.Option("mtcnn", "--detector", help="Face detector."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N] for the detector."),
        detect_batch: Optional[int] = typer.Option(
            None, "--detect-batch", min=0,
            help="Frames per detector batch. > 0 with --workers > 1: one detector on --device serves every worker, "
                 "batching frames of several videos; 0: a detector per worker. Default: 64 with cuda, 0 on cpu.",
        ),
        all_faces: bool = typer.Option(False, "--all-faces", help="Keep every face track, not only the main one."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if any video failed."),
        split: Optional[str] = typer.Option(None, "--split", help="Only these splits, comma-separated (train,val,test)."),
        min_face_size: int = typer.Option(40, "--min-face-size", help="Smallest face to detect, in source pixels."),
        track: str = typer.Option(
            "refine", "--track",
            help="refine: follow faces frame to frame with the detector's last stage (real landmarks on every "
                 "frame); interpolate: detect every --detect-every frames and interpolate.",
        ),
        detect_every: int = typer.Option(
            4, "--detect-every", help="With --track interpolate: detector on every k-th frame of a clip (1 = all)."
        ),
        min_score: float = typer.Option(0.9, "--min-score", help="Ignore detections below this confidence."),
        max_side: int = typer.Option(640, "--max-side", help="Frames larger than this are downscaled for detection."),
        context_scale: float = typer.Option(2.0, "--context-scale", help="Stored crop side / face box side."),
        store: str = typer.Option(
            "compact", "--store",
            help="compact: the face (--face-px, --face-span) and its context (--context-px) in WebP + native pixels "
                 "round the face, lossless (~5x smaller); full: whole crops at native resolution, lossless PNG.",
        ),
        face_px: int = typer.Option(176, "--face-px", help="compact: largest face box side in the face layer, pixels."),
        face_span: float = typer.Option(1.4, "--face-span", help="compact: the face layer's side / face box side."),
        context_px: int = typer.Option(112, "--context-px", help="compact: largest face box side in the context layer."),
        native_size: int = typer.Option(224, "--native-size", help="compact: side of the lossless native window CM/RR read (>= their cm_size/rr_size)."),
        context_quality: int = typer.Option(85, "--context-quality", help="compact: WebP quality of the face and context layers."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Decode sampled clips, find and track faces, write crops + audio + meta to the cache.

        Every option but --workers, --shard, --device, --detect-batch, --split and --strict is part of the
        cache's input spec (CACHE/input_spec.json): weights trained on the cache extract videos the same way."""
        from dfpanel.errors import ConfigError
        from dfpanel.extract.array_job import resolve_shard
        from dfpanel.extract.run import ExtractConfig, run_extraction
        from dfpanel.index.manifest import SPLITS

        splits = [s.strip() for s in split.split(",") if s.strip()] if split else None
        bad = [s for s in splits or [] if s not in SPLITS]
        if bad:
            raise ConfigError(f"--split {split!r}: unknown split(s) {', '.join(bad)}; use {','.join(SPLITS)}")
        cfg = ExtractConfig(
            frames=frames, clip_len=clip_len, detector=detector, device=device, all_faces=all_faces,
            min_face_size=min_face_size, track=track, detect_every=detect_every, min_score=min_score,
            max_side=max_side, context_scale=context_scale, store=store, face_px=face_px, face_span=face_span,
            context_px=context_px, native_size=native_size, context_quality=context_quality, detect_batch=detect_batch,
        )
        shard_n, source = resolve_shard(shard)
        if source:  # say where an array job's share came from: its log then tells which task did what
            console.print(f"extract: shard {shard_n[0]}/{shard_n[1]} from {source}", highlight=False, soft_wrap=True)
        try:
            summary = run_extraction(
                manifest, out, cfg, workers=max(1, workers), shard=shard_n, strict=strict,
                progress=progress, splits=splits,
            )
        except KeyboardInterrupt as exc:  # Ctrl-C (130) or SIGTERM (143): what finished is on record
            done = getattr(exc, "summary", None)
            what = getattr(exc, "signal_name", "SIGINT")
            tally = f"{done['ok']} video(s) done this run, {done['failed']} failed, recorded in {out}; " if done else ""
            console.print(f"[red]extract interrupted[/] ({what}): {tally}re-run the same command to resume", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None
        print_summary(summary)
        if summary["exit_code"]:
            raise typer.Exit(summary["exit_code"])


def print_summary(summary: dict) -> None:
    console.print(
        f"extract: {summary['ok']} done, {summary['skipped']} already in the cache, [red]{summary['failed']} failed[/] "
        f"of {summary['selected']} (shard {summary['shard']}) in {summary['seconds']:.1f} s "
        f"({summary['videos_per_s']:.2f} videos/s, {summary['frames_per_s']:.1f} frames/s)",
        highlight=False,
    )
    det = summary.get("detector")
    if det:
        console.print(
            f"detector on {det['device']}: {det['frames']} frames + {det['crops']} face crops in {det['batches']} batches "
            f"({det['mean_requests_per_batch']:.1f} requests per batch, {det['net_seconds']:.1f} s in the networks)",
            highlight=False,
        )
    failures = summary["failures"]
    if not failures:
        return
    by_kind = Counter(f["error"] for f in failures)
    table = Table(title="failed videos", title_justify="left")
    table.add_column("video")
    table.add_column("error")
    table.add_column("reason", overflow="fold")
    for f in failures[:20]:
        table.add_row(f["id"], f["error"], f["reason"])
    console.print(table)
    more = " (first 20 shown)" if len(failures) > 20 else ""
    kinds = ", ".join(f"{k}: {n}" for k, n in by_kind.most_common())
    console.print(f"{len(failures)} failure(s){more} — {kinds}; all in {summary['report']}", highlight=False)
