"""`dfpanel export`: every specialist in a weights folder to ONNX, plus the panel, for
`dfpanel detect --backend onnx`."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def export_folder(weights: Path, out: Path, only: list[str] | None = None, verify: bool = True) -> list[Path]:
    """`<stem>.onnx` + `<stem>.onnx.json` per specialist (the sidecar keeps the source weights' sha256
    and stage, so reports name the same weights ids) and panel.json."""
    from dfpanel.detect.weights import find_weights
    from dfpanel.models.export import export_onnx, onnx_sidecar_path
    from dfpanel.models.panel import PANEL_FILE, Panel
    from dfpanel.models.weights import file_sha256, load_specialist

    files = find_weights(weights, "torch")
    if only:
        files = [f for f in files if f.specialist in {s.lower() for s in only}]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        model = load_specialist(f.path, device="cpu")
        dest = export_onnx(model, out / f"{f.path.stem}.onnx", verify=verify)
        side = onnx_sidecar_path(dest)
        meta = json.loads(side.read_text())
        meta.update(sha256=f.sidecar.get("sha256"), stage=f.sidecar.get("stage"), source=f.path.name,
                    onnx_sha256=file_sha256(dest))
        side.write_text(json.dumps(meta, indent=1, default=str))
        written.append(dest)
    if out.resolve() != Path(weights).resolve():
        Panel.load_or_default(weights).save(out / PANEL_FILE)
    return written


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

        con = Console(highlight=False)
        names = [s.strip() for s in only.split(",") if s.strip()] if only else None
        with con.status("exporting to ONNX…"):
            paths = export_folder(weights, out, names, verify=verify)
        for p in paths:
            meta = json.loads(p.with_name(p.name + ".json").read_text())
            diff = meta.get("max_abs_diff")
            check = f"max |torch - onnx| {diff:.1e}" if diff is not None else "not verified"
            con.print(f"[green]✓[/] {meta['specialist'].upper()}: {p} ({check})")
        con.print(f"{len(paths)} specialist(s) exported to {out}; run `dfpanel detect --weights {out} --backend onnx`")
