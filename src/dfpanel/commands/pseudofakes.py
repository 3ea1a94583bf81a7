"""`dfpanel pseudofakes preview CACHE --out DIR`: see what the pseudo-fake generators make of real videos."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Pseudo-fakes: fake traces made from real videos (preview them).", no_args_is_help=True)
    app.add_typer(group, name="pseudofakes")

    @group.command("preview")
    def preview(
        cache: Path = typer.Argument(..., help="Face-track cache (from `dfpanel extract`); its real videos are used."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder to write the previews and index.json into."),
        generator: Optional[List[str]] = typer.Option(None, "--generator", "-g", help="Generator name (repeatable; default: all)."),
        videos: int = typer.Option(2, "--videos", "-n", help="Real videos per generator."),
        seed: int = typer.Option(0, "--seed", help="Seed of every draw (same seed, same files)."),
    ) -> None:
        """Per generator and real video: OUT/<generator>/<dataset>__<video>/preview.png (original | pseudo-fake |
        mask, a row per frame), original.wav + pseudofake.wav where the audio changed, and OUT/index.json."""
        from dfpanel.pseudofakes.preview import preview_pseudofakes

        index = preview_pseudofakes(cache, out, generator or None, videos=videos, seed=seed)
        made = [s for s in index["samples"] if "files" in s]
        typer.echo(f"wrote {len(made)} pseudo-fake previews ({len(index['samples']) - len(made)} skipped) to {out} "
                   f"(index: {out / 'index.json'})")
