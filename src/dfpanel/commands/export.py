"""`dfpanel export`: every specialist in a weights folder to ONNX, plus the panel, for
`dfpanel detect --backend onnx`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        weights: Path = typer.Option(..., "--weights", "-w", help="Folder with one .safetensors + .json per specialist."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for <name>.onnx + <name>.onnx.json and panel.json (may be --weights)."),
        only: str = typer.Option(None, "--only", help="Comma-separated specialists to export (default: all)."),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="Check onnxruntime matches PyTorch within 1e-4."),
    ) -> None:
        """Export each specialist to ONNX (dynamic batch) for `dfpanel detect --backend onnx`."""
        from rich.console import Console

        from dfpanel.weights.export import export_folder
        from dfpanel.weights.sidecar import read_sidecar

        con = Console(highlight=False)
        names = [s.strip() for s in only.split(",") if s.strip()] if only else None
        with con.status("exporting to ONNX…"):
            paths = export_folder(weights, out, names, verify=verify)
        for p in paths:
            meta = read_sidecar(p)
            diff = meta.get("max_abs_diff")
            check = f"max |torch - onnx| {diff:.1e}" if diff is not None else "not verified"
            con.print(f"[green]✓[/] {meta['specialist'].upper()}: {p} ({check})")
        con.print(f"{len(paths)} specialist(s) exported to {out}; run `dfpanel detect --weights {out} --backend onnx`")
