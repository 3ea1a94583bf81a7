"""`dfpanel synth`: write a synthetic dataset in a real dataset's on-disk layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from dfpanel.errors import DfpanelError

LAYOUT_CHOICES = ("ffpp", "celebdf", "dfdc", "fakeavceleb", "folder")


def parse_size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise DfpanelError(f"--size {text!r} is not WIDTHxHEIGHT; write it like 320x240")
    return int(m.group(1)), int(m.group(2))


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        layout: str = typer.Option(..., "--layout", help=f"Dataset layout to write: {', '.join(LAYOUT_CHOICES)}."),
        out: Path = typer.Option(..., "--out", help="Folder to write the dataset into (created; resumable)."),
        videos: int = typer.Option(
            4, "--videos",
            help="Real source videos. ffpp: originals, each with one fake per method (5). celebdf: real clips "
            "(2/3 Celeb-real, each with up to 2 Celeb-synthesis fakes; 1/3 YouTube-real). dfdc: real videos per "
            "part, each with one fake. fakeavceleb: RealVideo-RealAudio clips, each with one fake per other "
            "category (3). folder: real videos, each with one fake (one per trace with --traces).",
        ),
        seconds: float = typer.Option(2.0, "--seconds", help="Length of every video in seconds."),
        size: str = typer.Option("320x240", "--size", help="Frame size WIDTHxHEIGHT (even numbers)."),
        fps: float = typer.Option(25.0, "--fps", help="Frames per second."),
        seed: int = typer.Option(0, "--seed", help="Everything follows from this seed."),
        compression: list[str] = typer.Option(
            ["c23"], "--compression",
            help="ffpp only, repeatable: c0 (near-lossless, crf 1), c23 (crf 23), c40 (crf 40).",
        ),
        parts: int = typer.Option(2, "--parts", help="dfdc only: number of dfdc_train_part_K folders."),
        test_videos: Optional[int] = typer.Option(
            None, "--test-videos", show_default="same as --videos",
            help="dfdc only: real videos in the public test set test/labels.csv, each with one fake; 0 = none.",
        ),
        traces: Optional[str] = typer.Option(
            None, "--traces",
            help="folder only: comma-separated traces (face_swap, relight, recompress, temporal_jitter, audio_shift, "
            "audio_replace); each real video gets one fake per trace, carrying that trace alone, under fake/<trace>/. "
            "Default: one fake per real with a mixed recipe.",
        ),
        preview: bool = typer.Option(
            False, "--preview", help="Also save DIR/preview_real.png and DIR/preview_fake.png (one frame each)."
        ),
    ) -> None:
        """Write a synthetic deepfake dataset in the exact layout of FF++, Celeb-DF v2, DFDC, FakeAVCeleb or a plain folder."""
        from rich.console import Console

        from dfpanel.synth import synthesize
        from dfpanel.synth.preview import save_preview

        if layout not in LAYOUT_CHOICES:
            raise DfpanelError(f"--layout {layout!r} is unknown; choose one of {', '.join(LAYOUT_CHOICES)}")
        sidecar = synthesize(layout, out, videos=videos, seconds=seconds, size=parse_size(size), fps=fps, seed=seed,
                             compressions=tuple(compression), parts=parts, test_videos=test_videos,
                             traces=None if traces is None else tuple(traces.split(",")), progress=True)
        entries = sidecar["videos"].values()
        n_fake = sum(e["label"] for e in entries)
        Console().print(f"{layout}: {len(sidecar['videos'])} videos ({len(sidecar['videos']) - n_fake} real, "
                        f"{n_fake} fake) in {out}")
        if preview:
            real_png, fake_png = save_preview(out, sidecar, Path(out) / "preview_real.png", Path(out) / "preview_fake.png")
            Console().print(f"preview: {real_png}, {fake_png}")
