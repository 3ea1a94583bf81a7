"""`dfpanel index ROOT --out manifest.jsonl`: a dataset folder -> one manifest row per video."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dfpanel.index.manifest import SPLITS, VideoRecord, summarize

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index(
        root: Path = typer.Argument(..., help="Dataset folder (FF++, Celeb-DF v2, DFDC, FakeAVCeleb, or real/ + fake/)."),
        out: Path = typer.Option(..., "--out", "-o", help="Manifest to write (JSON lines)."),
        dataset: Optional[str] = typer.Option(
            None, "--dataset", "-d", help="ffpp, celebdf, dfdc, fakeavceleb or folder; detected when left out."
        ),
        compression: str = typer.Option("c23", "--compression", help="FF++ quality folder: raw, c23 or c40."),
        dfdc_chunks: int = typer.Option(10, "--dfdc-chunks", help="Group the DFDC parts into this many chunks."),
        probe_audio: Optional[bool] = typer.Option(
            None, "--probe-audio/--no-probe-audio",
            help="Open each video to see if it has sound (default: only for the folder layout).",
        ),
    ) -> None:
        """Index a dataset: labels, fake types, splits and groups -> manifest.jsonl, plus a summary."""
        from dfpanel.index import index_dataset
        from dfpanel.index.manifest import check_manifest_out, write_manifest

        check_manifest_out(out)
        notes: list[str] = []
        with console.status(f"indexing {root} ..."):
            records = index_dataset(
                root, dataset, compression=compression, dfdc_chunks=dfdc_chunks, probe_audio=probe_audio, notes=notes
            )
        n = write_manifest(records, out)
        console.print(summary_table(records))
        console.print(f"wrote {n} rows to [bold]{out}[/] (dataset {records[0].dataset}, root {records[0].root})",
                      highlight=False, soft_wrap=True)
        n_synth = sum(1 for r in records if r.synthetic)
        if n_synth:
            console.print(f"[yellow]note:[/] {n_synth} of {len(records)} videos were made by `dfpanel synth` "
                          "(marked synthetic; weights trained on them will say so)", highlight=False, soft_wrap=True)
        for note in notes:
            console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
        shared = groups_in_several_splits(records)
        if shared:
            why = ("Celeb-DF's official test list shares identities with train" if records[0].dataset == "celebdf"
                   else "identities or original videos shared across splits")
            console.print(f"[yellow]note:[/] {shared} group(s) appear in more than one split ({why})",
                          highlight=False, soft_wrap=True)


def summary_table(records: list[VideoRecord]) -> Table:
    """Rows: videos, real, fake, then each fake type; columns: the splits present and a total."""
    counts = summarize(records)
    splits = [s for s in SPLITS if counts["split"][s]]
    fake_types = sorted({ft for (_, ft) in counts["fake_type"]} - {"real"})
    audio = Counter(r.split for r in records if r.has_audio)

    table = Table(title=f"{records[0].dataset}: {len(records)} videos", title_justify="left")
    table.add_column("")
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")

    def row(name: str, per_split: dict[str, int], style: str | None = None) -> None:
        table.add_row(name, *(str(per_split.get(s, 0)) for s in splits), str(sum(per_split.values())), style=style)

    row("videos", counts["split"], "bold")
    for label in ("real", "fake"):
        row(label, {s: counts["label"][(s, label)] for s in splits})
    for ft in fake_types:
        row(f"  {ft}", {s: counts["fake_type"][(s, ft)] for s in splits}, "dim")
    if audio:
        row("with audio", audio, "dim")
    return table


def groups_in_several_splits(records: list[VideoRecord]) -> int:
    splits_of: dict[str, set[str]] = {}
    for r in records:
        splits_of.setdefault(r.group, set()).add(r.split)
    return sum(1 for s in splits_of.values() if len(s) > 1)
