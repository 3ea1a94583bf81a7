"""`dfpanel cache ...`: work on a face-track cache as a whole (`merge` caches, `pack` one into shards,
`convert` a full cache to compact storage).

The group is made here; each sub-command is one function below, so another (e.g. `convert`) is added
by writing one more `@cache_app.command(...)` in `register`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

console = Console()


def _names(text: str | None) -> list[str] | None:
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    return names or None


def register(app: typer.Typer) -> None:
    cache_app = typer.Typer(help="Manage face-track caches: merge shards of an extraction, pack for streaming, convert to compact.",
                            no_args_is_help=True)

    @cache_app.command("merge")
    def merge(
        out: Path = typer.Argument(..., help="Cache to merge into (created if missing; may be one of the inputs)."),
        caches: List[Path] = typer.Argument(..., help="Caches to merge (e.g. one per shard)."),
        move: bool = typer.Option(False, "--move", help="Move entries instead of copying them."),
    ) -> None:
        """Join caches: entries copied (or moved) into OUT, index rebuilt, reports merged."""
        from dfpanel.extract.merge import merge_caches

        res = merge_caches(out, list(caches), move=move)
        console.print(
            f"merged {len(caches)} cache(s) into [bold]{res['out']}[/]: {res['entries']} entries "
            f"({res['copied']} {'moved' if move else 'copied'}, {res['missing']} missing on disk), "
            f"{res['failed']} failed video(s) on record",
            highlight=False,
        )

    @cache_app.command("pack")
    def pack(
        cache: Path = typer.Argument(..., help="Face-track cache (from `dfpanel extract`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the shards, shards.json and input_spec.json."),
        shard_size: str = typer.Option("1GB", "--shard-size", help="Largest shard file: 500MB, 1GB, 64KB (KiB/MiB/GiB: powers of 1024)."),
        split: Optional[str] = typer.Option(None, "--split", help="Only these splits, comma-separated (train,val,test)."),
        dataset: Optional[str] = typer.Option(None, "--dataset", help="Only these datasets, comma-separated (ffpp,dfdc)."),
        quiet: bool = typer.Option(False, "--quiet", help="No line per shard."),
    ) -> None:
        """Pack the cache into WebDataset tar shards to stream training from (`dfpanel train --data OUT`,
        or a URL of OUT's copy). Re-running resumes: unchanged shards are kept."""
        from dfpanel.extract.shards import format_size, pack_cache, parse_size

        size = parse_size(shard_size)

        def on_shard(i: int, n: int, rec: dict, reused: bool) -> None:
            if not quiet:
                what = "kept" if reused else "wrote"
                console.print(f"  [{i + 1}/{n}] {what} {rec['file']}: {rec['n_videos']} videos, {format_size(rec['size'])}",
                              highlight=False)

        res = pack_cache(cache, out, size, splits=_names(split), datasets=_names(dataset), on_shard=on_shard)
        missing = f"; {res['missing']} indexed video(s) had no entry on disk" if res["missing"] else ""
        console.print(
            f"packed {res['videos']} videos into {res['shards']} shard(s) of at most {format_size(size)} in "
            f"[bold]{res['out']}[/] ({format_size(res['bytes'])}; {res['written']} written, {res['reused']} kept "
            f"from before){missing}; train with --data {res['out']}",
            highlight=False, soft_wrap=True,
        )

    @cache_app.command("convert")
    def convert(
        cache: Path = typer.Argument(..., help="A cache stored full (lossless PNG crops: caches before compact storage)."),
        out: Path = typer.Option(..., "--out", "-o", help="The compact cache to write (a new folder; re-running resumes)."),
        face_px: Optional[int] = typer.Option(None, "--face-px", help="Face layer: largest face box side (default 176)."),
        context_px: Optional[int] = typer.Option(None, "--context-px", help="Context layer: largest face box side (default 112)."),
        native_size: Optional[int] = typer.Option(None, "--native-size", help="Lossless native window side (default 224)."),
        context_quality: Optional[int] = typer.Option(None, "--context-quality", help="WebP quality (default 85)."),
    ) -> None:
        """Rewrite a full cache as a compact one (~5x smaller) without decoding any video again; the
        same bytes as `dfpanel extract --store compact` writes. Weights trained on the old cache keep
        working with it; train on the new one for weights whose input spec says compact."""
        from dfpanel.extract.convert import convert_cache

        stats = convert_cache(cache, out, face_px=face_px, context_px=context_px, native_size=native_size,
                              context_quality=context_quality)
        ratio = stats["bytes_before"] / stats["bytes_after"] if stats["bytes_after"] else 0.0
        console.print(
            f"converted {stats['converted']} entries ({stats['frames']} frames; {stats['skipped']} already there) into "
            f"[bold]{out}[/]" + (f": {ratio:.1f}x smaller" if ratio else ""),
            highlight=False,
        )

    app.add_typer(cache_app, name="cache")
